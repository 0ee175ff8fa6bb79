// Registry authentication: WWW-Authenticate challenges, Basic, and Docker token auth (GET and OAuth2 POST,
// refresh tokens), with scopes merged per operation and tokens cached until they expire.
// Specs: distribution docs/content/spec/auth/{token,oauth,scope}.md; RFC 7235 (challenge syntax).
import type { CredentialStore, Credentials } from './credentials.js';

export interface Challenge {
  scheme: string; // lower-case: 'basic' | 'bearer'
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="a b"` (one or more challenges, quoted or token values). */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const out: Challenge[] = [];
  for (const h of Array.isArray(header) ? header : header ? [header] : []) {
    let i = 0;
    let current: Challenge | undefined;
    const skip = (re: RegExp) => {
      while (i < h.length && re.test(h[i])) i++;
    };
    const token = () => {
      const m = /^[A-Za-z0-9!#$%&'*+.^_`|~/-]+/.exec(h.slice(i));
      i += m ? m[0].length : 0;
      return m?.[0] ?? '';
    };
    while (i < h.length) {
      skip(/[\s,]/);
      const word = token();
      if (!word) break;
      skip(/\s/);
      if (h[i] !== '=') {
        current = { scheme: word.toLowerCase(), params: {} };
        out.push(current);
        continue;
      }
      i++;
      skip(/\s/);
      let value = '';
      if (h[i] === '"') {
        i++;
        while (i < h.length && h[i] !== '"') (value += h[i] === '\\' ? (h[++i] ?? '') : h[i]), i++;
        i++;
      } else {
        const m = /^[^\s,]*/.exec(h.slice(i))!;
        value = m[0];
        i += value.length;
      }
      if (current) current.params[word.toLowerCase()] = value;
    }
  }
  return out;
}

/** `repository:NAME:ACTIONS`. Names may contain `host:port/` so scopes are split from the right. */
export function repoScope(name: string, actions: string[]): string {
  return `repository:${name}:${actions.join(',')}`;
}

/** Merges scopes on the same resource: `repository:a:pull` + `repository:a:push` → `repository:a:pull,push`. */
export function mergeScopes(scopes: Iterable<string>): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const s of scopes) {
    for (const one of s.split(' ').filter(Boolean)) {
      const i = one.lastIndexOf(':');
      if (i < 0) continue;
      const resource = one.slice(0, i);
      const set = byResource.get(resource) ?? new Set<string>();
      for (const a of one.slice(i + 1).split(',')) if (a) set.add(a);
      byResource.set(resource, set);
    }
  }
  return [...byResource.entries()].map(([r, a]) => `${r}:${[...a].sort().join(',')}`).sort();
}

/** A minimal HTTP exchange for the token endpoint (given by registry.ts: retries, TLS, no auth). */
export type TokenSend = (req: {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
}) => Promise<{ status: number; text: string }>;

interface CachedToken {
  header: string;
  expiresAt: number;
}

export class AuthError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

const CLIENT_ID = 'berth';
// Refresh a little early so a token never expires in flight.
const EXPIRY_MARGIN_MS = 10_000;

/**
 * Per-registry auth state. The transport asks `header(scopes)` before a request and calls `challenge(...)` on a
 * 401. Tokens are cached per merged scope set; a refresh token (from a login or the credential store) is reused.
 */
export class Authenticator {
  private challengeSeen?: Challenge;
  private tokens = new Map<string, CachedToken>();
  private inflight = new Map<string, Promise<CachedToken>>();
  private refreshToken?: string;
  private creds?: Promise<Credentials | undefined>;

  constructor(
    readonly host: string,
    private readonly store: CredentialStore | undefined,
    private readonly send: TokenSend,
    /**
     * Whether the credentials may go to this token realm (default: any realm). A pull-through cache passes a
     * policy so a hostile upstream cannot point its realm elsewhere and collect the upstream's password.
     */
    private readonly realmCredentials?: (realm: URL) => boolean,
  ) {}

  /** True once the registry told us which scheme it wants (from the ping or a 401). */
  get knowsScheme(): boolean {
    return this.challengeSeen !== undefined;
  }

  /** A refresh token obtained during this session (for `berth login` to keep, like docker's identitytoken). */
  get obtainedRefreshToken(): string | undefined {
    return this.refreshToken;
  }

  credentials(): Promise<Credentials | undefined> {
    this.creds ??= this.store ? this.store.get(this.host) : Promise.resolve(undefined);
    return this.creds;
  }

  /** Records a challenge from GET /v2/ or any 401. Returns false when no supported scheme was offered. */
  observe(wwwAuthenticate: string | string[] | undefined): boolean {
    const all = parseChallenges(wwwAuthenticate);
    const c = all.find((x) => x.scheme === 'bearer') ?? all.find((x) => x.scheme === 'basic');
    if (!c) return false;
    this.challengeSeen = c;
    return true;
  }

