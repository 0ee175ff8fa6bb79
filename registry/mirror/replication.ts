// Push replication (`replication:` rules): the push and delete events webhooks see are queued in storage — one
// object per item, written before the client gets its 201/202 — and a worker copies each to the target registry
// with client/copy.ts (referrers included). A restart, or another replica, continues the queue: the worker of a
// rule holds its storage lease (as GC's), items are removed only once done, and a failed attempt waits with
// exponential backoff. Replaying an item is harmless: it copies the reference's *current* content, by digest, so
// the destination ends in the same state however often (or late) an item runs.
import picomatch from 'picomatch';
import { copy, remoteTarget } from '../../client/copy.js';
import { upstreamRegistry } from '../../client/mirror.js';
import { Repository } from '../../client/remote.js';
import type { Registry as RemoteRegistry } from '../../client/registry.js';
import type { ReplicationRule } from '../../spec/config-schema.js';
import { isDigest, isValidName, OciError, type Digest } from '../../spec/index.js';
import { parseManifest } from '../../spec/manifest.js';
import { parseDuration } from '../../spec/units.js';
import type { MirrorLease, Store } from '../../storage/index.js';
import { ConfigError } from '../config.js';
import type { Logger } from '../log.js';
import { addressPolicy, guardedAgent, privateNetworksProblem } from '../net-policy.js';
import type { RegistryEvent } from '../webhooks.js';
import { storeSource } from './media.js';
import { checkReachable } from './sync.js';

export type { ReplicationRule };

/** One queued replication, as stored. */
export interface QueueItem {
  kind: 'push' | 'delete';
  repository: string;
  /** A tag or a digest. */
  reference: string;
  queuedAt: number;
  attempts: number;
  /** Not before this time (ms since epoch): backoff after a failed attempt. */
  notBefore: number;
  lastError?: string;
}

interface Resolved {
  name: string;
  rule: ReplicationRule;
  matches: (repository: string) => boolean;
  backoffMs: number;
  maxBackoffMs: number;
  giveUpMs: number;
  registry(): RemoteRegistry;
}

export interface ReplicationStats {
  done: number;
  retried: number;
  dropped: number;
  queued: number;
  lastError?: string;
  active: boolean;
}

export interface Replication {
  readonly rules: Resolved[];
  /** Queues the event for every rule it matches; resolves once stored. */
  emit(e: RegistryEvent): Promise<void>;
  /** Starts the workers (each takes its rule's lease when free). */
  start(): void;
  stop(): Promise<void>;
  stats(): Record<string, ReplicationStats>;
  /** Resolves when every rule's queue is empty (tests). */
  drained(): Promise<void>;
}

const LEASE_TTL_MS = 10_000;
/** How often a replica without the lease looks again, and how long an idle worker sleeps unless poked. */
const POLL_MS = 1_000;

export function resolveReplication(rules: ReplicationRule[] | undefined): Resolved[] {
  const out: Resolved[] = [];
  for (const [i, r] of (rules ?? []).entries()) {
    const where = `replication[${i}] (${r.name})`;
    if (out.some((o) => o.name === r.name)) throw new ConfigError(`${where}: another rule has this name`);
    const problem = privateNetworksProblem(r.allowPrivateNetworks);
    if (problem) throw new ConfigError(`${where}: ${problem}`);
    const policy = addressPolicy(r.allowPrivateNetworks ?? false);
    const url = new URL(r.url).origin;
    checkReachable(where, url, policy);
    let registry: RemoteRegistry | undefined;
    const match = r.repositories?.length ? picomatch(r.repositories, { dot: true }) : () => true;
    out.push({
      name: r.name,
      rule: r,
      matches: (repo) => match(repo),
      backoffMs: parseDuration(r.backoff ?? '1s'),
      maxBackoffMs: parseDuration(r.maxBackoff ?? '5m'),
      giveUpMs: parseDuration(r.giveUpAfter ?? '24h'),
      registry: () =>
        (registry ??= upstreamRegistry({
          url,
          username: r.username,
          password: r.password,
          retries: 1,
          dispatcher: guardedAgent(policy),
        })),
    });
  }
  return out;
}

