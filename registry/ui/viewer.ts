// Who is looking, and what they may see and do — decided by the same AuthCore and ACL as /v2 (registry/auth):
//   auth.mode none       everyone may everything (the registry's own rule; serve.ts warns about it)
//   a session cookie     the web UI's login (this file): a JWT signed with the registry's own key ring, audience
//                        `<service>:ui` so it is never accepted as a registry token (nor a registry token as a
//                        session); the user is looked up again on every request (a removed user is logged out)
//   Basic credentials    scripts, in both modes (AuthCore.login: bcrypt, rate-limited like /token)
//   a Bearer token       scripts in token mode: berth's own tokens carry the identity when issued with the catalog
//                        scope; otherwise (or from a trusted external issuer) exactly the token's `access` claims
//   nothing              anonymous: exactly what the ACL grants `anonymous`
// Cookie: HttpOnly, SameSite=Strict, Path=/, `Secure` and the `__Host-` prefix behind TLS. State-changing requests
// authenticated by the cookie must carry its CSRF token (the session's `csrf` claim), as a header or form field,
// and come from this origin (Origin / Sec-Fetch-Site) — https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import { getCookie } from 'hono/cookie';
import { OciError } from '../../spec/index.js';
import { clientOf, type Ctx } from '../context.js';
import { ANONYMOUS, clientAddress, LoginError, parseBasic, type AuthCore, type Identity } from '../auth/index.js';

export type Action = 'pull' | 'push' | 'delete';

export interface Viewer {
  /** Display name; `anonymous` when nobody logged in; undefined with auth.mode none. */
  name?: string;
  /** How the request proved it: a cookie session needs CSRF protection, headers do not. */
  via: 'open' | 'anonymous' | 'session' | 'basic' | 'bearer';
  /** The identity to act as for a delete (ACT_AS), when there is one. */
  identity?: Identity;
  /** The session's CSRF token (via session). */
  csrf?: string;
  may(repository: string, action: Action): boolean;
}

export const SESSION_TTL_S = 12 * 3600;

export class Sessions {
  constructor(
    private readonly core: AuthCore | undefined,
    /** http.publicUrl: the origin browsers use when a proxy in front of berth is not in trustedProxies. */
    readonly publicUrl?: string,
  ) {}

  private get _audience(): string {
    return `${this.core!.tokenOptions.service}:ui`;
  }

  /** Cookie name: `__Host-` (browsers then insist on Secure, Path=/ and no Domain) when served over TLS. */
  cookieName(c: Ctx): string {
    return _secure(c, this.publicUrl) ? '__Host-berth_session' : 'berth_session';
  }

