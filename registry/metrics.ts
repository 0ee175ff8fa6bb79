// Prometheus metrics (prom-client) on a registry of berth's own (no global state, so tests can run several).
// Request series are fed by the node server once per finished request (registry/server.ts `onRequest`), never
// from inside handlers, so a streamed blob costs nothing extra while it flows.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GcResult } from '../storage/gc.js';
import { parseTarget } from './app.js';
import type { Proxy } from './proxy/index.js';
import type { SignaturePolicy } from './signatures.js';
import type { SyncJob } from './mirror/sync.js';
import type { Replication } from './mirror/replication.js';

export interface Metrics {
  registry: Registry;
  /** Call when a request starts; returns the function to call when it finished. */
  onRequest(req: IncomingMessage, res: ServerResponse): void;
  gcRun(result: GcResult | undefined, error?: boolean): void;
  render(): Promise<{ contentType: string; body: string }>;
}

/** A small, bounded label for the request's route (never the raw path: names and digests are unbounded). */
export function routeOf(path: string): string {
  if (!path.startsWith('/v2')) return ['/metrics', '/healthz', '/readyz', '/token'].includes(path) ? path : 'other';
  try {
    return parseTarget(path)?.route ?? 'other';
  } catch {
    return 'invalid';
  }
}

/**
 * `render`: how /metrics is answered; in a cluster worker it asks the primary for every worker's series summed
 * (registry/cluster.ts), so one scrape sees the whole server.
 */
