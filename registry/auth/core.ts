// The pieces of auth wired together once per server: who the caller is (login), what they may do (grant), the keys,
// the token verifier. The token endpoint (service.ts) and the /v2 middleware (middleware.ts) both use it.
import type { AuthStore } from '../../storage/index.js';
import { parseDuration } from '../../spec/units.js';
import { ANONYMOUS, compileAcl, subjectOf, type Acl, type Identity } from './acl.js';
import type { AuthConfig, LoadedAuthConfig } from './config.js';
import { trustedIssuer, type TrustedIssuer } from './issuers.js';
import { dirSource, loadKeyRing, storageSource, type KeyRing } from './keys.js';
import { createOidcProviders, looksLikeJwt, oidcIdentity, type OidcProvider } from './oidc.js';
import { LoginLimiter, limiterOptions, type Limiter } from './ratelimit.js';
import type { Access } from './scope.js';
import { AuthState, isRobotToken, type RefreshRecord, type RobotRecord } from './state.js';
import { AccessVerifier, type TokenOptions } from './tokens.js';
import { Users } from './users.js';
import type { Audit } from '../audit.js';

export class LoginError extends Error {
  constructor(
    message: string,
    readonly status: 401 | 429,
    readonly retryAfter = 0,
  ) {
    super(message);
  }
}

export interface AuthCoreOptions {
  warn?: (msg: string) => void;
  /** Failed and throttled logins are recorded here; the callers record successes (service.ts). */
  audit?: Audit;
  /** Shared login limiter (cluster workers); default: one in this process. */
  limiter?: Limiter;
}

export class AuthCore {
  readonly acl: Acl;
  readonly users: Users;
  readonly state: AuthState;
  readonly limiter: Limiter;
  readonly tokenOptions: TokenOptions;
  readonly refreshTtlMs: number;
  readonly verifier: AccessVerifier;
  readonly ring: () => Promise<KeyRing>;
  readonly trusted: () => Promise<TrustedIssuer[]>;
  readonly oidc: () => Promise<OidcProvider[]>;
  readonly audit?: Audit;

  constructor(
    readonly config: LoadedAuthConfig,
    store: AuthStore,
    opts: AuthCoreOptions = {},
  ) {
    this.audit = opts.audit;
    this.acl = compileAcl(config.acl);
    this.users = new Users(config, opts.warn);
    this.state = new AuthState(store);
    this.limiter = opts.limiter ?? new LoginLimiter(limiterOptions(config.rateLimit));
    const t = config.token;
    const ttlMs = parseDuration(t.ttl);
    if (ttlMs < 60_000) throw new Error('auth.token.ttl: at least 60s (clients expect expires_in ≥ 60)');
    this.tokenOptions = {
      issuer: t.issuer,
      service: t.service,
      ttlSeconds: Math.floor(ttlMs / 1000),
    };
    this.refreshTtlMs = parseDuration(t.refreshTtl);
    for (const d of [config.robots?.defaultTtl, config.robots?.maxTtl]) if (d) parseDuration(d);
    const source = t.keys ? dirSource(t.keys) : storageSource(store);
    this.ring = _memo(() => loadKeyRing(source, t.algorithm));
    this.trusted = _memo(() =>
      Promise.all(
        (t.trust ?? []).map((cfg, i) => trustedIssuer(cfg, this.tokenOptions.service, `auth.token.trust[${i}]`)),
      ),
    );
    this.oidc = _memo(() => createOidcProviders(config.oidc ?? [], this.tokenOptions.service));
    this.verifier = new AccessVerifier(this.ring, this.tokenOptions, this.trusted);
  }

  /** Loads keys and issuers now, so a bad key file fails at start-up, not on the first request. */
  async ready(): Promise<void> {
    if (this.config.mode !== 'token') return;
    await Promise.all([this.ring(), this.trusted(), this.oidc()]);
  }

