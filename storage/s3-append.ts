// Appendable objects on S3 (what an upload session's data is): S3 has no append, so an object is a list of
// segments plus a state object swapped with compare-and-swap. Used by the S3 driver (s3.ts) for `append`, and for
// `stat`/`read`/`move`/`delete` of appendable paths.
//
// Appendable objects. The state object is the single source of truth:
//   { v: 1, rev, size, segments: [{ id, start, size }], garbage: [ids] }
// and every change is a compare-and-swap on it: PutObject with If-Match: <etag> (or If-None-Match: * to create),
// which AWS S3, MinIO and SeaweedFS evaluate atomically. An append (1) reads the state and checks the offset,
// (2) stores the new bytes as a fresh segment under a unique key, (3) swaps the state. Exactly one of several
// concurrent appends at the same offset wins the swap; losers delete their segment and get OffsetMismatchError. A
// failed body or a crash before (3) leaves only an unreferenced segment, so the object is as it was. `rev` is a nonce
// per state write: after a failed swap the writer re-reads the state, and if it carries its own rev the write did
// land (a retried request whose first response was lost, answered 412 or not at all) and the append succeeded.
//
// S3 multipart parts must be ≥ 5 MiB except the last, and only whole objects (or ranges of one) can be copied into
// a part. Invariant: every segment but a trailing run of small ones is ≥ 5 MiB, and that run totals < 5 MiB. A small
// append is staged as its own small segment; once the run plus the new bytes reach 5 MiB they are rolled into one
// segment (the < 5 MiB of staged bytes are read back and re-sent with the new ones; superseded segments go to
// `garbage`, deleted with the object, so a reader holding an older state never loses its segments).
// An append whose length is known (a PATCH with Content-Length) that makes a segment of ≥ 5 MiB is one PutObject
// streamed as the bytes arrive (with the staged run, read back, in front): no buffering, and receiving the chunk
// overlaps storing it. Without a length, the bytes are cut into buffered parts (retried by the SDK) as for `putStream`.
// `move` then builds the destination with one multipart upload whose parts are server-side ranged copies of the
// segments (UploadPartCopy, in parallel; never downloaded through berth), except a trailing run of several small
// segments (< 5 MiB in all) which is uploaded as the last part. The destination appears atomically when the upload
// completes; then the state (first: the object vanishes at once) and the segments are deleted. A crash between the
// two leaves unreferenced segments, removed by `delete` of the upload's prefix (the upload purge).
//
import { Readable } from 'node:stream';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { randomUUID } from 'node:crypto';
import { NotFoundError, OffsetMismatchError, type AppendOptions } from './driver.js';
import {
  MAX_PUT,
  MIN_PART,
  bytes,
  collect,
  copyRanges,
  isConditionFailed,
  isNotFound,
  readUpTo,
  type PartSource,
  type S3Bucket,
} from './s3-bucket.js';

interface Segment {
  id: string;
  start: number;
  size: number;
}
interface AppendState {
  v: 1;
  rev: string;
  size: number;
  segments: Segment[];
  garbage: string[];
}
export interface LoadedState {
  state: AppendState;
  etag: string;
  modified: Date;
}

class _LostRace extends Error {}

export class AppendableObjects {
  /** `dirOf(path)` is the key prefix holding `path`'s state and segments (the driver's hidden namespace). */
  constructor(
    private readonly objects: S3Bucket,
    private readonly dirOf: (path: string) => string,
  ) {}

