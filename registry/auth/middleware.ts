// The /v2 gate. Runs after the target is parsed (app.ts) and decides from it what the request needs:
// - token mode: a valid Bearer token whose `access` grants the needed actions on exactly this repository; otherwise
//   401 with a challenge naming realm, service and scope (+ error="insufficient_scope" / "invalid_token");
// - htpasswd mode: Basic credentials (or none, when the ACL lets anonymous do it); 403 when the ACL says no.
// It also binds upload sessions to the caller (`subject`), drops a mount whose `from` the caller can't pull, and
// filters the catalog to repositories the caller may pull.
import { Http2ServerRequest } from 'node:http2';
import type { MiddlewareHandler } from 'hono';
import { OciError, isValidName } from '../../spec/index.js';
import { clientOf, type Ctx, type Env } from '../context.js';
import { ANONYMOUS, LoginError, subjectOf, type AuthCore } from './core.js';
import type { Identity } from './acl.js';
import { formatScope, requiredAccess, type Access } from './scope.js';
import { clientAddress, parseBasic } from './service.js';
import { hasAccess, TokenError, type VerifiedToken } from './tokens.js';

const SAFE_HOST = /^[A-Za-z0-9.:[\]-]{1,300}$/;

/**
 * The Bindings key under which in-process code (the web UI's delete, registry/ui) hands the /v2 pipeline the identity
 * it acts for: `app.fetch(request, { [ACT_AS]: identity })`. Only code in this process can set a Symbol-keyed
 * binding — the node server passes `{ incoming, outgoing }` — so no network request can claim one. The identity
 * then goes through the same ACL check, proxy, policies and webhooks as any client.
 */
export const ACT_AS = Symbol('berth.actAs');

/** Handles a request acting as an in-process identity (see ACT_AS); false when there is none. */
async function _actAs(core: AuthCore, c: Ctx, need: Access | undefined, next: () => Promise<void>): Promise<boolean> {
  const id = (c.env as Record<symbol, unknown> | undefined)?.[ACT_AS] as Identity | undefined;
  if (!id) return false;
  if (need && !_allowed(core, id, need))
    throw new OciError(
      'DENIED',
      `"${id.name}" may not ${need.actions.join('+')} ${need.type === 'registry' ? 'the catalog' : need.name}`,
    );
  c.set('subject', subjectOf(id));
  _pushAllowed(c, (name) => _allowed(core, id, { type: 'repository', name, actions: ['push'] }));
  await next();
  return true;
}

/**
 * The absolute token realm for challenges. Clients send their passwords to it, so it never comes from what a request
 * merely claims (a forged Host would otherwise point a cached or proxied 401 at another server). distribution
 * requires an absolute realm in its config; berth, whose default realm is the relative /token, resolves it from:
 * 1. an absolute `auth.token.realm`, as configured;
 * 2. `http.publicUrl` (the URL clients use; needed behind a proxy or ingress, or when reached by a DNS name);
 * 3. a trusted proxy's word (`http.trustedProxies`, registry/forwarded.ts): X-Forwarded-Proto/Host or Forwarded
 *    proto/host, else the Host header that proxy passed on;
 * 4. else the address this connection was accepted on: the Host header only when it names that address and port
 *    (or `localhost` on a loopback connection), otherwise the socket's own address. `onRefusedHost` is told once.
 * Without a socket (in-process requests) the request URL's host is used.
 */