  /** The Authorization header for a request needing `scopes`, or undefined when the registry is anonymous. */
  async header(scopes: string[]): Promise<string | undefined> {
    const c = this.challengeSeen;
    if (!c) return undefined;
    if (c.scheme === 'basic') {
      const creds = await this.credentials();
      if (!creds?.username || creds.password === undefined) {
        throw new AuthError(`${this.host} requires a login; run \`berth login ${this.host}\``, 401);
      }
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    const merged = mergeScopes(scopes);
    const key = merged.join(' ');
    const hit = this.tokens.get(key);
    if (hit && hit.expiresAt > Date.now()) return hit.header;
    let p = this.inflight.get(key);
    if (!p) {
      p = this._fetchToken(c, merged).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    const tok = await p;
    this.tokens.set(key, tok);
    return tok.header;
  }

  /**
   * Handles a 401: remembers its challenge, merges any scope it names (insufficient_scope), drops the cached
   * token, and returns the header to retry with (undefined when retrying would not help).
   */
  async challenge(wwwAuthenticate: string | string[] | undefined, scopes: string[]): Promise<string | undefined> {
    const before = this.challengeSeen;
    if (!this.observe(wwwAuthenticate)) return undefined;
    const c = this.challengeSeen!;
    const extra = c.params.scope ? [c.params.scope] : [];
    const merged = mergeScopes([...scopes, ...extra]);
    this.tokens.delete(mergeScopes(scopes).join(' '));
    this.tokens.delete(merged.join(' '));
    if (c.scheme === 'basic' && before?.scheme === 'basic') return undefined; // same creds would fail again
    return this.header(merged);
  }

  private async _fetchToken(c: Challenge, scopes: string[]): Promise<CachedToken> {
    const realm = c.params.realm;
    if (!realm) throw new AuthError(`${this.host} sent a Bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new AuthError(`${this.host} sent an invalid token realm "${realm}"`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new AuthError(`unsupported token realm ${realm}`);
    const service = c.params.service;
    const trusted = this.realmCredentials?.(url) ?? true;
    const creds = trusted ? await this.credentials() : undefined;
    const refresh = trusted ? (this.refreshToken ?? creds?.identityToken) : undefined;
    let res: { status: number; text: string };
    if (refresh) {
      res = await this._post(url, { grant_type: 'refresh_token', refresh_token: refresh }, service, scopes);
    } else if (creds?.username && creds.password !== undefined) {
      // OAuth2 password grant first (containerd does the same); servers without it answer 404/405/400/401.
      // A 307/308 to another origin comes back unfollowed (the form holds the password): use GET, whose
      // Authorization header is dropped on any cross-origin hop.
      res = await this._post(
        url,
        { grant_type: 'password', username: creds.username, password: creds.password, access_type: 'offline' },
        service,
        scopes,
      );
      if ([400, 401, 404, 405, 307, 308].includes(res.status)) res = await this._get(url, service, scopes, creds);
    } else {
      res = await this._get(url, service, scopes, undefined);
    }
    if (res.status === 401 || res.status === 403) {
      const hint = creds
        ? `check the credentials for ${this.host} (\`berth login ${this.host}\`)`
        : `run \`berth login ${this.host}\``;
      throw new AuthError(`token request to ${url.origin}${url.pathname} was refused (${res.status}); ${hint}`, 401);
    }
    if (res.status === 307 || res.status === 308) {
      throw new AuthError(
        `token endpoint ${url.origin}${url.pathname} redirected a credential request to another origin; berth does not forward credentials there — check the registry's token realm`,
        res.status,
      );
    }
    if (res.status !== 200)
      throw new AuthError(
        `token endpoint ${url.origin}${url.pathname} answered ${res.status}: ${res.text.slice(0, 200)}`,
        res.status,
      );
    let doc: any;
    try {
      doc = JSON.parse(res.text);
    } catch {
      throw new AuthError(`token endpoint ${url.origin}${url.pathname} did not return JSON`);
    }
    const token = doc.token ?? doc.access_token;
    if (typeof token !== 'string' || !token)
      throw new AuthError(`token endpoint ${url.origin}${url.pathname} returned no token`);
    if (typeof doc.refresh_token === 'string' && doc.refresh_token) this.refreshToken = doc.refresh_token;
    // spec: token.md — expires_in defaults to 60 s when absent.
    const expiresIn = Number.isFinite(doc.expires_in) && doc.expires_in > 0 ? doc.expires_in : 60;
    const issued = Date.parse(doc.issued_at ?? '');
    const start = Number.isFinite(issued) && issued <= Date.now() ? issued : Date.now();
    return { header: `Bearer ${token}`, expiresAt: start + expiresIn * 1000 - EXPIRY_MARGIN_MS };
  }

  private _get(realm: URL, service: string | undefined, scopes: string[], creds: Credentials | undefined) {
    const url = new URL(realm);
    if (service) url.searchParams.set('service', service);
    for (const s of scopes) url.searchParams.append('scope', s);
    url.searchParams.set('client_id', CLIENT_ID);
    const headers: Record<string, string> = {};
    if (creds?.username && creds.password !== undefined) {
      url.searchParams.set('account', creds.username);
      url.searchParams.set('offline_token', 'true');
      headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    return this.send({ method: 'GET', url: url.toString(), headers });
  }

  private _post(realm: URL, grant: Record<string, string>, service: string | undefined, scopes: string[]) {
    const form = new URLSearchParams({ ...grant, client_id: CLIENT_ID });
    if (service) form.set('service', service);
    if (scopes.length) form.set('scope', scopes.join(' '));
    return this.send({
      method: 'POST',
      url: realm.toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    });
  }
}
