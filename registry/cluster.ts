// Every core (issue 18): `http.workers` processes serve one port through node:cluster
// (https://nodejs.org/api/cluster.html). The primary forks the workers, keeps the few things that must be one per
// server, and restarts a worker that dies; each worker is a whole registry (createRegistry + listen) on the shared
// port. With the default scheduling policy on Linux (round robin) the primary accepts connections and hands each to
// a worker, so one connection stays on one worker and a client's next connection may land on another.
//
// What is shared, and how:
// - storage state (upload sessions and their hash state, blobs, tags, the GC lease, auth keys): already in storage,
//   so any worker continues any upload, as any replica does;
// - the login limiter (auth/ratelimit.ts): lives in the primary; workers ask it over IPC (a failure is recorded
//   before the 401 is answered, so the next attempt, on whatever worker, sees it);
// - metrics: each worker keeps its own prom-client registry; a scrape of /metrics on any worker asks the primary,
//   which gathers every worker's (prom-client AggregatorRegistry) and answers the sum — one scrape, whole server;
// - schedulers (upload purge, GC, retention, proxy eviction): run in worker slot 0 only (slots survive restarts);
// - proxy fills: the primary grants one worker per blob the upstream download; the others wait for it to land in
//   storage (registry/proxy/fill.ts `FillRegistry`), so an upstream blob is fetched once per server;
// - the UI's listings (storage/browse.ts): a worker that changes a repository tells the primary, which tells the
//   others, so they list it again at once instead of after ui.listingTtl;
// - per-process caches (verified tokens, password checks, immutable blobs/manifests): caches of pure facts, correct
//   in every process;
// - the running hash of an upload session (storage/uploads.ts) lives in one worker's memory: new connections
//   carrying a chunk of a session are routed to that session's worker (registry/upload-affinity.ts), through the
//   primary, which passes the connection on.
// SIGTERM/SIGINT to the primary stops every worker gracefully (http.shutdownTimeout) and then the primary.
import cluster, { type Worker } from 'node:cluster';
import type { Socket } from 'node:net';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { LoginLimiter, type Limiter, type RateLimitOptions } from './auth/ratelimit.js';
import type { FillFollow, FillLeases } from './proxy/fill.js';
import type { Logger } from './log.js';
import { stopReading, type Affinity } from './upload-affinity.js';

const REQUEST = 'berth:cluster';
const REPLY = 'berth:cluster-reply';
/** A restarted worker waits this long, doubled for each crash within CRASH_WINDOW_MS, up to MAX_BACKOFF_MS. */
const BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;
const CRASH_WINDOW_MS = 10_000;
const SLOT_ENV = 'BERTH_CLUSTER_SLOT';
const WORKERS_ENV = 'BERTH_CLUSTER_WORKERS';
/** A connection on its way to another worker (registry/upload-affinity.ts); the socket travels with the message. */
const HANDOFF = 'berth:cluster-handoff';

interface HandOff {
  type: typeof HANDOFF;
  slot: number;
  head: string; // base64: the bytes already read from the socket
}

type Op =
  | 'ready'
  | 'limit.retryAfter'
  | 'limit.fail'
  | 'limit.succeed'
  | 'metrics'
  | 'fill.acquire'
  | 'fill.started'
  | 'fill.progress'
  | 'fill.release';
const FILL_EVENT = 'berth:cluster-fill';
/** A worker changed a repository (push, delete, mount): the primary tells the other workers (storage/browse.ts). */
const CHANGED = 'berth:cluster-changed';

interface ChangedEvent {
  type: typeof CHANGED;
  name: string;
}

/** Primary → followers of a fill: what the holder reported. */
interface FillEvent {
  type: typeof FILL_EVENT;
  key: string;
  info?: { uploadId: string; size: number };
  durable?: number;
  done?: { ok: boolean; error?: string };
}