  /**
   * Checks credentials: a robot token, a CI ID token (OIDC) or a user's password. Failures are rate-limited per
   * account and address, per address, and per account under a distributed attack, without ever locking the owner
   * out from a clean address (ratelimit.ts; LoginError 429 with the seconds to wait).
   */
  async login(username: string, password: string, address: string | undefined): Promise<Identity> {
    const account = username.slice(0, 256);
    const wait = await this.limiter.retryAfter(account, address);
    const method = loginMethod(password, this.config);
    if (wait > 0) {
      this.audit?.record({ event: 'login', outcome: 'throttled', account: _account(username), method, address });
      throw new LoginError(
        `too many failed logins from this address (for "${account.slice(0, 64)}" or overall); retry in ${wait} s`,
        429,
        wait,
      );
    }
    let id: Identity | undefined;
    if (method === 'robot') {
      const robot = await this.state.robotForToken(password);
      if (robot) id = robotIdentity(robot);
    } else if (method === 'oidc') {
      id = await oidcIdentity(await this.oidc(), password);
    } else if (username !== '' && username.length <= 256 && password.length <= 1024) {
      const user = await this.users.check(username, password);
      if (user) id = { kind: 'user', name: user.name, groups: user.groups };
    }
    if (!id) {
      await this.limiter.fail(account, address);
      this.audit?.record({ event: 'login', outcome: 'failure', account: _account(username), method, address });
      throw new LoginError('incorrect username or password', 401);
    }
    await this.limiter.succeed(account, address);
    return id;
  }

  /** The identity behind a refresh token, checked again now (the user or robot may be gone). */
  async refreshIdentity(record: RefreshRecord): Promise<Identity | undefined> {
    if (record.kind === 'robot') {
      const robot = record.robotId ? await this.state.robot(record.robotId) : undefined;
      return robot && Date.parse(robot.expiresAt) > Date.now() ? robotIdentity(robot) : undefined;
    }
    if (!this.users.exists(record.name)) return undefined;
    const groups = this.config.users?.find((u) => u.name === record.name)?.groups ?? [];
    return { kind: 'user', name: record.name, groups };
  }

  /** requested ∩ allowed; a partial grant is not an error (the registry answers insufficient_scope later). */
  grant(id: Identity, requested: Access[]): Access[] {
    const out: Access[] = [];
    for (const r of requested) {
      if (r.type === 'registry') {
        if (this.acl.mayCatalog(id)) out.push(r);
        continue;
      }
      const allowed = this.acl.allowed(id, r.name);
      const actions = r.actions.filter((a) => allowed.has(a as 'pull'));
      if (actions.length) out.push({ type: 'repository', name: r.name, actions });
    }
    return out;
  }

  /** The catalog filter for an identity: only repositories it may pull. */
  catalogFilter(id: Identity): (name: string) => boolean {
    return (name) => this.acl.allowed(id, name).has('pull');
  }
}

/** A lazily started promise; a failure (storage down at start) is retried on the next call, not remembered. */
function _memo<T>(make: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => {
    if (!p) {
      p = make();
      p.catch(() => (p = undefined));
    }
    return p;
  };
}

/** How a login authenticates: a robot token, a CI ID token (OIDC), or a user's password. */
export function loginMethod(password: string, config: AuthConfig): 'robot' | 'oidc' | 'password' {
  if (isRobotToken(password)) return 'robot';
  if (looksLikeJwt(password) && config.oidc?.length) return 'oidc';
  return 'password';
}

/** The account name for the audit log: what the client typed as username, unless it looks like a credential. */
function _account(username: string): string {
  if (isRobotToken(username) || looksLikeJwt(username) || username.startsWith('berth_')) return '[redacted]';
  return username.slice(0, 128);
}

export function robotIdentity(r: RobotRecord): Identity {
  return { kind: 'robot', name: r.name, groups: [], limits: r.scopes, robotId: r.id };
}

export { ANONYMOUS, subjectOf };
