// The registry's background work — purging abandoned uploads, scheduled GC, retention, webhook delivery — owned by
// the registry and started/stopped with it, so every way of running one (`berth serve`, a test, a worker process)
// gets the same schedule from `start()` and a clean `stop()`, instead of each caller wiring timers.
import type { Store } from '../storage/index.js';
import { parseDuration } from '../spec/units.js';
import type { Config } from './config.js';
import { createGcJob } from './gc.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { Policies } from './policy.js';
import type { Webhooks } from './webhooks.js';
import type { Audit } from './audit.js';
import type { SyncJob } from './mirror/sync.js';
import type { Replication } from './mirror/replication.js';

export interface Lifecycle {
  /** Schedules the jobs the config turns on. Idempotent. */
  start(): void;
  /** Stops scheduling and lets queued webhook deliveries give up; a job already running finishes on its own. */
  stop(): void;
}

export interface LifecycleParts {
  store: Store;
  policies: Policies;
  metrics?: Metrics;
  webhooks?: Webhooks;
  /** Records GC deletions (retention records its own through Policies). */
  audit?: Audit;
  /** Scheduled sync rules (registry/mirror/sync.ts). */
  sync?: SyncJob;
  /** Push replication workers (registry/mirror/replication.ts). */
  replication?: Replication;
}

export function createLifecycle(config: Config, parts: LifecycleParts, log: Logger): Lifecycle {
  const { store, policies, metrics, webhooks, audit, sync, replication } = parts;
  const timers: NodeJS.Timeout[] = [];
  // Scheduled GC (gc.enabled); replicas share one lease, so one of them does the work.
  const gc = createGcJob(config, store, log, { after: (r, e) => metrics?.gcRun(r, e !== undefined), audit });
  let started = false;
  const every = (interval: string, job: () => void) => {
    const t = setInterval(job, parseDuration(interval));
    t.unref();
    timers.push(t);
  };
  return {
    start() {
      if (started) return;
      started = true;
      const purge = config.storage.uploadPurge;
      if (purge.enabled) {
        every(purge.interval, () => {
          store.uploads
            .purge(new Date(Date.now() - parseDuration(purge.age)))
            .then((n) => n && log.info('purged abandoned uploads', { count: n }))
            .catch((e) => log.error('upload purge failed', { err: String(e) }));
        });
      }
      gc.start();
      sync?.start();
      replication?.start();
      // Retention only deletes tags (idempotent on every replica); GC reclaims the bytes afterwards.
      if (policies.enabled.retention) {
        every(config.retention?.interval ?? '1h', () => {
          policies.applyRetention().catch((e) => log.error('retention failed', { err: String(e) }));
        });
      }
    },
    stop() {
      for (const t of timers.splice(0)) clearInterval(t);
      gc.stop();
      sync?.stop();
      void replication?.stop();
      webhooks?.close();
      started = false;
    },
  };
}