export function realmUrl(
  c: Ctx,
  realm: string,
  publicUrl: string | undefined,
  onRefusedHost?: (host: string, used: string) => void,
): string {
  if (/^https?:\/\//.test(realm)) return realm;
  if (publicUrl) return publicUrl.replace(/\/$/, '') + realm;
  const socketProto = c.req.url.startsWith('https:') ? 'https' : 'http';
  const socket = c.env?.incoming?.socket;
  // HTTP/2 names the host in the :authority pseudo-header (RFC 9113 §8.3.1), which clients send instead of Host.
  const host =
    c.req.header('host') ?? (c.env?.incoming instanceof Http2ServerRequest ? c.env.incoming.authority : undefined);
  const client = clientOf(c);
  if (client.forwarded) {
    const name = client.host ?? (host && SAFE_HOST.test(host) ? host : undefined);
    if (name) return `${client.proto ?? socketProto}://${name}${realm}`;
  }
  const proto = socketProto;
  if (!socket?.localAddress || !socket.localPort) {
    const fallback = host ?? new URL(c.req.url).host;
    return `${proto}://${fallback && SAFE_HOST.test(fallback) ? fallback : 'localhost'}${realm}`;
  }
  const local = listenerHost(socket.localAddress, socket.localPort);
  if (host !== undefined && hostNamesListener(host, socket.localAddress, socket.localPort, proto))
    return `${proto}://${host}${realm}`;
  if (host !== undefined) onRefusedHost?.(host, local);
  return `${proto}://${local}${realm}`;
}

/** `addr:port` of a local socket address, IPv6 in brackets, IPv4-mapped IPv6 as IPv4. */
export function listenerHost(address: string, port: number): string {
  const v4 = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  return v4.includes(':') ? `[${v4}]:${port}` : `${v4}:${port}`;
}

/** Whether a Host header names the listener a connection arrived on (its IP and port, or localhost on loopback). */
export function hostNamesListener(
  host: string,
  localAddress: string,
  localPort: number,
  proto: 'http' | 'https',
): boolean {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(host);
  if (!m) return false;
  const port = m[2] ? Number(m[2]) : proto === 'https' ? 443 : 80;
  if (port !== localPort) return false;
  const name = m[1].toLowerCase().replace(/^\[|\]$/g, '');
  const local = localAddress.toLowerCase().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  if (name === local) return true;
  const loopback = local === '::1' || local.startsWith('127.');
  return loopback && name === 'localhost';
}

function _mount(c: Ctx): string | undefined {
  if (c.var.target.route !== 'uploads' || c.req.method !== 'POST' || c.req.query('mount') === undefined)
    return undefined;
  const from = c.req.query('from');
  return from && isValidName(from) && from !== c.var.target.name ? from : undefined;
}

export function tokenMiddleware(
  core: AuthCore,
  realm: string,
  publicUrl?: string,
  warn?: (msg: string) => void,
): MiddlewareHandler<Env> {
  const service = core.tokenOptions.service;
  let warned = false;
  const onRefusedHost = (host: string, used: string) => {
    if (warned || !warn) return;
    warned = true;
    warn(
      `token realm: Host "${host.slice(0, 100)}" does not name this listener, so challenges point at http(s)://${used}${realm}; set http.publicUrl to the URL clients use, or http.trustedProxies to believe a reverse proxy's X-Forwarded-Host (reported once)`,
    );
  };
  const challenge = (c: Ctx, need: Access | undefined, error?: string) => {
    let value = `Bearer realm="${realmUrl(c, realm, publicUrl, onRefusedHost)}",service="${service}"`;
    // A mount also asks for pull on `from`, as distribution does (handlers/app.go appendAccessRecords): a client that
    // requests exactly the challenged scopes must get a token that can mount. Scopes are space-separated.
    const from = _mount(c);
    const scopes = [need, from ? { type: 'repository' as const, name: from, actions: ['pull'] } : undefined].filter(
      (a) => a !== undefined,
    );
    if (scopes.length) value += `,scope="${scopes.map(formatScope).join(' ')}"`;
    if (error) value += `,error="${error}"`;
    return { 'WWW-Authenticate': value };
  };
  return async (c, next) => {
    const target = c.var.target;
    const need = requiredAccess(target, c.req.method);
    if (await _actAs(core, c, need, next)) return;
    const m = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(c.req.header('authorization') ?? '');
    if (!m)
      throw new OciError(
        'UNAUTHORIZED',
        'authentication required: get a token from the realm in WWW-Authenticate (docker login)',
        { headers: challenge(c, need) },
      );
    let token: VerifiedToken;
    try {
      token = await core.verifier.verify(m[1]);
    } catch (e) {
      if (!(e instanceof TokenError)) throw e;
      throw new OciError('UNAUTHORIZED', `${e.message}; log in again`, {
        headers: challenge(c, need, 'invalid_token'),
      });
    }
    // The subject is known before the check, so a denial is attributed to it (registry/audit.ts).
    c.set('subject', token.sub);
    if (need && !hasAccess(token, need)) {
      throw new OciError('UNAUTHORIZED', `the token does not grant ${formatScope(need)}`, {
        detail: { required: need },
        headers: challenge(c, need, 'insufficient_scope'),
      });
    }
    _pushAllowed(c, (name) => hasAccess(token, { type: 'repository', name, actions: ['push'] }));
    const from = _mount(c);
    if (from && !hasAccess(token, { type: 'repository', name: from, actions: ['pull'] })) c.set('mountAllowed', false);
    if (target.route === 'catalog') {
      const filter = token.identity
        ? core.catalogFilter(token.identity)
        : (name: string) => token.access.get(`repository:${name}`)?.has('pull') === true;
      c.set('catalogFilter', filter);
    }
    await next();
  };
}

export function htpasswdMiddleware(core: AuthCore): MiddlewareHandler<Env> {
  const realm = core.config.realm;
  const challenge = { 'WWW-Authenticate': `Basic realm="${realm}"` };
  return async (c, next) => {
    const target = c.var.target;
    const need = requiredAccess(target, c.req.method);
    if (await _actAs(core, c, need, next)) return;
    const header = c.req.header('authorization');
    let id: Identity = ANONYMOUS;
    if (header) {
      const basic = parseBasic(header);
      if (!basic) throw new OciError('UNAUTHORIZED', 'expected Basic credentials', { headers: challenge });
      try {
        id = await core.login(basic.username, basic.password, clientAddress(c));
      } catch (e) {
        if (!(e instanceof LoginError)) throw e;
        if (e.status === 429)
          throw new OciError('TOOMANYREQUESTS', e.message, { headers: { 'Retry-After': String(e.retryAfter) } });
        throw new OciError('UNAUTHORIZED', e.message, { headers: challenge });
      }
    }
    // The ping must challenge anonymous callers, or `docker login` would never send credentials.
    if (!need && id === ANONYMOUS)
      throw new OciError('UNAUTHORIZED', 'authentication required', { headers: challenge });
    if (id !== ANONYMOUS) c.set('subject', subjectOf(id));
    if (need && !_allowed(core, id, need)) {
      if (id === ANONYMOUS) throw new OciError('UNAUTHORIZED', 'authentication required', { headers: challenge });
      throw new OciError(
        'DENIED',
        `"${id.name}" may not ${need.actions.join('+')} ${need.type === 'registry' ? 'the catalog' : need.name}`,
      );
    }
    c.set('subject', subjectOf(id));
    _pushAllowed(c, (name) => core.acl.allowed(id, name).has('push'));
    const from = _mount(c);
    if (from && !core.acl.allowed(id, from).has('pull')) c.set('mountAllowed', false);
    if (target.route === 'catalog') c.set('catalogFilter', core.catalogFilter(id));
    await next();
  };
}

/** Records whether the caller may push to the target repository (as asked for: auth sees the requested name). */
function _pushAllowed(c: Ctx, may: (name: string) => boolean): void {
  const name = c.var.target.name;
  if (name) c.set('pushAllowed', () => may(name));
}

function _allowed(core: AuthCore, id: Identity, need: Access): boolean {
  if (need.type === 'registry') return core.acl.mayCatalog(id);
  const allowed = core.acl.allowed(id, need.name);
  return need.actions.every((a) => allowed.has(a as 'pull'));
}
