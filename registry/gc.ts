// The GC job as `berth serve` schedules it and `berth gc` runs it: retention first (it only deletes tags), then one
// mark-and-sweep (storage/gc.ts). Across replicas the storage lease makes one of them do the work; the others log
// that it was busy.
import { GcBusyError, type GcResult } from '../storage/gc.js';
import type { Store } from '../storage/index.js';
import { parseDuration } from '../spec/units.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import type { Audit } from './audit.js';

export interface GcJobRun {
  dryRun?: boolean;
  graceMs?: number;
  deleteUntagged?: boolean;
  onItem?: (kind: string, what: string, bytes?: number) => void;
}

export interface GcJob {
  /** One run now; undefined when another GC holds the lease. */
  run(opts?: GcJobRun): Promise<GcResult | undefined>;
  /** Schedules runs every `gc.interval` (when `gc.enabled`). */
  start(): void;
  stop(): void;
}

export interface GcHooks {
  /** Runs before the mark (retention policies). */
  before?: (dryRun: boolean) => Promise<void>;
  /** Observes each run (metrics): its result, undefined when another GC held the lease, or the error. */
  after?: (result: GcResult | undefined, error?: unknown) => void;
  /** Records each deletion (`gc.delete`; not in a dry run). */
  audit?: Audit;
}

export function createGcJob(config: Config, store: Store, log: Logger, hooks: GcHooks = {}): GcJob {
  const collector = store.collector();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  const run = async (opts: GcJobRun = {}): Promise<GcResult | undefined> => {
    try {
      await hooks.before?.(opts.dryRun ?? false);
      const result = await collector.run({
        dryRun: opts.dryRun,
        graceMs: opts.graceMs ?? parseDuration(config.gc.grace),
        deleteUntagged: opts.deleteUntagged ?? config.gc.deleteUntagged,
        uploadAgeMs: parseDuration(config.storage.uploadPurge.age),
        concurrency: config.gc.concurrency,
        onItem:
          hooks.audit && !opts.dryRun
            ? (kind, what, bytes) => {
                hooks.audit!.record({ event: 'gc.delete', outcome: 'success', actor: 'gc', kind, item: what, bytes });
                opts.onItem?.(kind, what, bytes);
              }
            : opts.onItem,
      });
      hooks.after?.(result);
      return result;
    } catch (e) {
      if (e instanceof GcBusyError) {
        log.info('gc skipped', { reason: e.message });
        hooks.after?.(undefined);
        return undefined;
      }
      hooks.after?.(undefined, e);
      throw e;
    }
  };
  return {
    run,
    start() {
      if (!config.gc.enabled || timer) return;
      timer = setInterval(() => {
        if (running) return; // the previous run is still going
        running = run()
          .then((r) => r && log.info('gc finished', { ...r }))
          .catch((e) => log.error('gc failed', { err: (e as Error)?.stack ?? String(e) }))
          .finally(() => (running = undefined));
      }, parseDuration(config.gc.interval));
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
  };
}
