// Worker threads that hash and compress layer segments (segment-worker.ts), so the thread that reads files and
// tars them never waits for deflate or zstd. zstd-napi compresses on the calling thread, and a cold zstd build spent
// most of its time there, one core idle; gzip went to libuv's pool already, but the per-file SHA-256 and SHA-1 of
// every byte stayed on the main thread. A segment's bytes move to a worker and back without a copy (transferred).
// One segment is still one gzip member / zstd frame compressed whole, exactly as before: the bytes do not change.
// Workers start one at a time, as segments wait for one; a layer's only new segment, gzip-compressed, skips them
// (`here`): its compression runs on libuv's pool and the thread that would wait for it is free to hash.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Compression } from '../spec/build-spec.js';
import { ChangedFileError, type FileRead } from './tar.js';
import { runSegment, type SegmentWork } from './segment-task.js';
import type { GzipTuning } from './compress.js';

/** A segment's work sent to a worker; `tar` is transferred to the worker and back. */
export interface SegmentTask extends SegmentWork {
  id: number;
}

export interface SegmentReply {
  id: number;
  tar: ArrayBuffer;
  compressed: Uint8Array;
  /** Hex SHA-256 then hex SHA-1 of each file, in `files` order. */
  sums: string[];
  error?: string;
  /** The error is a context file that changed since planning (ChangedFileError). */
  changed?: boolean;
}

export interface HashedSegment {
  tar: Buffer;
  /** The compressed segment, in order: with `here`, gzip members still being compressed; else one done buffer. */
  parts: Promise<Buffer>[];
  sums: { sha256: string; sha1: string }[];
}

interface _Slot {
  worker: Worker;
  busy: number;
}

/** More workers than cores only add switching; the reading thread needs a share too, so at most 4. */
const SIZE = Math.max(1, Math.min(availableParallelism(), 4));

let _slots: _Slot[] | undefined;
let _nextId = 0;
const _pending = new Map<number, { resolve: (r: SegmentReply) => void; reject: (e: Error) => void; slot: _Slot }>();

/**
 * Reads `reads` into `tar`, hashes each file of it (whose data sits at `files`: offset, length pairs) and
 * compresses the whole segment: on a worker, or with `here` on this thread (gzip only: zstd-napi would block it) —
 * then it resolves once hashed, its gzip members still compressing on the thread pool (`parts`).
 * `tar` must own its ArrayBuffer (tarSegment's does): it is handed to the worker, and the result holds it again.
 */
export async function hashAndCompress(
  compression: Compression,
  tar: Buffer,
  files: number[],
  reads: FileRead[] = [],
  opts: { here?: boolean; gzip?: GzipTuning } = {},
): Promise<HashedSegment> {
  if (tar.byteOffset !== 0) throw new Error('hashAndCompress: the segment must start its ArrayBuffer');
  const { gzip } = opts;
  if (opts.here && compression === 'gzip') {
    const work = { compression, tar: tar.buffer as ArrayBuffer, length: tar.length, files, reads, gzip };
    const r = runSegment(work, { sync: false });
    return { tar, parts: r.parts, sums: _pairs(r.sums) };
  }
  const slot = _pick();
  const id = _nextId++;
  const length = tar.length;
  const task: SegmentTask = { id, compression, tar: tar.buffer as ArrayBuffer, length, files, reads, gzip };
  const reply = new Promise<SegmentReply>((resolve, reject) => _pending.set(id, { resolve, reject, slot }));
  if (slot.busy++ === 0) slot.worker.ref();
  slot.worker.postMessage(task, [task.tar]);
  const r = await reply;
  const c = r.compressed;
  return {
    tar: Buffer.from(r.tar, 0, length),
    parts: [Promise.resolve(Buffer.from(c.buffer, c.byteOffset, c.byteLength))],
    sums: _pairs(r.sums),
  };
}

