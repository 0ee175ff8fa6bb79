// registry/: builds the registry app from a configuration and a storage driver.
import { Hono, type MiddlewareHandler } from 'hono';
import type { Driver } from '../storage/index.js';
import { createStore, type Store } from '../storage/index.js';
import { createApp, type AppHooks } from './app.js';
import { parseDuration } from '../spec/units.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { createProxy, type Proxy } from './proxy/index.js';
import { createMetrics, type Metrics } from './metrics.js';
import { healthRoutes } from './health.js';
import { createPolicies, type Policies } from './policy.js';
import { policyMiddleware } from './policy-middleware.js';
import { sessionLimits } from './sessions.js';
import { createWebhooks, type Webhooks } from './webhooks.js';
import { createAuth, type Auth, type Limiter } from './auth/index.js';
import { createLifecycle, type Lifecycle } from './lifecycle.js';
import { trustedProxies } from './forwarded.js';
import { auditMiddleware, createAudit, type Audit } from './audit.js';
import type { Env } from './context.js';
import type { FillLeases } from './proxy/fill.js';
import { uiRoutes } from './ui/index.js';
import { createSignaturePolicy, type SignaturePolicy } from './signatures.js';
import type { WorkerLink } from './cluster.js';
import { resolveUpstreams } from './proxy/config.js';
import { createSync, resolveSyncRules, type SyncJob } from './mirror/sync.js';
import { createReplication, resolveReplication, type Replication } from './mirror/replication.js';

export { createApp, parseTarget } from './app.js';
export { loadConfig, configDefaults, ConfigError, type Config } from './config.js';
export { parseDuration, parseSize, UnitError } from '../spec/units.js';
export { listen, type RunningServer } from './server.js';
export { createLogger, type Logger } from './log.js';
export { createAudit, cliActor, type Audit, type AuditEvent } from './audit.js';
export { checkSignatures } from './signatures.js';
export { runPrimary, workerCount, workerLink, type WorkerLink } from './cluster.js';

export interface Registry {
  store: Store;
  app: ReturnType<typeof createApp>;
  /** The pull-through cache, when `proxy.upstreams` is configured. */
  proxy?: Proxy;
  /** Prometheus metrics (`metrics.enabled`, default on); feed `metrics.onRequest` to listen(). */
  metrics?: Metrics;
  policies: Policies;
  webhooks?: Webhooks;
  /** Scheduled sync (`sync:` rules), when configured. */
  sync?: SyncJob;
  /** Push replication (`replication:` rules), when configured. */
  replication?: Replication;
  /** Token service, verifier and ACL, unless `auth.mode` is none. */
  auth?: Auth;
  /** Starts the background jobs the config turns on (upload purge, scheduled GC, retention); see lifecycle.ts. */
  start: Lifecycle['start'];
  /** Stops them (and webhook delivery); the caller closes the HTTP server and the driver. */
  stop: Lifecycle['stop'];
  /** The signature policy (`signatures.policies`), when there is one. */
  signatures?: SignaturePolicy;
  /** The audit log (`audit.enabled`); close it on shutdown. */
  audit?: Audit;
  /** `http.debug`: /metrics, /healthz and /readyz for the separate debug listener. */
  debugApp?: Hono<Env>;
}

export interface RegistryHooks extends AppHooks {
  /** Replaces the audit log `config.audit` would open (tests capture events with it). */
  auditLog?: Audit;
}

/**
 * What a cluster worker shares with the others through the primary (registry/cluster.ts `WorkerLink`); a single
 * process passes nothing and keeps it all in itself.
 */
export interface Shared {
  /** Runs the schedulers that must run once per server (proxy eviction here; serve.ts runs the others). */
  scheduler?: boolean;
  limiter?: Limiter;
  fills?: FillLeases;
  renderMetrics?: () => Promise<{ contentType: string; body: string }>;
  /** The other workers' repository changes, and where to tell them of ours (registry/cluster.ts). */
  changes?: WorkerLink['changes'];
}

