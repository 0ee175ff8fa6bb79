// The token service (Docker token spec + its OAuth2 form), served by berth itself at `auth.token.realm` (/token):
//   GET  /token?service=&scope=…&account=&client_id=&offline_token=true   Basic credentials, or none (anonymous)
//   POST /token  grant_type=password|refresh_token, service, client_id, scope (space-separated), access_type=offline
//   GET  /token/jwks                                                       the public keys (JWKS), for other services
//   POST /token/revoke  token=<refresh token>                              RFC 7009 revocation
// Replies: { token, access_token, expires_in, issued_at, refresh_token? } with access = requested ∩ allowed.
// spec: distribution docs/content/spec/auth/{token,oauth}.md
import type { Hono } from 'hono';
import { clientOf, type Ctx, type Env } from '../context.js';
import { ANONYMOUS, LoginError, loginMethod, subjectOf, type AuthCore } from './core.js';
import type { Identity } from './acl.js';
import { formatScope, mergeScopes, parseScope, ScopeError, type Access } from './scope.js';
import { signAccessToken } from './tokens.js';

/** Both error shapes: OAuth2 (`error`) for OAuth clients and `errors[]` for the Docker/distribution clients. */
function _error(
  c: Ctx,
  status: 400 | 401 | 429 | 503,
  oauth: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  const code =
    status === 401 ? 'UNAUTHORIZED' : status === 429 ? 'TOOMANYREQUESTS' : status === 503 ? 'UNAVAILABLE' : 'DENIED';
  return c.json({ error: oauth, error_description: message, errors: [{ code, message, detail: null }] }, status, {
    'Cache-Control': 'no-store',
    ...headers,
  });
}

/** The caller's address for throttling and audit: the socket's peer, or the client a trusted proxy names. */
export function clientAddress(c: Ctx): string | undefined {
  return clientOf(c).address;
}