/** SHA-256, SHA-1, SHA-256, SHA-1… → one pair per file. */
function _pairs(flat: string[]): HashedSegment['sums'] {
  const sums: HashedSegment['sums'] = [];
  for (let i = 0; i < flat.length; i += 2) sums.push({ sha256: flat[i], sha1: flat[i + 1] });
  return sums;
}

/** Free segment memory, reused for the next segments: at most this much is kept. */
const FREE_MAX_BYTES = 96 << 20;
const _free: ArrayBuffer[] = [];

/** Memory for a segment's tar of `size` bytes (plus the one tarSegment may read past it): recycled when it can be. */
export function segmentMemory(size: number): Buffer {
  // The smallest free buffer that fits, unless it is more than twice too big.
  let best = -1;
  for (let i = 0; i < _free.length; i++)
    if (
      _free[i].byteLength > size &&
      _free[i].byteLength <= 2 * size + 1 &&
      (best < 0 || _free[i].byteLength < _free[best].byteLength)
    )
      best = i;
  if (best >= 0) return Buffer.from(_free.splice(best, 1)[0]);
  // Rounded up so that buffers fit the next segments too (their sizes vary a little around SEGMENT_MIN_BYTES).
  return Buffer.from(new ArrayBuffer(Math.ceil((size + 1) / (64 << 10)) * (64 << 10)));
}

/** Gives a segment's memory back once nothing reads `tar` any more. */
export function recycle(tar: Buffer): void {
  const ab = tar.buffer as ArrayBuffer;
  if (tar.byteOffset !== 0 || ab.byteLength < 64 << 10 || _free.includes(ab)) return;
  let held = ab.byteLength;
  for (const b of _free) held += b.byteLength;
  if (held <= FREE_MAX_BYTES) _free.push(ab);
}

/**
 * An idle worker, else a new one while there are fewer than SIZE, else the least busy. Each worker costs a V8
 * isolate's start-up (tens of ms of CPU): a build with one segment at a time never starts a second.
 */
function _pick(): _Slot {
  _slots ??= [];
  const idle = _slots.find((s) => s.busy === 0);
  if (idle) return idle;
  if (_slots.length < SIZE) {
    const slot = _spawn();
    _slots.push(slot);
    return slot;
  }
  return _slots.reduce((a, b) => (b.busy < a.busy ? b : a));
}

function _spawn(): _Slot {
  const worker = _newWorker();
  const slot: _Slot = { worker, busy: 0 };
  worker.on('message', (r: SegmentReply) => {
    const p = _pending.get(r.id);
    if (!p) return;
    _pending.delete(r.id);
    if (--slot.busy === 0) worker.unref();
    // A file that changed keeps its own message (it names the file and the fix), as does a read that failed.
    if (r.error) p.reject(r.changed ? new ChangedFileError(r.error) : new Error(r.error));
    else p.resolve(r);
  });
  // A worker that dies takes its tasks with it: they fail, and the next task gets a fresh worker.
  const fail = (e: Error) => {
    for (const [id, p] of _pending)
      if (p.slot === slot) {
        _pending.delete(id);
        p.reject(new Error(`the layer compression worker failed: ${e.message}`));
      }
    if (_slots) _slots[_slots.indexOf(slot)] = _spawn();
  };
  worker.once('error', fail);
  worker.once('exit', (code) => {
    if (slot.busy) fail(new Error(`exited with code ${code}`));
  });
  // Idle workers do not keep the process alive; a worker with work in flight does (ref'd in hashAndCompress). After
  // the listeners: adding a 'message' listener refs the worker's port again.
  worker.unref();
  return slot;
}

function _newWorker(): Worker {
  const url = new URL(import.meta.url.endsWith('.ts') ? './segment-worker.ts' : './segment-worker.js', import.meta.url);
  if (!url.pathname.endsWith('.ts')) return new Worker(url);
  // Run from source (tests under tsx): a worker does not inherit tsx's loader, so it registers it first.
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(
    `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`,
    { eval: true },
  );
}
