// Telling a running garbage collection from a dead one (storage/gc.ts), without trusting clocks across machines.
//
// A running GC bumps a counter (`beat`) in gc/lease and gc/state every ttl/8 ms. A reader decides it is gone when:
//   - its process is provably dead: the record names this host, boot and pid namespace, and that pid no longer runs
//     (or runs another program, started at another time) — a GC killed on this machine is seen at once; or
//   - the same beat has been in place for `ttl` ms, measured on the reader's own monotonic clock from the first time
//     this process saw it — no comparison of two machines' clocks, so skew cannot make a live GC look dead.
// The GC fences itself (storage/gc.ts): it deletes nothing once `0.6 × ttl` has passed since the start of its last
// beat that landed, so by the time any reader can call it dead it has stopped (the 0.4 × ttl margin covers deletes
// already in flight). A GC that cannot renew — slow storage, a stalled process — therefore stops instead of racing
// the writers that gave up waiting for it.
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';

/** Enough to tell, on the same host and pid namespace, whether a GC's process still runs. */
export interface GcOwner {
  host: string;
  pid: number;
  boot?: string;
  pidns?: string;
  /** The process's start time (clock ticks since boot, /proc/<pid>/stat), so a reused pid is not mistaken for it. */
  start?: string;
}

/** The heartbeat fields gc/lease and gc/state carry. */
export interface Beating {
  beat?: number;
  /** Milliseconds without a new beat after which readers consider the GC gone (written by the GC, so all agree). */
  ttl?: number;
  owner?: GcOwner;
  /** Legacy records (no beat): an absolute expiry. New ones keep it for people reading the file. */
  expires?: string;
}

export const DEFAULT_LEASE_TTL_MS = 5_000;

function _read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Fields after the command name of /proc/<pid>/stat (state is [0], starttime is [19]); undefined when no such pid. */
function _stat(pid: number | 'self'): string[] | undefined {
  const raw = _read(`/proc/${pid}/stat`);
  return raw ? raw.slice(raw.lastIndexOf(')') + 2).split(' ') : undefined;
}

let _me: GcOwner | undefined;

export function selfOwner(): GcOwner {
  if (_me) return _me;
  let pidns: string | undefined;
  try {
    pidns = readlinkSync('/proc/self/ns/pid');
  } catch {
    // Not Linux (or no /proc): liveness falls back to the heartbeat alone.
  }
  _me = {
    host: hostname(),
    pid: process.pid,
    boot: _read('/proc/sys/kernel/random/boot_id'),
    pidns,
    start: _stat('self')?.[19],
  };
  return _me;
}

/** True only when `owner`'s process is known to be gone; false when alive or when this host cannot tell. */
export function ownerGone(owner: GcOwner | undefined): boolean {
  const me = selfOwner();
  if (!owner || !me.boot || !me.pidns || owner.host !== me.host || owner.boot !== me.boot || owner.pidns !== me.pidns)
    return false;
  if (!Number.isInteger(owner.pid) || owner.pid <= 0) return false;
  if (owner.pid === me.pid) return owner.start !== undefined && me.start !== undefined && owner.start !== me.start;
  const fields = _stat(owner.pid);
  if (!fields) return true; // no such process
  return (
    fields[0] === 'Z' ||
    fields[0] === 'X' ||
    (owner.start !== undefined && fields[19] !== undefined && fields[19] !== owner.start)
  );
}

/** When this process first saw each beat (key → performance.now()). */
const _firstSeen = new Map<string, number>();

/** Whether the beat named `key` has stood unchanged, as far as this process has watched it, for `ttl` ms. */
function _stood(key: string, ttl: number): boolean {
  const now = performance.now();
  const first = _firstSeen.get(key);
  if (first === undefined) {
    if (_firstSeen.size > 1_000) for (const [k, t] of _firstSeen) if (now - t > 600_000) _firstSeen.delete(k);
    _firstSeen.set(key, now);
    return false;
  }
  return now - first >= ttl;
}

/**
 * Whether the GC behind a lease or state record (`id` names the run: holder or generation) still counts as running.
 * Call it on every poll: a beat is judged by how long this process has seen it unchanged.
 */
export function alive(record: Beating, id: string): boolean {
  if (ownerGone(record.owner)) return false;
  if (record.beat === undefined || !record.ttl) return !record.expires || Date.parse(record.expires) > Date.now();
  return !_stood(`${id}#${record.beat}`, record.ttl);
}