export function createMetrics(
  opts: {
    proxy?: Proxy;
    signatures?: SignaturePolicy;
    sync?: SyncJob;
    replication?: Replication;
    defaults?: boolean;
    render?: () => Promise<{ contentType: string; body: string }>;
    /** The upload sessions (storage/uploads.ts): how many bytes had to be hashed again from storage. */
    uploads?: { rehashedBytes: number };
  } = {},
): Metrics {
  const registry = new Registry();
  if (opts.defaults ?? true) collectDefaultMetrics({ register: registry, prefix: 'berth_' });
  const requests = new Counter({
    name: 'berth_http_requests_total',
    help: 'HTTP requests by route, method and status',
    labelNames: ['route', 'method', 'status'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'berth_http_request_duration_seconds',
    help: 'Time to the last byte of the response, by route and method',
    labelNames: ['route', 'method'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const bytesIn = new Counter({
    name: 'berth_http_request_bytes_total',
    help: 'Bytes received (request line, headers and body) by route',
    labelNames: ['route'],
    registers: [registry],
  });
  const bytesOut = new Counter({
    name: 'berth_http_response_bytes_total',
    help: 'Bytes sent (headers and body) by route',
    labelNames: ['route'],
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: 'berth_http_requests_in_flight',
    help: 'Requests being served',
    registers: [registry],
  });
  const uploads = new Gauge({
    name: 'berth_uploads_in_flight',
    help: 'Blob upload requests (POST/PATCH/PUT) being received',
    registers: [registry],
  });
  const gcRuns = new Counter({
    name: 'berth_gc_runs_total',
    help: 'Garbage collections by result (ok, busy: another replica held the lease, error)',
    labelNames: ['result'],
    registers: [registry],
  });
  const gcFreed = new Counter({
    name: 'berth_gc_freed_bytes_total',
    help: 'Bytes of blob data removed by garbage collection',
    registers: [registry],
  });
  const gcDeleted = new Counter({
    name: 'berth_gc_deleted_total',
    help: 'Items removed by garbage collection, by kind',
    labelNames: ['kind'],
    registers: [registry],
  });
  const gcDuration = new Gauge({
    name: 'berth_gc_last_duration_seconds',
    help: 'Duration of the last garbage collection',
    registers: [registry],
  });
  const gcLast = new Gauge({
    name: 'berth_gc_last_success_timestamp_seconds',
    help: 'When the last garbage collection finished',
    registers: [registry],
  });
  for (const r of ['ok', 'busy', 'error']) gcRuns.inc({ result: r }, 0);
  const uploadStore = opts.uploads;
  if (uploadStore) {
    new Counter({
      name: 'berth_upload_rehashed_bytes_total',
      help: 'Bytes of upload sessions read back from storage to hash them (chunks that arrived at another worker or replica than the one completing the session)',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(uploadStore.rehashedBytes);
      },
    });
  }
  const proxy = opts.proxy;
  if (proxy) {
    const counters = [
      'hits',
      'misses',
      'joined',
      'revalidations',
      'staleServes',
      'upstreamErrors',
      'bytesFetched',
    ] as const;
    const names: Record<(typeof counters)[number], string> = {
      hits: 'berth_proxy_cache_hits_total',
      misses: 'berth_proxy_cache_misses_total',
      joined: 'berth_proxy_fill_joins_total',
      revalidations: 'berth_proxy_tag_revalidations_total',
      staleServes: 'berth_proxy_stale_serves_total',
      upstreamErrors: 'berth_proxy_upstream_errors_total',
      bytesFetched: 'berth_proxy_fetched_bytes_total',
    };
    for (const c of counters) {
      new Counter({
        name: names[c],
        help: `Pull-through cache: ${c} by upstream`,
        labelNames: ['upstream'],
        registers: [registry],
        collect() {
          this.reset();
          for (const [u, v] of Object.entries(proxy.stats().upstreams)) this.inc({ upstream: u }, v[c]);
        },
      });
    }
  }
  const signatures = opts.signatures;
  if (signatures) {
    new Counter({
      name: 'berth_signature_checks_total',
      help: 'Signature policy checks of pulled images by policy, mode and result (verified, unsigned, invalid)',
      labelNames: ['policy', 'mode', 'result'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [policy, p] of Object.entries(signatures.stats().policies))
          for (const [result, n] of Object.entries(p.checks)) this.inc({ policy, mode: p.mode, result }, n);
      },
    });
  }

  const sync = opts.sync;
  if (sync) {
    // This process's runs (the replica that held each rule's lease counts them); last status: GET …/api/v1/sync.
    new Counter({
      name: 'berth_sync_runs_total',
      help: 'Sync runs by rule and result (busy: another replica held the rule)',
      labelNames: ['rule', 'result'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [rule, s] of Object.entries(sync.stats()))
          for (const [result, n] of Object.entries(s.runs)) this.inc({ rule, result }, n);
      },
    });
    new Counter({
      name: 'berth_sync_images_total',
      help: 'Images a sync looked at, by rule and result (copied, skipped: already here, failed)',
      labelNames: ['rule', 'result'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [rule, s] of Object.entries(sync.stats()))
          for (const [result, n] of Object.entries(s.images)) this.inc({ rule, result }, n);
      },
    });
    new Counter({
      name: 'berth_sync_bytes_total',
      help: 'Blob bytes a sync downloaded, by rule',
      labelNames: ['rule'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [rule, s] of Object.entries(sync.stats())) this.inc({ rule }, s.bytes);
      },
    });
    new Gauge({
      name: 'berth_sync_last_success_timestamp_seconds',
      help: 'When a sync of the rule last finished with every selected image present (this process)',
      labelNames: ['rule'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [rule, s] of Object.entries(sync.stats()))
          if (s.lastSuccess) this.set({ rule }, s.lastSuccess / 1000);
      },
    });
    new Gauge({
      name: 'berth_sync_running',
      help: 'Whether this process is running the rule now',
      labelNames: ['rule'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [rule, s] of Object.entries(sync.stats())) this.set({ rule }, s.running ? 1 : 0);
      },
    });
  }

  const replication = opts.replication;
  if (replication) {
    new Counter({
      name: 'berth_replication_items_total',
      help: 'Replication items by rule and result (done, retried: failed and queued again, dropped: gave up)',
      labelNames: ['rule', 'result'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [rule, s] of Object.entries(replication.stats()))
          for (const result of ['done', 'retried', 'dropped'] as const) this.inc({ rule, result }, s[result]);
      },
    });
    new Gauge({
      name: 'berth_replication_queue_length',
      help: "Items waiting in the rule's queue, as last seen by the replica that works it",
      labelNames: ['rule'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [rule, s] of Object.entries(replication.stats())) if (s.active) this.set({ rule }, s.queued);
      },
    });
  }

  return {
    registry,
    onRequest(req, res) {
      const started = process.hrtime.bigint();
      const socket = req.socket;
      const read0 = socket.bytesRead;
      const written0 = socket.bytesWritten;
      const path = req.url?.split('?')[0] ?? '';
      const route = routeOf(path);
      const upload = route === 'uploads' || route === 'upload';
      inFlight.inc();
      if (upload && req.method !== 'GET' && req.method !== 'DELETE') uploads.inc();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        inFlight.dec();
        if (upload && req.method !== 'GET' && req.method !== 'DELETE') uploads.dec();
        const method = req.method ?? 'OTHER';
        requests.inc({ route, method, status: String(res.statusCode) });
        latency.observe({ route, method }, Number(process.hrtime.bigint() - started) / 1e9);
        bytesIn.inc({ route }, Math.max(0, socket.bytesRead - read0));
        bytesOut.inc({ route }, Math.max(0, socket.bytesWritten - written0));
      };
      res.once('finish', finish);
      res.once('close', finish);
    },
    gcRun(result, error) {
      if (error) return gcRuns.inc({ result: 'error' });
      if (!result) return gcRuns.inc({ result: 'busy' });
      gcRuns.inc({ result: 'ok' });
      if (result.dryRun) return;
      gcFreed.inc(result.bytes);
      for (const k of ['blobs', 'manifests', 'links', 'referrers', 'uploads'] as const)
        gcDeleted.inc({ kind: k }, result[k]);
      gcDuration.set(result.ms / 1000);
      gcLast.set(Date.now() / 1000);
    },
    async render() {
      if (opts.render) return opts.render();
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
