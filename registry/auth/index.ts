// registry/auth: token auth and access control. `createAuth` turns `config.auth` into the app's `auth` middleware
// and the routes it serves outside /v2 (token endpoint, JWKS). Mode none → nothing (serve.ts warns).
import type { Hono, MiddlewareHandler } from 'hono';
import type { AuthStore } from '../../storage/index.js';
import type { Env } from '../context.js';
import type { LoadedAuthConfig } from './config.js';
import type { Audit } from '../audit.js';
import { AuthCore } from './core.js';
import { htpasswdMiddleware, tokenMiddleware } from './middleware.js';
import { tokenRoutes } from './service.js';
import type { Limiter } from './ratelimit.js';

export { AuthCore, LoginError } from './core.js';
export { AuthState, type RobotRecord, type RefreshRecord } from './state.js';
export type { AuthConfig } from './config.js';
export { parseScope, ScopeError } from './scope.js';
export { limiterOptions, type Limiter } from './ratelimit.js';
export { ACT_AS } from './middleware.js';
export { ANONYMOUS, type Identity } from './acl.js';
export { parseBasic, clientAddress } from './service.js';

export interface Auth {
  core: AuthCore;
  middleware: MiddlewareHandler<Env>;
  extend?: (app: Hono<Env>) => void;
  /** Resolves once keys and trusted issuers are loaded (rejects with the reason, e.g. a bad key file). */
  ready: Promise<void>;
}

export function createAuth(
  config: LoadedAuthConfig,
  store: AuthStore,
  opts: { publicUrl?: string; warn?: (msg: string) => void; audit?: Audit; limiter?: Limiter } = {},
): Auth | undefined {
  if (config.mode === 'none') return undefined;
  const core = new AuthCore(config, store, { warn: opts.warn, audit: opts.audit, limiter: opts.limiter });
  const ready = core.ready();
  ready.catch(() => {}); // reported by whoever awaits it; requests retry the load
  if (config.mode === 'htpasswd') {
    if (!config.htpasswd && !config.users?.some((u) => u.passwordHash)) {
      throw new Error('auth.mode htpasswd needs auth.htpasswd.path or auth.users with passwordHash');
    }
    return { core, middleware: htpasswdMiddleware(core), ready };
  }
  const realm = config.token.realm;
  const local = realm.startsWith('/');
  return {
    core,
    middleware: tokenMiddleware(core, realm, opts.publicUrl, opts.warn),
    // An absolute realm is an external token service: berth then only verifies (token.trust).
    extend: local ? (app) => tokenRoutes(app, core, realm) : undefined,
    ready,
  };
}