interface Request {
  type: typeof REQUEST;
  id: number;
  op: Op;
  args: unknown[];
}

interface Reply {
  type: typeof REPLY;
  id: number;
  value?: unknown;
  error?: string;
}

/** `http.workers`, or the cores this process may use. */
export function workerCount(configured: number | undefined): number {
  return configured ?? availableParallelism();
}

/** What a worker gets from the primary. */
export interface WorkerLink {
  /** Stable over restarts: slot 0 runs the schedulers. */
  slot: number;
  limiter: Limiter;
  fills: FillLeases;
  /** Makes this worker's metrics part of what the primary gathers. */
  shareMetrics(registry: Registry): void;
  /** The whole server's metrics in Prometheus text format. */
  renderMetrics(): Promise<{ contentType: string; body: string }>;
  /** Routes each upload session's chunks to one worker (registry/upload-affinity.ts). */
  affinity: Affinity;
  /** Repositories changed by this worker go to the others, and theirs come here (the UI's listings forget them). */
  changes: { publish(name: string): void; subscribe(fn: (name: string) => void): void };
  /** Tells the primary this worker is listening. */
  ready(): void;
  /** Leaves the cluster once the server is closed (the process then exits). */
  close(): void;
}

/** The link to the primary when this process is a cluster worker, else undefined. */
export function workerLink(): WorkerLink | undefined {
  if (!cluster.isWorker) return undefined;
  // Installs prom-client's worker-side listener that answers the primary's metric requests.
  new AggregatorRegistry();
  let next = 0;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  /** Fills this worker follows (or asked to): updated as the primary relays the holder's reports. */
  const following = new Map<string, FillFollow>();
  const changed: Array<(name: string) => void> = [];
  let handedIn: ((socket: Socket, head: Buffer) => void) | undefined;
  process.on('message', (m: Reply | FillEvent | ChangedEvent | HandOff, socket?: Socket) => {
    if (m?.type === HANDOFF) {
      if (!socket) return;
      // Before anything else (the socket started reading when it was made): no byte may be read and dropped.
      stopReading(socket);
      if (handedIn) handedIn(socket, Buffer.from(m.head, 'base64'));
      else socket.destroy();
    } else if (m?.type === CHANGED) {
      for (const fn of changed) fn(m.name);
    } else if (m?.type === REPLY) {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) p?.reject(new Error(m.error));
      else p?.resolve(m.value);
    } else if (m?.type === FILL_EVENT) {
      const f = following.get(m.key);
      if (!f) return;
      if (m.info) f.info = m.info;
      if (m.durable !== undefined) f.durable = Math.max(f.durable, m.durable);
      if (m.done) {
        f.done = m.done;
        following.delete(m.key);
      }
      f.onChange?.();
    }
  });
  const ask = <T>(op: Op, ...args: unknown[]): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      process.send!({ type: REQUEST, id, op, args } satisfies Request, undefined, {}, (e: Error | null) => {
        if (!e) return;
        pending.delete(id);
        reject(e);
      });
    });
  const slot = Number(process.env[SLOT_ENV] ?? 0);
  return {
    slot,
    affinity: {
      slot,
      workers: Number(process.env[WORKERS_ENV] ?? 1),
      handOff: (socket, head, to) => {
        const m: HandOff = { type: HANDOFF, slot: to, head: head.toString('base64') };
        process.send!(m, socket, {}, () => socket.destroy());
      },
      onHandedIn: (fn) => {
        handedIn = fn;
      },
    },
    changes: {
      // Fire and forget: a lost message only leaves another worker's listing until ui.listingTtl.
      publish: (name) => process.send!({ type: CHANGED, name } satisfies ChangedEvent, undefined, {}, () => {}),
      subscribe: (fn) => changed.push(fn),
    },
    limiter: {
      retryAfter: (account, address) => ask<number>('limit.retryAfter', account, address),
      fail: (account, address) => ask<void>('limit.fail', account, address),
      succeed: (account, address) => ask<void>('limit.succeed', account, address),
    },
    fills: {
      async acquire(key) {
        // Registered before asking: the primary's events for it may arrive right behind its answer.
        const follow: FillFollow = following.get(key) ?? { durable: 0 };
        following.set(key, follow);
        const answer = await ask<{ mine: boolean; info?: FillFollow['info']; durable?: number }>('fill.acquire', key);
        if (answer.mine) {
          if (following.get(key) === follow) following.delete(key);
          return { mine: true };
        }
        follow.info ??= answer.info;
        follow.durable = Math.max(follow.durable, answer.durable ?? 0);
        return { mine: false, follow };
      },
      started: (key, info) => void ask('fill.started', key, info).catch(() => {}),
      progress: (key, durable) => void ask('fill.progress', key, durable).catch(() => {}),
      release: (key, ok, error) => void ask('fill.release', key, ok, error).catch(() => {}),
    } satisfies FillLeases,
    shareMetrics: (registry) => AggregatorRegistry.setRegistries([registry]),
    renderMetrics: async () => ask<{ contentType: string; body: string }>('metrics'),
    ready: () => void ask('ready').catch(() => {}),
    close: () => cluster.worker?.disconnect(),
  };
}