export function createReplication(rules: Resolved[], store: Store, log: Logger): Replication {
  const stats: Record<string, ReplicationStats> = {};
  const pokes = new Map<string, () => void>();
  const workers: Promise<void>[] = [];
  let stopped = true;
  for (const r of rules) stats[r.name] = { done: 0, retried: 0, dropped: 0, queued: 0, active: false };

  const worker = async (r: Resolved) => {
    const s = stats[r.name];
    while (!stopped) {
      const lease = await store.mirror.lease('replication', r.name, LEASE_TTL_MS).catch(() => undefined);
      if (!lease) {
        await _sleep(POLL_MS, (wake) => pokes.set(r.name, wake));
        continue;
      }
      s.active = true;
      try {
        while (!stopped && !lease.lost()) {
          const worked = await _drain(r, store, lease, s, log);
          if (!worked) await _sleep(POLL_MS, (wake) => pokes.set(r.name, wake));
        }
      } catch (e) {
        log.error('replication worker failed', { rule: r.name, err: String((e as Error)?.stack ?? e) });
        await _sleep(POLL_MS, () => {});
      } finally {
        s.active = false;
        await lease.release().catch(() => {});
      }
    }
  };

  return {
    rules,
    async emit(e) {
      if (e.kind !== 'push' && e.kind !== 'delete') return;
      const reference = e.tag ?? e.digest;
      if (!reference) return;
      for (const r of rules) {
        if (!r.matches(e.repository)) continue;
        if (e.kind === 'delete' && !r.rule.deletes) continue;
        const item: QueueItem = {
          kind: e.kind,
          repository: e.repository,
          reference,
          queuedAt: Date.now(),
          attempts: 0,
          notBefore: 0,
        };
        await store.mirror.enqueue(r.name, item);
        pokes.get(r.name)?.();
      }
    },
    start() {
      if (!stopped) return;
      stopped = false;
      for (const r of rules) workers.push(worker(r));
    },
    async stop() {
      stopped = true;
      for (const wake of pokes.values()) wake();
      await Promise.all(workers.splice(0));
    },
    stats: () => stats,
    async drained() {
      for (;;) {
        let left = 0;
        for (const r of rules) left += (await store.mirror.queued(r.name)).length;
        if (!left) return;
        await new Promise((res) => setTimeout(res, 100));
      }
    },
  };
}

/** One pass over the queue, oldest first. True when it did something (so the caller loops at once). */
async function _drain(
  r: Resolved,
  store: Store,
  lease: MirrorLease,
  s: ReplicationStats,
  log: Logger,
): Promise<boolean> {
  const ids = await store.mirror.queued(r.name);
  s.queued = ids.length;
  let worked = false;
  // Items of a repository run in order: one waiting out a backoff holds back the later ones of its repository.
  const blocked = new Set<string>();
  for (const id of ids) {
    if (lease.lost()) return worked;
    const item = await store.mirror.queueItem<QueueItem>(r.name, id);
    if (!item) continue; // done meanwhile (another worker before a takeover), or unreadable
    if (blocked.has(item.repository)) continue;
    if (item.notBefore > Date.now()) {
      blocked.add(item.repository);
      continue;
    }
    worked = true;
    try {
      await _replicate(r, store, item, log);
      await store.mirror.dequeue(r.name, id);
      s.done++;
      s.queued--;
    } catch (e) {
      const message = String((e as Error)?.message ?? e).slice(0, 500);
      item.attempts++;
      item.lastError = message;
      s.lastError = message;
      if (Date.now() - item.queuedAt > r.giveUpMs) {
        log.error('replication given up', { rule: r.name, ...item });
        await store.mirror.dequeue(r.name, id);
        s.dropped++;
        continue;
      }
      item.notBefore = Date.now() + Math.min(r.maxBackoffMs, r.backoffMs * 2 ** (item.attempts - 1));
      await store.mirror.updateQueueItem(r.name, id, item);
      s.retried++;
      blocked.add(item.repository);
      log.info('replication failed, will retry', {
        rule: r.name,
        repository: item.repository,
        reference: item.reference,
        attempts: item.attempts,
        err: message,
      });
    }
  }
  return worked;
}

async function _replicate(r: Resolved, store: Store, item: QueueItem, log: Logger): Promise<void> {
  const remoteName = r.rule.prefix ? `${r.rule.prefix}/${item.repository}` : item.repository;
  if (!isValidName(remoteName)) throw new Error(`"${remoteName}" is not a valid repository name on the target`);
  const repo = new Repository(r.registry(), remoteName, { push: true });
  if (item.kind === 'delete') {
    try {
      await repo.deleteManifest(item.reference);
    } catch (e) {
      const status = (e as { status?: number }).status;
      if (status === 404) return; // gone already
      // Deleting a tag is optional in the distribution-spec (distribution 2.8.2 refuses it): nothing to retry.
      if (!isDigest(item.reference) && status !== undefined && [400, 405, 501].includes(status)) {
        log.warn('replication: the target does not delete tags; only digest deletes are replicated there', {
          rule: r.name,
          repository: item.repository,
          tag: item.reference,
        });
        return;
      }
      throw e;
    }
    return;
  }
  let reference = item.reference;
  const tag = isDigest(reference) ? undefined : reference;
  try {
    // A referrer pushed on its own travels as its subject's referrer, so a target without the referrers API gets
    // the fallback tag index too (copy.ts); follow `subject` up to the image.
    for (let depth = 0; !tag && depth < 8; depth++) {
      const m = await store.manifests.get(item.repository, reference);
      const subject = parseManifest(m.bytes, m.mediaType).subject?.digest;
      if (!subject || !(await store.manifests.has(item.repository, subject as Digest))) break;
      reference = subject;
    }
  } catch (e) {
    if (e instanceof OciError && e.code === 'MANIFEST_UNKNOWN') return; // deleted since: nothing to send
    throw e;
  }
  try {
    await copy(storeSource(store, item.repository), reference, remoteTarget(repo), tag ?? '', {
      referrers: r.rule.referrers ?? true,
      concurrency: r.rule.concurrency ?? 4,
    });
  } catch (e) {
    if (e instanceof OciError && e.code === 'MANIFEST_UNKNOWN') return;
    throw e;
  }
}

function _sleep(ms: number, onWake: (wake: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    t.unref();
    onWake(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
