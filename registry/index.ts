// registry/: builds the registry app from a configuration and a storage driver.
import type { Driver } from '../storage/index.js';
import { createStore, type Store } from '../storage/index.js';
import { createApp, type AppHooks } from './app.js';
import { parseDuration, type Config } from './config.js';
import type { Logger } from './log.js';
import { createProxy, type Proxy } from './proxy/index.js';
import { createMetrics, type Metrics } from './metrics.js';
import { healthRoutes } from './health.js';
import { createPolicies, type Policies } from './policy.js';
import { policyMiddleware } from './policy-middleware.js';
import { sessionLimits } from './sessions.js';
import { createWebhooks, type Webhooks } from './webhooks.js';
import { createAuth, type Auth } from './auth/index.js';
import { createLifecycle, type Lifecycle } from './lifecycle.js';
import { uiRoutes } from './ui/index.js';

export { createApp, parseTarget } from './app.js';
export { loadConfig, parseDuration, ConfigError, type Config } from './config.js';
export { listen, type RunningServer } from './server.js';
export { createLogger, type Logger } from './log.js';

export interface Registry {
  store: Store;
  app: ReturnType<typeof createApp>;
  /** The pull-through cache, when `proxy.upstreams` is configured. */
  proxy?: Proxy;
  /** Prometheus metrics (`metrics.enabled`, default on); feed `metrics.onRequest` to listen(). */
  metrics?: Metrics;
  policies: Policies;
  webhooks?: Webhooks;
  /** Token service, verifier and ACL, unless `auth.mode` is none. */
  auth?: Auth;
  /** Starts the background jobs the config turns on (upload purge, scheduled GC, retention); see lifecycle.ts. */
  start: Lifecycle['start'];
  /** Stops them (and webhook delivery); the caller closes the HTTP server and the driver. */
  stop: Lifecycle['stop'];
}

export function createRegistry(config: Config, driver: Driver, log: Logger, hooks: AppHooks = {}): Registry {
  const store = createStore(driver, { maxManifestBytes: config.storage.maxManifestBytes });
  const proxy = config.proxy?.upstreams?.length ? createProxy(config.proxy, store, log) : undefined;
  const metrics = config.metrics.enabled ? createMetrics({ proxy }) : undefined;
  // A blob a client just checked stays for the GC grace window (storage/gc.ts).
  store.blobs.linkRefreshMs = parseDuration(config.gc.grace) / 2;
  const policies = createPolicies(config, store, log);
  if (policies.enabled.immutable)
    store.manifests.tagPolicy = (name, tags, digest) => policies.checkTagWrite(name, tags, digest);
  const webhooks = config.webhooks?.length
    ? createWebhooks(config.webhooks, log, { source: config.http.publicUrl ?? 'berth' })
    : undefined;
  const auth = createAuth(config.auth, store.auth, { publicUrl: config.http.publicUrl, warn: (msg) => log.warn(msg) });
  auth?.ready.catch((e) =>
    log.error('auth keys or issuers failed to load', { err: String((e as Error)?.message ?? e) }),
  );
  const ops = { ...hooks };
  ops.extend = (app) => {
    healthRoutes(app, driver, metrics);
    auth?.extend?.(app);
    // The web UI and its JSON API (registry/ui), unless `ui.enabled: false`.
    if (config.ui?.enabled !== false)
      uiRoutes(app, {
        store,
        auth,
        proxy,
        policies,
        quotas: config.quotas,
        deleteEnabled: config.storage.delete,
        publicUrl: config.http.publicUrl,
      });
    hooks.extend?.(app);
  };
  const app = createApp(
    {
      store,
      deleteEnabled: config.storage.delete,
      maxManifestBytes: config.storage.maxManifestBytes,
      maxPageSize: config.api.maxPageSize,
    },
    {
      onUnexpectedError: (e, c) => {
        // A client that left mid-request (its connection reset, its body cut off) is not a fault of the server: one
        // quiet line, not an error with a stack that buries real ones.
        if (c.env?.incoming?.destroyed || (e as NodeJS.ErrnoException)?.code === 'ECONNRESET') {
          log.info('client went away mid-request', {
            method: c.req.method,
            path: c.req.path,
            err: String((e as Error)?.message ?? e),
          });
          return;
        }
        log.error('unexpected error', {
          method: c.req.method,
          path: c.req.path,
          err: (e as Error)?.stack ?? String(e),
        });
      },
      ...(auth ? { auth: auth.middleware } : {}),
      ...(proxy ? { proxy: proxy.middleware } : {}),
      limits: sessionLimits(config.storage.uploadSessions, store),
      policy: policyMiddleware(policies, webhooks && ((e) => webhooks.emit(e))),
      ...ops,
    },
  );
  const lifecycle = createLifecycle(config, { store, policies, metrics, webhooks }, log);
  return { store, app, proxy, metrics, policies, webhooks, auth, start: lifecycle.start, stop: lifecycle.stop };
}
