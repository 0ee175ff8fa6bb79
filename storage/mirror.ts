// What sync and push replication (registry/mirror) keep in storage, so every replica sees the same: a lease per rule
// (one replica runs a rule at a time, as GC's lease: holder + heartbeat judged by storage/gc-lease.ts, no clock
// comparison across machines), each sync rule's last status, and each replication rule's queue (one small object
// per pending item, so a restart or another replica continues it).
import { randomUUID } from 'node:crypto';
import type { Driver } from './driver.js';
import { alive, DEFAULT_LEASE_TTL_MS, selfOwner, type Beating } from './gc-lease.js';
import { paths, type MirrorKind } from './paths.js';

interface LeaseRecord extends Beating {
  holder: string;
}

export interface MirrorLease {
  readonly holder: string;
  /** True once another replica took the lease over (this one's heartbeat stopped landing in time). */
  lost(): boolean;
  release(): Promise<void>;
}

/** How often a contender that finds the lease held looks again. */
const POLL_MS = 250;

export class MirrorStore {
  constructor(private readonly driver: Driver) {}

  /**
   * Takes the rule's lease, or resolves undefined when a live holder has it. Drivers have no conditional write: the
   * lease is written, left to settle and read back; of two contenders that both read "free", the last write wins
   * and the other sees that on the re-read.
   */
  async lease(kind: MirrorKind, rule: string, ttlMs = DEFAULT_LEASE_TTL_MS): Promise<MirrorLease | undefined> {
    const path = paths.mirrorLease(kind, rule);
    const holder = randomUUID();
    if (await this._heldBy(path, holder)) return undefined;
    let beat = 0;
    let lost = false;
    let writes: Promise<unknown> = Promise.resolve();
    const write = () =>
      this.driver.put(
        path,
        JSON.stringify({ holder, beat: ++beat, ttl: ttlMs, owner: selfOwner() } satisfies LeaseRecord),
      );
    await write();
    await new Promise((r) => setTimeout(r, 100));
    if ((await this._read(path))?.holder !== holder) return undefined;
    const timer = setInterval(
      () => {
        writes = writes
          .then(async () => {
            if (lost) return;
            // Lost only to another holder: a record read as missing (an object store mid-overwrite) is written again.
            const current = await this._read(path);
            if (current && current.holder !== holder) {
              lost = true;
              return;
            }
            await write();
          })
          .catch(() => {});
      },
      Math.max(10, ttlMs / 8),
    );
    timer.unref();
    return {
      holder,
      lost: () => lost,
      release: async () => {
        clearInterval(timer);
        await writes;
        if (!lost && (await this._read(path))?.holder === holder) await this.driver.delete(path);
        lost = true;
      },
    };
  }

  /**
   * Whether someone holds the rule's lease as far as one look can tell: a record whose owner is not known to be dead
   * (a process gone on this host is seen at once; elsewhere a standing heartbeat needs watching, so it counts).
   */
  async leaseHeld(kind: MirrorKind, rule: string): Promise<boolean> {
    const lease = await this._read(paths.mirrorLease(kind, rule));
    return !!lease && alive(lease, `mirror ${kind}/${rule} ${lease.holder}`);
  }

  /** Whether a live holder other than `me` has the lease (waits until its heartbeat moves or stands for its ttl). */
  private async _heldBy(path: string, me: string): Promise<boolean> {
    let first: LeaseRecord | undefined;
    for (;;) {
      const lease = await this._readSettled(path);
      if (!lease || lease.holder === me || !alive(lease, `mirror ${path} ${lease.holder}`)) return false;
      if (first && (first.holder !== lease.holder || first.beat !== lease.beat)) return true;
      first ??= lease;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /**
   * The lease record, where "missing" must be seen three times 150 ms apart: an object store may answer 404 while
   * the holder overwrites the record (SeaweedFS does), and a contender must not take that for a free lease.
   */
  private async _readSettled(path: string): Promise<LeaseRecord | undefined> {
    for (let i = 0; ; i++) {
      const lease = await this._read(path);
      if (lease || i === 2) return lease;
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  private async _read(path: string): Promise<LeaseRecord | undefined> {
    return _json<LeaseRecord>(await this.driver.get(path));
  }

  // ---- sync status ----------------------------------------------------------------------------------------------

  async syncStatus<T>(rule: string): Promise<T | undefined> {
    return _json<T>(await this.driver.get(paths.syncStatus(rule)));
  }

  async setSyncStatus(rule: string, status: unknown): Promise<void> {
    await this.driver.put(paths.syncStatus(rule), JSON.stringify(status));
  }

  // ---- replication queue ----------------------------------------------------------------------------------------

  /**
   * Adds an item; ids sort in arrival order (a time prefix) so the queue drains oldest first. Returns the id.
   */
  async enqueue(rule: string, item: unknown): Promise<string> {
    const id = `${Date.now().toString(36).padStart(10, '0')}-${randomUUID()}`;
    await this.driver.put(paths.replicationItem(rule, id), JSON.stringify(item));
    return id;
  }

  /** Pending item ids, oldest first. */
  async queued(rule: string): Promise<string[]> {
    return (await this.driver.list(paths.replicationQueue(rule))).sort();
  }

  async queueItem<T>(rule: string, id: string): Promise<T | undefined> {
    return _json<T>(await this.driver.get(paths.replicationItem(rule, id)));
  }

  async updateQueueItem(rule: string, id: string, item: unknown): Promise<void> {
    await this.driver.put(paths.replicationItem(rule, id), JSON.stringify(item));
  }

  async dequeue(rule: string, id: string): Promise<void> {
    await this.driver.delete(paths.replicationItem(rule, id));
  }
}

function _json<T>(raw: Buffer | undefined): T | undefined {
  if (!raw) return undefined;
  try {
    return JSON.parse(raw.toString('utf8')) as T;
  } catch {
    return undefined; // a torn or foreign object counts as absent
  }
}