export function createRegistry(
  config: Config,
  driver: Driver,
  log: Logger,
  hooks: RegistryHooks = {},
  shared: Shared = {},
): Registry {
  const store = createStore(driver, { maxManifestBytes: config.storage.maxManifestBytes });
  if (shared.changes) {
    // Another worker's push shows in this worker's UI at once, and ours in theirs (storage/browse.ts).
    const { publish, subscribe } = shared.changes;
    const forget = store.manifests.changed;
    store.manifests.changed = store.blobs.changed = (name) => {
      forget?.(name);
      publish(name);
    };
    subscribe((name) => store.browse.forget(name));
  }
  const proxy = config.proxy?.upstreams?.length
    ? createProxy(config.proxy, store, log, { schedule: shared.scheduler ?? true, leases: shared.fills })
    : undefined;
  const syncRules = resolveSyncRules(config.sync, proxy?.upstreams ?? resolveUpstreams(config.proxy));
  const sync = syncRules.length ? createSync(syncRules, store, log) : undefined;
  const replicationRules = resolveReplication(config.replication);
  const replication = replicationRules.length ? createReplication(replicationRules, store, log) : undefined;
  // A blob a client just checked stays for the GC grace window (storage/gc.ts).
  store.blobs.linkRefreshMs = parseDuration(config.gc.grace) / 2;
  // The UI's listings (storage/browse.ts) are reused this long; this process's writes drop them at once.
  store.browse.ttlMs = parseDuration(config.ui?.listingTtl ?? '5s');
  const audit = hooks.auditLog ?? createAudit(config.audit);
  const signatures = createSignaturePolicy(config.signatures, store, log, audit, proxy);
  const metrics = config.metrics.enabled
    ? createMetrics({ proxy, signatures, sync, replication, render: shared.renderMetrics, uploads: store.uploads })
    : undefined;
  const policies = createPolicies(config, store, log, audit);
  if (policies.enabled.immutable)
    store.manifests.tagPolicy = (name, tags, digest) => policies.checkTagWrite(name, tags, digest);
  const webhooks = config.webhooks?.length
    ? createWebhooks(config.webhooks, log, { source: config.http.publicUrl ?? 'berth' })
    : undefined;
  const auth = createAuth(config.auth, store.auth, {
    publicUrl: config.http.publicUrl,
    warn: (msg) => log.warn(msg),
    audit,
    limiter: shared.limiter,
  });
  auth?.ready.catch((e) =>
    log.error('auth keys or issuers failed to load', { err: String((e as Error)?.message ?? e) }),
  );
  const { auditLog: _, ...ops } = hooks;
  // With http.debug.addr, /metrics moves to the debug listener (debugApp); health stays on both.
  const debugApp = config.http.debug ? new Hono<Env>() : undefined;
  if (debugApp) healthRoutes(debugApp, driver, metrics);
  ops.extend = (app) => {
    healthRoutes(app, driver, debugApp ? undefined : metrics);
    auth?.extend?.(app);
    // The web UI and its JSON API (registry/ui), unless `ui.enabled: false`.
    if (config.ui?.enabled !== false)
      uiRoutes(app, {
        store,
        auth,
        proxy,
        sync,
        replication,
        policies,
        quotas: config.quotas,
        signatures,
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
      trustedProxies: trustedProxies(config.http.trustedProxies),
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
      ...(audit ? { audit: auditMiddleware(audit) } : {}),
      ...(auth ? { auth: auth.middleware } : {}),
      ...(proxy ? { proxy: proxy.middleware } : {}),
      limits: sessionLimits(config.storage.uploadSessions, store),
      policy: _chain(
        policyMiddleware(
          policies,
          webhooks || replication
            ? (e) => {
                webhooks?.emit(e);
                return replication?.emit(e);
              }
            : undefined,
        ),
        signatures?.middleware,
      ),
      ...ops,
    },
  );
  // Scheduled sync runs once per server (the scheduler worker); across replicas each rule's lease picks one.
  const lifecycle = createLifecycle(
    config,
    {
      store,
      policies,
      metrics,
      webhooks,
      audit,
      sync: shared.scheduler === false ? undefined : sync,
      replication: shared.scheduler === false ? undefined : replication,
    },
    log,
  );
  return {
    store,
    app,
    proxy,
    metrics,
    policies,
    signatures,
    webhooks,
    sync,
    replication,
    auth,
    audit,
    debugApp,
    start: lifecycle.start,
    stop: lifecycle.stop,
  };
}

/** Runs `a`, then `b` inside it (both see the same request; `b` may be absent). */
function _chain(a: MiddlewareHandler<Env>, b?: MiddlewareHandler<Env>): MiddlewareHandler<Env> {
  if (!b) return a;
  return (c, next) => a(c, () => b(c, next) as Promise<void>);
}