  /** Appends `body` at `offset` (which must be the object's size); returns the new size. Path checks are the driver's. */
  async append(path: string, offset: number, body: Readable, opts: AppendOptions = {}): Promise<number> {
    const loaded = await this.load(path);
    const size = loaded?.state.size ?? 0;
    if (offset !== size) {
      body.resume();
      throw new OffsetMismatchError(path, offset, size);
    }
    const segments = loaded?.state.segments ?? [];
    const runFrom = _runStart(segments);
    const run = segments.slice(runFrom);
    const runBytes = run.reduce((n, s) => n + s.size, 0);
    const input = body[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
    const id = randomUUID();
    const segKey = this._segKey(path, id);
    const garbage = loaded?.state.garbage ?? [];
    // The staged run and the new bytes, stored as one segment of `stored` bytes (≥ 5 MiB) under `id`.
    const rolled = (stored: number): AppendState => ({
      v: 1,
      rev: randomUUID(),
      size: size + stored - runBytes,
      segments: [...segments.slice(0, runFrom), { id, start: run[0]?.start ?? size, size: stored }],
      garbage: [...garbage, ...run.map((s) => s.id)],
    });
    let next: AppendState;
    try {
      const length = opts.size;
      if (length !== undefined && length > 0 && runBytes + length >= MIN_PART && runBytes + length <= MAX_PUT) {
        // Length known: one PutObject streamed as the body arrives, nothing buffered.
        const source = this._concatSource(path, run, input);
        try {
          next = rolled(await this.objects.putStreamed(segKey, source, runBytes + length));
        } finally {
          void source.return(undefined).catch(() => {}); // not awaited: it may be waiting for body bytes that won't come
        }
      } else {
        const head = await readUpTo(input, MIN_PART - runBytes);
        if (head.done && head.data.length === 0) {
          if (loaded) return size; // nothing to add; an empty append at 0 still creates the object
          next = { v: 1, rev: randomUUID(), size: 0, segments: [], garbage: [] };
        } else if (head.done && runBytes + head.data.length < MIN_PART) {
          // Small: staged as its own segment, rolled into a big one later.
          await this.objects.putObject(segKey, head.data);
          next = {
            v: 1,
            rev: randomUUID(),
            size: size + head.data.length,
            segments: [...segments, { id, start: size, size: head.data.length }],
            garbage,
          };
        } else {
          // Big, length unknown: the staged run (< 5 MiB, read back) and the new bytes, uploaded in buffered parts.
          next = rolled(await this.objects.upload(segKey, this._concatSource(path, run, input, head.data), {}));
        }
      }
    } catch (e) {
      await input.return?.(); // stop reading a body nobody will store
      throw e;
    }
    try {
      await this._swapState(path, next, loaded?.etag);
    } catch (e) {
      // The swap may have landed even though the call failed (its last response lost): then the append happened
      // and the segment must stay. Only a state known not to be ours lets the segment go.
      const now = await this.load(path).catch(() => 'unknown' as const);
      if (now === 'unknown') throw e;
      if (now?.state.rev === next.rev) return next.size;
      await this.objects.deleteKeys([segKey]).catch(() => {});
      if (!(e instanceof _LostRace)) throw e;
      throw new OffsetMismatchError(path, offset, now?.state.size ?? 0);
    }
    return next.size;
  }

  /** The new bytes of an append (`head`, then the rest of `body`), preceded by the staged run they roll up. */
  private async *_concatSource(
    path: string,
    run: Segment[],
    body: AsyncIterator<Buffer | string>,
    head?: Buffer,
  ): AsyncGenerator<Buffer> {
    try {
      for (const s of run) {
        for await (const chunk of await this.objects.getStream(this._segKey(path, s.id))) yield chunk as Buffer;
      }
      if (head) yield head;
      for (let r = await body.next(); !r.done; r = await body.next()) yield bytes(r.value);
    } finally {
      await body.return?.();
    }
  }

  async load(path: string): Promise<LoadedState | undefined> {
    const key = `${this.dirOf(path)}/.state`;
    let res;
    try {
      res = await this.objects.send('GetObject', key, () =>
        this.objects.s3.send(new GetObjectCommand({ Bucket: this.objects.bucket, Key: key })),
      );
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    const text = await res.Body!.transformToString();
    const state = _parseState(text, path);
    return { state, etag: res.ETag ?? '', modified: res.LastModified ?? new Date(0) };
  }

  /** Compare-and-swap of the state object; throws _LostRace when the condition failed. */
  private async _swapState(path: string, next: AppendState, etag: string | undefined): Promise<void> {
    const key = `${this.dirOf(path)}/.state`;
    const body = Buffer.from(JSON.stringify(next));
    try {
      await this.objects.putObject(key, body, {
        ContentType: 'application/json',
        ...(etag ? { IfMatch: etag } : { IfNoneMatch: '*' }),
      });
    } catch (e) {
      // Also a retried request whose first attempt landed ends here: the caller checks the rev.
      throw isConditionFailed(e) ? new _LostRace() : e;
    }
  }

  read(path: string, state: AppendState, start: number, end?: number): Readable {
    const last = Math.min(end ?? state.size - 1, state.size - 1);
    const self = this;
    async function* bytes(): AsyncGenerator<Buffer> {
      for (const s of state.segments) {
        const a = Math.max(start, s.start);
        const b = Math.min(last, s.start + s.size - 1);
        if (a > b) continue;
        const key = self._segKey(path, s.id);
        let stream: Readable;
        try {
          stream = await self.objects.getStream(key, a - s.start, b - s.start);
        } catch (e) {
          if (isNotFound(e)) throw new NotFoundError(path); // moved or deleted while being read
          throw e;
        }
        for await (const chunk of stream) yield chunk as Buffer;
      }
    }
    return Readable.from(bytes(), { objectMode: false });
  }

  /** Builds `toKey` from the segments with server-side copies; the object appears when the upload completes. */
  async assemble(state: AppendState, path: string, toKey: string): Promise<void> {
    const segs = state.segments;
    const segKey = (s: Segment) => this._segKey(path, s.id);
    if (segs.length === 0) return this.objects.putObject(toKey, Buffer.alloc(0));
    if (segs.length === 1) return this.objects.copyObject(segKey(segs[0]), segs[0].size, toKey);
    const runFrom = _runStart(segs);
    const run = segs.slice(runFrom);
    const loadRun = async () =>
      Buffer.concat(await Promise.all(run.map(async (s) => collect(await this.objects.getStream(segKey(s))))));
    if (runFrom === 0) {
      // Only small segments, < 5 MiB in all: one small PUT.
      const data = await loadRun();
      await this.objects.putObject(toKey, data);
      return;
    }
    const parts: PartSource[] = [];
    for (const s of segs.slice(0, runFrom)) parts.push(...copyRanges(segKey(s), s.size));
    if (run.length === 1) parts.push({ copyKey: segKey(run[0]), start: 0, end: run[0].size - 1 });
    else if (run.length > 1) parts.push({ load: loadRun });
    await this.objects.multipartFrom(toKey, parts);
  }

  async drop(path: string, state: AppendState): Promise<void> {
    const dir = this.dirOf(path);
    await this.objects.deleteKeys([`${dir}/.state`]);
    await this.objects.deleteKeys(
      [...state.segments.map((s) => s.id), ...state.garbage].map((id) => this._segKey(path, id)),
    );
  }

  private _segKey(path: string, id: string): string {
    return `${this.dirOf(path)}/.seg/${id}`;
  }
}

/** Index where the trailing run of small (< 5 MiB) segments starts. */
function _runStart(segments: Segment[]): number {
  let i = segments.length;
  while (i > 0 && segments[i - 1].size < MIN_PART) i--;
  return i;
}

function _parseState(text: string, path: string): AppendState {
  let s: AppendState;
  try {
    s = JSON.parse(text);
  } catch {
    throw new Error(`corrupt upload state for ${path}: not JSON; delete the upload`);
  }
  let at = 0;
  const valid =
    s?.v === 1 &&
    typeof s.rev === 'string' &&
    Array.isArray(s.segments) &&
    Array.isArray(s.garbage) &&
    s.segments.every((g) => {
      const ok =
        typeof g?.id === 'string' &&
        /^[0-9a-f-]{36}$/.test(g.id) &&
        g.start === at &&
        Number.isSafeInteger(g.size) &&
        g.size > 0;
      at += ok ? g.size : 0;
      return ok;
    }) &&
    s.garbage.every((id) => typeof id === 'string' && /^[0-9a-f-]{36}$/.test(id)) &&
    s.size === at;
  if (!valid) throw new Error(`corrupt upload state for ${path}: segments do not add up; delete the upload`);
  return s;
}