  /** Checks credentials (rate-limited like /token) and returns the cookie value and its CSRF token. */
  async login(c: Ctx, username: string, password: string): Promise<{ token: string; csrf: string }> {
    const core = this.core!;
    const id = await core.login(username, password, clientAddress(c));
    const ring = await core.ring();
    const csrf = randomBytes(24).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ k: id.kind, g: id.groups, r: id.robotId, csrf })
      .setProtectedHeader({ alg: ring.signing.alg, kid: ring.signing.kid, typ: 'JWT' })
      .setIssuer(core.tokenOptions.issuer)
      .setAudience(this._audience)
      .setSubject(id.name)
      .setIssuedAt(now)
      .setExpirationTime(now + SESSION_TTL_S)
      .sign(ring.signing.privateKey);
    return { token, csrf };
  }

  /** The viewer of a request. Throws UNAUTHORIZED for bad Basic/Bearer credentials (a bad cookie is anonymous). */
  async viewer(c: Ctx): Promise<Viewer> {
    const core = this.core;
    if (!core) return { via: 'open', may: () => true };
    const header = c.req.header('authorization');
    if (header) return this._fromHeader(c, core, header);
    const cookie = getCookie(c, this.cookieName(c));
    const session = cookie ? await this._session(core, cookie) : undefined;
    if (session) return { ..._aclViewer(core, session.id, 'session'), csrf: session.csrf };
    return _aclViewer(core, ANONYMOUS, 'anonymous');
  }

  private async _session(core: AuthCore, token: string): Promise<{ id: Identity; csrf: string } | undefined> {
    if (token.length > 8192) return undefined;
    try {
      const ring = await core.ring();
      const { payload } = await jwtVerify(
        token,
        (h) => {
          const k = h.kid !== undefined ? ring.verify.get(h.kid) : undefined;
          if (!k || k.alg !== h.alg) throw new Error('unknown key');
          return k.key;
        },
        {
          issuer: core.tokenOptions.issuer,
          audience: this._audience,
          algorithms: [...new Set([...ring.verify.values()].map((k) => k.alg))],
          requiredClaims: ['exp', 'sub'],
        },
      );
      const p = payload as { sub: string; k?: string; r?: string; csrf?: unknown };
      if (typeof p.csrf !== 'string') return undefined;
      // Looked up again: a user removed from the config (or a robot revoked) loses the session at once.
      const id = await core.refreshIdentity({
        id: '',
        kind: p.k === 'robot' ? 'robot' : 'user',
        name: p.sub,
        robotId: p.r,
        createdAt: '',
        expiresAt: '',
      });
      return id ? { id, csrf: p.csrf } : undefined;
    } catch {
      return undefined; // expired, signed by a dropped key, tampered: simply not logged in
    }
  }

  private async _fromHeader(c: Ctx, core: AuthCore, header: string): Promise<Viewer> {
    const bearer = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
    if (bearer && core.config.mode === 'token') {
      let token: Awaited<ReturnType<AuthCore['verifier']['verify']>>;
      try {
        token = await core.verifier.verify(bearer[1]);
      } catch (e) {
        throw new OciError('UNAUTHORIZED', `${(e as Error).message}; get a new token`);
      }
      if (token.identity) return _aclViewer(core, token.identity, 'bearer');
      return {
        name: token.sub,
        via: 'bearer',
        may: (repo, action) => token.access.get(`repository:${repo}`)?.has(action) === true,
      };
    }
    const basic = parseBasic(header);
    if (!basic) throw new OciError('UNAUTHORIZED', 'expected Basic credentials, or a Bearer token in token mode');
    try {
      return _aclViewer(core, await core.login(basic.username, basic.password, clientAddress(c)), 'basic');
    } catch (e) {
      if (!(e instanceof LoginError)) throw e;
      if (e.status === 429)
        throw new OciError('TOOMANYREQUESTS', e.message, { headers: { 'Retry-After': String(e.retryAfter) } });
      throw new OciError('UNAUTHORIZED', e.message);
    }
  }
}

function _aclViewer(core: AuthCore, id: Identity, via: Viewer['via']): Viewer {
  return {
    name: id.name,
    via,
    identity: id,
    may: (repo, action) => core.acl.allowed(id, repo).has(action),
  };
}

/**
 * The origin the browser is on: what a trusted proxy says (http.trustedProxies: X-Forwarded-Proto/Host), else
 * http.publicUrl when the request names its host (a proxy that passes Host on), else this connection's own URL.
 * Behind nginx terminating TLS the request reaches berth as http://…, but the browser's page, its Origin header and
 * its cookies are https: the cookie must be Secure and the Origin check must compare with that.
 */
export function browserOrigin(c: Ctx, publicUrl?: string): string {
  const own = new URL(c.req.url);
  const client = clientOf(c);
  if (client.forwarded && (client.proto || client.host))
    return `${client.proto ?? own.protocol.slice(0, -1)}://${client.host ?? own.host}`;
  if (publicUrl) {
    const pub = new URL(publicUrl);
    if (pub.host === own.host) return pub.origin;
  }
  return own.origin;
}

function _secure(c: Ctx, publicUrl?: string): boolean {
  return browserOrigin(c, publicUrl).startsWith('https:');
}

export function cookieOptions(c: Ctx, maxAge: number, publicUrl?: string) {
  return { httpOnly: true, sameSite: 'Strict' as const, path: '/', secure: _secure(c, publicUrl), maxAge };
}

/**
 * A state-changing request made with the session cookie must come from this origin and carry the session's CSRF
 * token; one authenticated by a header (Basic, Bearer) cannot be forged cross-site and needs neither.
 */
export function checkCsrf(c: Ctx, viewer: Viewer, given: string | undefined, publicUrl?: string): void {
  if (viewer.via !== 'session' && viewer.via !== 'anonymous' && viewer.via !== 'open') return;
  const site = c.req.header('sec-fetch-site');
  if (site && site !== 'same-origin' && site !== 'none')
    throw new OciError('DENIED', 'cross-site request refused (Sec-Fetch-Site)');
  const origin = c.req.header('origin');
  if (origin && origin !== browserOrigin(c, publicUrl))
    throw new OciError('DENIED', `cross-origin request refused (Origin ${origin.slice(0, 100)})`);
  if (viewer.via !== 'session') return;
  const want = Buffer.from(viewer.csrf ?? '');
  const got = Buffer.from(given ?? '');
  if (!want.length || want.length !== got.length || !timingSafeEqual(want, got))
    throw new OciError('DENIED', 'missing or wrong CSRF token: reload the page and try again');
}