export function parseBasic(header: string | undefined): { username: string; password: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]{1,8192})\s*$/i.exec(header ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

class BadRequest extends Error {}

function _requestId(c: Ctx): string | undefined {
  return c.env?.outgoing?.getHeader?.('x-request-id')?.toString();
}

function _scopes(raw: string[]): Access[] {
  const list: Access[] = [];
  for (const value of raw) {
    for (const s of value.split(' ').filter(Boolean)) {
      try {
        list.push(parseScope(s));
      } catch (e) {
        if (e instanceof ScopeError) throw new BadRequest(e.message);
        throw e;
      }
    }
  }
  if (list.length > 64) throw new BadRequest('too many scopes (at most 64)');
  return mergeScopes(list);
}

export function tokenRoutes(app: Hono<Env>, core: AuthCore, realmPath: string): void {
  const service = core.tokenOptions.service;

  const reply = async (
    c: Ctx,
    id: Identity,
    requested: Access[],
    opts: { refresh?: string | boolean; clientId?: string; oauth: boolean },
  ) => {
    const access = core.grant(id, requested);
    const ring = await core.ring();
    const catalog = access.some((a) => a.type === 'registry');
    const { token, issuedAt, expiresIn } = await signAccessToken(
      ring,
      core.tokenOptions,
      id,
      subjectOf(id),
      access,
      catalog,
    );
    const body: Record<string, unknown> = {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: issuedAt.toISOString(),
    };
    if (opts.oauth) body.scope = access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`).join(' ');
    if (typeof opts.refresh === 'string') body.refresh_token = opts.refresh;
    else if (opts.refresh === true && (id.kind === 'user' || id.kind === 'robot')) {
      body.refresh_token = await core.state.createRefresh({
        kind: id.kind,
        name: id.name,
        ...(id.robotId ? { robotId: id.robotId } : {}),
        ...(opts.clientId ? { clientId: opts.clientId.slice(0, 100) } : {}),
        expiresAt: new Date(Date.now() + core.refreshTtlMs).toISOString(),
      });
    }
    // Anonymous tokens (public pulls) are not audited: they are as many as anonymous requests and grant only what
    // anonymous may do anyway.
    if (id !== ANONYMOUS)
      core.audit?.record({
        event: typeof opts.refresh === 'string' ? 'token.refreshed' : 'token.issued',
        outcome: 'success',
        actor: subjectOf(id),
        address: clientAddress(c),
        requestId: _requestId(c),
        scopes: access.map(formatScope),
        refreshToken: opts.refresh === true && body.refresh_token !== undefined,
        clientId: opts.clientId?.slice(0, 100),
      });
    return c.json(body, 200, { 'Cache-Control': 'no-store', Pragma: 'no-cache' });
  };

  const loggedIn = (c: Ctx, id: Identity, password: string) => {
    core.audit?.record({
      event: 'login',
      outcome: 'success',
      actor: subjectOf(id),
      // The same field as a failed login's, so one query finds every attempt on an account.
      account: id.name.slice(0, 128),
      method: loginMethod(password, core.config),
      address: clientAddress(c),
      requestId: _requestId(c),
    });
    return id;
  };

  const guarded = (handler: (c: Ctx) => Promise<Response>) => async (c: Ctx) => {
    try {
      return await handler(c);
    } catch (e) {
      if (e instanceof BadRequest) return _error(c, 400, 'invalid_request', e.message);
      if (e instanceof LoginError) {
        if (e.status === 429) return _error(c, 429, 'slow_down', e.message, { 'Retry-After': String(e.retryAfter) });
        return _error(c, 401, 'invalid_grant', e.message, { 'WWW-Authenticate': `Basic realm="${service}"` });
      }
      throw e;
    }
  };

  const checkService = (value: string | undefined) => {
    if (value !== undefined && value !== service)
      throw new BadRequest(
        `unknown service "${value.slice(0, 100)}": this token service issues tokens for "${service}"`,
      );
  };

  // A parameter that names one thing must appear once: which of two `service`/`grant_type`/`account` values
  // decides would depend on the parser, and a proxy in front may read the other one (parameter pollution).
  const checkSingle = (name: string, count: number) => {
    if (count > 1) throw new BadRequest(`parameter "${name}" was given ${count} times; give it once`);
  };

  app.get(
    realmPath,
    guarded(async (c) => {
      for (const k of ['service', 'account', 'client_id', 'offline_token'])
        checkSingle(k, c.req.queries(k)?.length ?? 0);
      checkService(c.req.query('service'));
      const scopes = _scopes(c.req.queries('scope') ?? []);
      const header = c.req.header('authorization');
      let id = ANONYMOUS;
      if (header) {
        const basic = parseBasic(header);
        if (!basic)
          throw new BadRequest(
            'Authorization must be Basic credentials (user:password, a robot token, or a CI ID token as the password)',
          );
        id = loggedIn(c, await core.login(basic.username, basic.password, clientAddress(c)), basic.password);
      }
      const offline = c.req.query('offline_token') === 'true';
      return reply(c, id, scopes, { refresh: offline, clientId: c.req.query('client_id'), oauth: false });
    }),
  );

  app.post(
    realmPath,
    guarded(async (c) => {
      let form: Record<string, string | File | (string | File)[]>;
      try {
        form = await c.req.parseBody({ all: true });
      } catch {
        throw new BadRequest('expected an application/x-www-form-urlencoded body');
      }
      // `scope` is a space-separated list: repeated, its parts add up (as repeated `scope` on GET).
      if (Array.isArray(form.scope)) form.scope = form.scope.filter((x) => typeof x === 'string').join(' ');
      for (const [k, v] of Object.entries(form)) if (Array.isArray(v)) checkSingle(k, v.length);
      const field = (k: string) => (typeof form[k] === 'string' ? (form[k] as string) : undefined);
      checkService(field('service'));
      const scopes = _scopes(field('scope') ? [field('scope')!] : []);
      const offline = field('access_type') === 'offline';
      const clientId = field('client_id');
      const grant = field('grant_type');
      if (grant === 'password') {
        const username = field('username');
        const password = field('password');
        if (username === undefined || password === undefined)
          throw new BadRequest('grant_type=password needs username and password');
        const id = loggedIn(c, await core.login(username, password, clientAddress(c)), password);
        return reply(c, id, scopes, { refresh: offline, clientId, oauth: true });
      }
      if (grant === 'refresh_token') {
        const token = field('refresh_token') ?? '';
        const record = await core.state.refreshForToken(token);
        const id = record && (await core.refreshIdentity(record));
        if (!id) {
          core.audit?.record({
            event: 'token.refreshed',
            outcome: 'failure',
            actor: record ? (record.kind === 'robot' ? `robot:${record.name}` : record.name) : undefined,
            id: record?.id,
            address: clientAddress(c),
            requestId: _requestId(c),
            reason: 'refresh token unknown, expired or revoked',
          });
          throw new LoginError('refresh token unknown, expired or revoked; log in again', 401);
        }
        return reply(c, id, scopes, { refresh: token, clientId, oauth: true });
      }
      throw new BadRequest(`unsupported grant_type "${(grant ?? '').slice(0, 40)}": use password or refresh_token`);
    }),
  );

  app.get(`${realmPath.replace(/\/$/, '')}/jwks`, async (c) =>
    c.json((await core.ring()).jwks, 200, { 'Cache-Control': 'max-age=300' }),
  );

  app.post(`${realmPath.replace(/\/$/, '')}/revoke`, async (c) => {
    const form = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>);
    const token = typeof form.token === 'string' ? form.token : '';
    const record = core.audit ? await core.state.refreshForToken(token) : undefined;
    if (await core.state.revokeRefreshToken(token))
      core.audit?.record({
        event: 'token.revoked',
        outcome: 'success',
        actor: record ? (record.kind === 'robot' ? `robot:${record.name}` : record.name) : undefined,
        id: record?.id,
        address: clientAddress(c),
        requestId: _requestId(c),
      });
    return c.body(null, 200); // RFC 7009: 200 whether or not the token existed
  });
}