export interface PrimaryOptions {
  workers: number;
  log: Logger;
  /** How long workers get to finish in-flight requests on SIGTERM (http.shutdownTimeout). */
  shutdownTimeoutMs: number;
  limiter: RateLimitOptions;
}

/**
 * Runs the primary until SIGTERM/SIGINT: forks `workers` workers (this program again, with the same arguments),
 * answers their requests, restarts one that exits. Resolves the exit code: 0 after a stop, or the code of a worker
 * that failed before it was ever ready (a port in use, a bad storage root), which ends the whole server.
 */
export function runPrimary(opts: PrimaryOptions): Promise<number> {
  const { log } = opts;
  const limiter = new LoginLimiter(opts.limiter);
  const aggregator = new AggregatorRegistry();
  const slots: Array<Worker | undefined> = [];
  const everReady = new Set<number>();
  const crashes = new Map<number, number[]>();
  /** Running fills: the worker holding each, what it reported, the workers following it. */
  const fills = new Map<
    string,
    { holder: number; info?: FillFollow['info']; durable: number; followers: Set<number> }
  >();
  let stopping = false;
  let announced = false;

  return new Promise<number>((resolveExit) => {
    const finish = (code: number) => {
      if (!cluster.workers || Object.keys(cluster.workers).length === 0) return resolveExit(code);
      cluster.once('exit', () => finish(code));
    };
    const stopAll = (code: number, signal: NodeJS.Signals = 'SIGTERM') => {
      if (stopping) return;
      stopping = true;
      if (signal === 'SIGINT' || code === 0) opts.log.info('shutting down', { signal, workers: opts.workers });
      const kill = setTimeout(() => {
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
      }, opts.shutdownTimeoutMs + 5_000);
      kill.unref();
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
      finish(code);
    };

    const relay = (key: string, event: Omit<FillEvent, 'type' | 'key'>) => {
      for (const id of fills.get(key)?.followers ?? []) {
        const w = cluster.workers?.[id];
        if (w?.isConnected()) w.send({ type: FILL_EVENT, key, ...event } satisfies FillEvent);
      }
    };
    const release = (key: string, ok: boolean, error?: string) => {
      relay(key, { done: { ok, error } });
      fills.delete(key);
    };
    const releaseAll = (workerId: number) => {
      for (const [key, f] of fills) {
        if (f.holder === workerId) release(key, false, 'the worker fetching it from the upstream exited');
        else f.followers.delete(workerId);
      }
    };

    const answer = async (w: Worker, m: Request): Promise<unknown> => {
      const [a, b] = m.args as [string | undefined, string | undefined];
      switch (m.op) {
        case 'ready': {
          const slot = slots.indexOf(w);
          if (slot < 0) return undefined;
          if (everReady.has(slot)) log.info('worker restarted and listening', { slot, pid: w.process.pid });
          everReady.add(slot);
          if (everReady.size === opts.workers && !announced) {
            announced = true;
            log.info('all workers listening', { workers: opts.workers });
          }
          return undefined;
        }
        case 'limit.retryAfter':
          return limiter.retryAfter(a, b);
        case 'limit.fail':
          return limiter.fail(a, b);
        case 'limit.succeed':
          return limiter.succeed(a, b);
        case 'metrics':
          return { contentType: aggregator.contentType, body: await aggregator.clusterMetrics() };
        case 'fill.acquire': {
          const f = fills.get(a!);
          if (!f) {
            fills.set(a!, { holder: w.id, durable: 0, followers: new Set() });
            return { mine: true };
          }
          f.followers.add(w.id);
          return { mine: false, info: f.info, durable: f.durable };
        }
        case 'fill.started':
        case 'fill.progress':
        case 'fill.release': {
          const f = fills.get(a!);
          if (f?.holder !== w.id) return undefined;
          if (m.op === 'fill.started') {
            f.info = m.args[1] as FillFollow['info'];
            relay(a!, { info: f.info });
          } else if (m.op === 'fill.progress') {
            f.durable = m.args[1] as number;
            relay(a!, { durable: f.durable });
          } else release(a!, m.args[1] as boolean, m.args[2] as string | undefined);
          return undefined;
        }
      }
    };

    const fork = (slot: number) => {
      const w = cluster.fork({ [SLOT_ENV]: String(slot), [WORKERS_ENV]: String(opts.workers) });
      slots[slot] = w;
      w.on('message', (m: Request | ChangedEvent | HandOff, socket?: Socket) => {
        if (m?.type === HANDOFF) {
          if (!socket) return;
          stopReading(socket);
          socket.on('error', () => {});
          // The session's worker, or (restarting) the one that sent it: either stores the chunk correctly.
          const target = slots[m.slot]?.isConnected() ? slots[m.slot]! : w;
          if (!target.isConnected()) return void socket.destroy();
          target.send(m, socket, {}, (e: Error | null) => e && socket.destroy());
          return;
        }
        if (m?.type === CHANGED) {
          for (const other of slots) if (other && other !== w && other.isConnected()) other.send(m);
          return;
        }
        if (m?.type !== REQUEST) return;
        answer(w, m).then(
          (value) => w.isConnected() && w.send({ type: REPLY, id: m.id, value } satisfies Reply),
          (e) => w.isConnected() && w.send({ type: REPLY, id: m.id, error: String((e as Error)?.message ?? e) }),
        );
      });
      w.once('exit', (code, signal) => {
        releaseAll(w.id);
        if (slots[slot] === w) slots[slot] = undefined;
        if (stopping) return;
        if (!everReady.has(slot)) {
          // Never served: the same cause would kill its replacement. The worker said why on stderr.
          log.error('a worker failed to start; stopping', { slot, code, signal });
          return stopAll(code || 1);
        }
        const now = Date.now();
        const recent = (crashes.get(slot) ?? []).filter((t) => t > now - CRASH_WINDOW_MS);
        recent.push(now);
        crashes.set(slot, recent);
        const wait = Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** (recent.length - 1));
        log.error('worker exited; restarting it', { slot, pid: w.process.pid, code, signal, restartInMs: wait });
        setTimeout(() => stopping || fork(slot), wait);
      });
    };

    process.once('SIGTERM', () => stopAll(0));
    // Ctrl-C reaches the workers too (same process group); they stop on it themselves.
    process.once('SIGINT', () => stopAll(0, 'SIGINT'));
    for (let slot = 0; slot < opts.workers; slot++) fork(slot);
  });
}
