// registry/proxy: pull-through cache and mirror mode for several upstreams (issue 7). `createProxy` gives the
// middleware createApp runs after auth, counters for metrics, and eviction for GC or a timer.
import type { MiddlewareHandler } from 'hono';
import { OciError, type Digest } from '../../spec/index.js';
import type { Store } from '../../storage/index.js';
import { parseDuration } from '../../spec/units.js';
import type { Env } from '../context.js';
import type { Logger } from '../log.js';
import { PullThroughCache, type ProxyStats } from './cache.js';
import type { FillLeases } from './fill.js';
import { mapRepository, resolveUpstreams, type LoadedProxyConfig, type Upstream } from './config.js';
import { evict, type EvictOptions, type EvictResult } from './evict.js';

export { mapRepository, resolveUpstreams, type ProxyConfig, type Upstream, type UpstreamConfig } from './config.js';
export type { ProxyStats, Counters } from './cache.js';
export type { EvictOptions, EvictResult } from './evict.js';

export interface Proxy {
  upstreams: Upstream[];
  /** Maps mirrored repositories to their cache; runs after auth (auth sees the name the client asked for). */
  middleware: MiddlewareHandler<Env>;
  stats(): ProxyStats;
  /** Evicts by the configured age and size cap, or by `opts`. */
  evict(opts?: EvictOptions): Promise<EvictResult>;
  /** Stops the eviction timer. */
  close(): void;
  /**
   * For the signature policy: when `local` (a name as stored) is a mirrored repository, fetches what a verifier
   * reads — manifests by tag or digest, blobs, referrers — into the cache first. Undefined for hosted repositories.
   */
  prefetcher(local: string): Prefetcher | undefined;
}

export interface Prefetcher {
  manifest(reference: string): Promise<void>;
  blob(digest: Digest): Promise<void>;
  referrers(subject: Digest): Promise<void>;
}

/**
 * `schedule`: run the eviction timer here (false in all cluster workers but one). `leases`: fills coordinated
 * across cluster workers (fill.ts).
 */
export function createProxy(
  config: LoadedProxyConfig,
  store: Store,
  log: Logger,
  opts: { schedule?: boolean; leases?: FillLeases } = {},
): Proxy {
  const upstreams = resolveUpstreams(config);
  const cache = new PullThroughCache(store, upstreams, log, opts.leases);
  const configured: EvictOptions = {
    maxAgeMs: config.eviction?.maxAge ? parseDuration(config.eviction.maxAge) : undefined,
    maxBytes: config.eviction?.maxBytes,
  };
  const runEviction = (opts: EvictOptions = configured) => evict(store, upstreams, opts);
  let timer: NodeJS.Timeout | undefined;
  if (
    (opts.schedule ?? true) &&
    config.eviction?.interval &&
    (configured.maxAgeMs !== undefined || configured.maxBytes !== undefined)
  ) {
    timer = setInterval(() => {
      runEviction()
        .then((r) => (r.blobs || r.manifests) && log.info('proxy: evicted cached content', { ...r }))
        .catch((e) => log.error('proxy: eviction failed', { err: String(e) }));
    }, parseDuration(config.eviction.interval));
    timer.unref();
  }

  const middleware: MiddlewareHandler<Env> = async (c, next) => {
    const target = c.var.target;
    if (!target.name) return next();
    const m = mapRepository(upstreams, target.name, c.req.query('ns'));
    if (!m) return next();
    const reading = c.req.method === 'GET' || c.req.method === 'HEAD';
    if (!reading && !m.upstream.allowPush) {
      throw new OciError(
        'DENIED',
        `${target.name} is a mirror of ${m.upstream.name} and does not accept ${c.req.method} (proxy.upstreams[].allowPush)`,
      );
    }
    if (!m.upstream.allows(m.remote)) {
      throw new OciError(
        'DENIED',
        `${m.remote} is not among the repositories mirrored from ${m.upstream.name} (proxy.upstreams[].allow)`,
      );
    }
    c.set('target', { ...target, name: m.local });
    if (!reading) return next();
    switch (target.route) {
      case 'manifest':
        await cache.manifest(c, m);
        return next();
      case 'blob':
        return (await cache.blob(c, m)) ?? next();
      case 'tags':
        return cache.tags(c, m, target.name);
      case 'referrers':
        await cache.referrers(c, m);
        return next();
      default:
        return next();
    }
  };

  const prefetcher = (local: string): Prefetcher | undefined => {
    const m = upstreams.find((u) => local.startsWith(`${u.prefix}/`)) && mapRepository(upstreams, local, undefined);
    if (!m || m.local !== local || !m.upstream.allows(m.remote)) return undefined;
    return {
      manifest: (reference) => cache.ensureManifest(m, reference),
      blob: (digest) => cache.ensureBlob(m, digest),
      referrers: (subject) => cache.ensureReferrers(m, subject),
    };
  };

  return {
    upstreams,
    middleware,
    stats: () => cache.stats(),
    evict: runEviction,
    close: () => clearInterval(timer),
    prefetcher,
  };
}
