// S3 driver (AWS S3, MinIO, SeaweedFS, Ceph RGW…) with @aws-sdk/client-s3. Same contract as every driver
// (driver.ts, checked by driver-suite.ts); stateless, so any number of berth replicas can share one bucket.
//
// Keys (under the optional `prefix`):
//   <path>                                   plain objects: put / putStream / move targets
//   .berth-append/<path>/.state              JSON state of the appendable object <path> (an upload in progress)
//   .berth-append/<path>/.seg/<uuid>         its segments: plain objects holding consecutive byte ranges
// The hidden namespace is a sibling of the data tree, so `list` of a data prefix never sees segments; `list` merges
// in the names of appendable objects. No berth path segment starts with "." (paths.ts), so `.state`/`.seg` can't
// collide with a child path.
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
// `list` asks for direct children with Delimiter "/" (paginated) in both namespaces. Some servers (SeaweedFS) keep
// listing an emptied "folder" for minutes, so each sub-prefix is confirmed with a one-key LIST (`checkEmptyPrefixes`,
// default on; AWS S3 and MinIO never list empty prefixes and can turn it off).
//
// Plain writes are atomic too: one PutObject for bodies up to one part, else a multipart upload that is completed
// only after the whole body arrived and matched `sha256`/`size` and the caller's `verify` accepted it (a blob pushed
// with a known digest streams straight to its final key this way), and aborted otherwise. A known sha256 is sent as
// ChecksumSHA256 so the server verifies single-request bodies itself (S3 has no full-object SHA-256 for multipart:
// those are verified here before completing). Bodies are cut into parts of `partSize` bytes, at most
// `concurrency` + 1 in memory per transfer — buffered parts are what make each request retryable.
//
// Failures: the SDK's standard retry strategy (exponential backoff with full jitter) retries 5xx, SlowDown and other
// throttling, connection resets and timeouts; every request has a connect timeout, a total request timeout (until
// the response headers) and a socket idle timeout. Other errors become an S3StorageError with one clean line.
import { Readable } from 'node:stream';
import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type PutObjectCommandInput,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { RelayUnavailable, relayGet } from './http-relay.js';
import { pool } from './pool.js';
import {
  assertSafePath,
  NotFoundError,
  OffsetMismatchError,
  type AppendOptions,
  type Driver,
  type FileInfo,
  type MoveOptions,
  type PutStreamOptions,
  type ReadOptions,
} from './driver.js';

const MiB = 1024 * 1024;
/** S3's minimum size of every multipart part but the last. */
const MIN_PART = 5 * MiB;
const MAX_PARTS = 10_000;
/** Largest object one PutObject may store. */
const MAX_PUT = 5 * 1024 * MiB;
/** Largest object CopyObject handles in one request; larger ones are copied as parallel ranged parts. */
const SINGLE_COPY_MAX = 64 * MiB;
/** Size of each ranged server-side copy when a segment is split. */
const COPY_PART = 64 * MiB;
const COPY_CONCURRENCY = 8;
const APPEND_ROOT = '.berth-append';
/** How long blob GETs skip the relay after the bucket refused a presigned GET (see _relay). */
const RELAY_PAUSE_MS = 5 * 60_000;

/** The `storage.s3` configuration block; `new S3Driver(config.storage.s3)`. */
export interface S3DriverOptions {
  bucket: string;
  /** Custom endpoint (MinIO, SeaweedFS, Ceph RGW…); AWS when unset. */
  endpoint?: string;
  /** Defaults to AWS_REGION, then us-east-1. */
  region?: string;
  /** Key prefix under which berth keeps everything, so a bucket can be shared. */
  prefix?: string;
  /** Path-style URLs (http://host/bucket/key); defaults to true when `endpoint` is set. */
  forcePathStyle?: boolean;
  /** Static credentials; when unset the standard AWS chain (env, profile, web identity, IMDS…) is used. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** `redirect`: blob GETs answer 307 to a presigned URL; `proxy` (default): berth streams the bytes. */
  blobGet?: 'redirect' | 'proxy';
  // Tuning, rarely needed.
  /** Multipart part size for streamed writes (default 16 MiB; grows for huge known sizes). */
  partSize?: number;
  /** Parts uploaded in parallel per streamed write (default 4). */
  concurrency?: number;
  /**
   * Check that each sub-prefix `list` returns still holds an object (one small LIST each; default true). Needed on
   * servers that list emptied "folders" for a while (SeaweedFS); AWS S3 and MinIO can turn it off.
   */
  checkEmptyPrefixes?: boolean;
  /** Attempts per request, first one included (default 6). */
  maxAttempts?: number;
  /** Time until the response headers, per attempt (default 120 s); the socket idle timeout is the same. */
  requestTimeoutMs?: number;
  /** TCP/TLS connect timeout per attempt (default 5 s). */
  connectTimeoutMs?: number;
  /**
   * Proxied blob GETs bypass the SDK: a presigned GET whose bytes are relayed through reused buffers
   * (storage/http-relay.ts; ~4× less CPU per GiB). Default true; anything but a plain 200/206 falls back to the SDK.
   */
  relayReads?: boolean;
}

/** What berth's stores know about their paths, passed by the code that builds the driver (pkg-cli/serve.ts). */
export interface S3DriverHints {
  /**
   * True for the paths that only ever hold appendable objects (berth: upload data, `isUploadDataPath`), false for
   * paths that never do. A lookup (stat, read, get, move) then asks S3 once, in the one namespace that can hold the
   * object, instead of trying the plain key and then the appendable state: a missing blob, link or tag costs one
   * request, not two. Without hints every path may be either.
   */
  appendable?: (path: string) => boolean;
}

/** A failed S3 request, after retries. `retryable` tells the registry to answer 503 rather than 500. */
export class S3StorageError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number | undefined,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'S3StorageError';
  }
}

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
interface LoadedState {
  state: AppendState;
  etag: string;
  modified: Date;
}
type PartSource = { copyKey: string; start: number; end: number } | { load: () => Promise<Buffer> };

class _LostRace extends Error {}

export class S3Driver implements Driver {
  readonly name = 's3';
  /** The SDK client (exposed for diagnostics and tests, e.g. counting requests with a middleware). */
  readonly s3: S3Client;
  readonly bucket: string;
  private readonly root: string;
  private readonly blobGet: 'redirect' | 'proxy';
  private readonly partSize: number;
  private readonly concurrency: number;
  private readonly checkEmptyPrefixes: boolean;
  private readonly maxAttempts: number;
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly relayReads: boolean;
  /** Until when blob GETs skip the relay: the bucket refused a presigned GET the SDK may still be allowed. */
  private relayRefusedUntil = 0;
  private readonly appendable?: (path: string) => boolean;

  constructor(opts: S3DriverOptions, hints: S3DriverHints = {}) {
    if (!opts || typeof opts.bucket !== 'string' || !opts.bucket) {
      throw new Error('storage.s3.bucket is required: set it to the name of an existing bucket');
    }
    if (opts.endpoint !== undefined && !URL.canParse(opts.endpoint)) {
      throw new Error(
        `storage.s3.endpoint ${JSON.stringify(opts.endpoint)} is not a URL: use e.g. http://127.0.0.1:9000`,
      );
    }
    if (Boolean(opts.accessKeyId) !== Boolean(opts.secretAccessKey)) {
      throw new Error(
        'storage.s3: set both accessKeyId and secretAccessKey, or neither to use the AWS credential chain',
      );
    }
    if (opts.blobGet !== undefined && opts.blobGet !== 'redirect' && opts.blobGet !== 'proxy') {
      throw new Error(`storage.s3.blobGet must be "redirect" or "proxy", not ${JSON.stringify(opts.blobGet)}`);
    }
    const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix) assertSafePath(prefix);
    this.root = prefix ? `${prefix}/` : '';
    this.bucket = opts.bucket;
    this.blobGet = opts.blobGet ?? 'proxy';
    this.partSize = Math.max(MIN_PART, opts.partSize ?? 16 * MiB);
    this.concurrency = Math.max(1, opts.concurrency ?? 4);
    this.checkEmptyPrefixes = opts.checkEmptyPrefixes ?? true;
    this.appendable = hints.appendable;
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 6);
    const timeout = (this.requestTimeoutMs = opts.requestTimeoutMs ?? 120_000);
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.relayReads = opts.relayReads ?? true;
    const config: S3ClientConfig = {
      region: opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle ?? opts.endpoint !== undefined,
      maxAttempts: this.maxAttempts,
      retryMode: 'standard',
      // Checksums only where S3 requires them: the newer defaults (CRC32 on every upload, validated responses)
      // break several S3-compatible servers, and sha256 is sent explicitly where berth knows it.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: this.connectTimeoutMs,
        requestTimeout: timeout,
        throwOnRequestTimeout: true,
        socketTimeout: timeout,
        httpAgent: { keepAlive: true, maxSockets: 256 },
        httpsAgent: { keepAlive: true, maxSockets: 256 },
      },
    };
    if (opts.accessKeyId && opts.secretAccessKey) {
      config.credentials = { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey };
    }
    this.s3 = new S3Client(config);
  }

  // ---- plain objects ----------------------------------------------------------------------------------------

  async stat(path: string): Promise<FileInfo | undefined> {
    const key = this._key(path);
    const kind = this._kind(path);
    if (kind !== 'appendable') {
      try {
        const h = await this._send('HeadObject', key, () =>
          this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })),
        );
        return { size: h.ContentLength ?? 0, modified: h.LastModified ?? new Date(0) };
      } catch (e) {
        if (!_isNotFound(e)) throw e;
        if (kind === 'plain') return undefined;
      }
    }
    const loaded = await this._loadState(path);
    return loaded && { size: loaded.state.size, modified: loaded.modified };
  }

  async read(path: string, opts: ReadOptions = {}): Promise<Readable> {
    const key = this._key(path);
    _checkRange(opts);
    const kind = this._kind(path);
    if (kind !== 'appendable') {
      try {
        if (opts.relay) {
          const relayed = await this._relay(key, opts.start, opts.end);
          if (relayed) return relayed;
        }
        return await this._getStream(key, opts.start, opts.end);
      } catch (e) {
        if (!_isNotFound(e)) throw e;
        if (kind === 'plain') throw new NotFoundError(path);
      }
    }
    const loaded = await this._loadState(path);
    if (!loaded) throw new NotFoundError(path);
    return this._readAppendable(path, loaded.state, opts.start ?? 0, opts.end);
  }

  async get(path: string): Promise<Buffer | undefined> {
    try {
      return await _collect(await this.read(path));
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
  }

  async put(path: string, data: Buffer | string): Promise<void> {
    const key = this._key(path);
    const body = Buffer.from(data);
    await this._putObject(key, body);
  }

  async putStream(path: string, body: Readable, opts: PutStreamOptions = {}): Promise<number> {
    const key = this._key(path);
    if (opts.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(opts.sha256)) {
      body.resume();
      throw new Error(`putStream ${path}: sha256 must be 64 lowercase hex digits`);
    }
    return this._upload(key, body, opts);
  }

  async move(from: string, to: string, opts: MoveOptions = {}): Promise<void> {
    const fromKey = this._key(from);
    const toKey = this._key(to);
    const kind = this._kind(from);
    const loaded = kind === 'plain' ? undefined : await this._loadState(from);
    if (loaded) {
      // The state read here is a snapshot: its segments never change, so the destination holds exactly these
      // `size` bytes even when another replica appends meanwhile (its state swap then fails or lands on a session
      // that is about to vanish). A state of another size than the caller verified publishes nothing.
      if (opts.size !== undefined && loaded.state.size !== opts.size)
        throw new OffsetMismatchError(from, opts.size, loaded.state.size);
      await this._assemble(loaded.state, from, toKey);
      await this._dropAppendable(from, loaded.state);
      return;
    }
    if (kind === 'appendable') throw new NotFoundError(from);
    let size: number;
    try {
      const h = await this._send('HeadObject', fromKey, () =>
        this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: fromKey })),
      );
      size = h.ContentLength ?? 0;
    } catch (e) {
      if (_isNotFound(e)) throw new NotFoundError(from);
      throw e;
    }
    if (opts.size !== undefined && size !== opts.size) throw new OffsetMismatchError(from, opts.size, size);
    await this._copyObject(fromKey, size, toKey);
    await this._send('DeleteObject', fromKey, () =>
      this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: fromKey })),
    );
  }

  async list(prefix: string): Promise<string[]> {
    const names = new Set<string>();
    // Data tree first: a name it confirmed needs no emptiness check in the appendable namespace.
    await this._listNames(`${this._key(prefix)}/`, names, false);
    await this._listNames(`${this._appendDir(prefix)}/`, names, true);
    return [...names].sort();
  }

  async delete(path: string): Promise<void> {
    const key = this._key(path);
    const dir = this._appendDir(path);
    // The state first: an appendable object vanishes at once, before its segments go.
    await Promise.all([this._deleteKeys([key]), this._deleteKeys([`${dir}/.state`])]);
    await Promise.all([this._deletePrefix(`${key}/`), this._deletePrefix(`${dir}/`)]);
  }

  async redirectUrl(path: string, opts: { expiresIn: number }): Promise<string | undefined> {
    const key = this._key(path);
    if (this.blobGet !== 'redirect') return undefined;
    return getSignedUrl(this.s3, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
      expiresIn: opts.expiresIn,
    });
  }

  async close(): Promise<void> {
    this.s3.destroy();
  }

  // ---- appendable objects -------------------------------------------------------------------------------------

  async append(path: string, offset: number, body: Readable, opts: AppendOptions = {}): Promise<number> {
    assertSafePath(path);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      body.resume();
      throw new Error(`append ${path}: offset must be a non-negative integer, not ${offset}`);
    }
    if (this._kind(path) === 'plain') {
      body.resume();
      throw new Error(`append ${path}: not an appendable path (S3DriverHints.appendable)`);
    }
    const loaded = await this._loadState(path);
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
          next = rolled(await this._putStreamed(segKey, source, runBytes + length));
        } finally {
          void source.return(undefined).catch(() => {}); // not awaited: it may be waiting for body bytes that won't come
        }
      } else {
        const head = await _readUpTo(input, MIN_PART - runBytes);
        if (head.done && head.data.length === 0) {
          if (loaded) return size; // nothing to add; an empty append at 0 still creates the object
          next = { v: 1, rev: randomUUID(), size: 0, segments: [], garbage: [] };
        } else if (head.done && runBytes + head.data.length < MIN_PART) {
          // Small: staged as its own segment, rolled into a big one later.
          await this._putObject(segKey, head.data);
          next = {
            v: 1,
            rev: randomUUID(),
            size: size + head.data.length,
            segments: [...segments, { id, start: size, size: head.data.length }],
            garbage,
          };
        } else {
          // Big, length unknown: the staged run (< 5 MiB, read back) and the new bytes, uploaded in buffered parts.
          next = rolled(await this._upload(segKey, this._concatSource(path, run, input, head.data), {}));
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
      const now = await this._loadState(path).catch(() => 'unknown' as const);
      if (now === 'unknown') throw e;
      if (now?.state.rev === next.rev) return next.size;
      await this._deleteKeys([segKey]).catch(() => {});
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
        for await (const chunk of await this._getStream(this._segKey(path, s.id))) yield chunk as Buffer;
      }
      if (head) yield head;
      for (let r = await body.next(); !r.done; r = await body.next()) yield _bytes(r.value);
    } finally {
      await body.return?.();
    }
  }

  private async _loadState(path: string): Promise<LoadedState | undefined> {
    const key = `${this._appendDir(path)}/.state`;
    let res;
    try {
      res = await this._send('GetObject', key, () =>
        this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })),
      );
    } catch (e) {
      if (_isNotFound(e)) return undefined;
      throw e;
    }
    const text = await res.Body!.transformToString();
    const state = _parseState(text, path);
    return { state, etag: res.ETag ?? '', modified: res.LastModified ?? new Date(0) };
  }

  /** Compare-and-swap of the state object; throws _LostRace when the condition failed. */
  private async _swapState(path: string, next: AppendState, etag: string | undefined): Promise<void> {
    const key = `${this._appendDir(path)}/.state`;
    const body = Buffer.from(JSON.stringify(next));
    try {
      await this._putObject(key, body, {
        ContentType: 'application/json',
        ...(etag ? { IfMatch: etag } : { IfNoneMatch: '*' }),
      });
    } catch (e) {
      // Also a retried request whose first attempt landed ends here: the caller checks the rev.
      throw _isConditionFailed(e) ? new _LostRace() : e;
    }
  }

  private _readAppendable(path: string, state: AppendState, start: number, end?: number): Readable {
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
          stream = await self._getStream(key, a - s.start, b - s.start);
        } catch (e) {
          if (_isNotFound(e)) throw new NotFoundError(path); // moved or deleted while being read
          throw e;
        }
        for await (const chunk of stream) yield chunk as Buffer;
      }
    }
    return Readable.from(bytes(), { objectMode: false });
  }

  /** Builds `toKey` from the segments with server-side copies; the object appears when the upload completes. */
  private async _assemble(state: AppendState, path: string, toKey: string): Promise<void> {
    const segs = state.segments;
    const segKey = (s: Segment) => this._segKey(path, s.id);
    if (segs.length === 0) return this.put(this._unkey(toKey), Buffer.alloc(0));
    if (segs.length === 1) return this._copyObject(segKey(segs[0]), segs[0].size, toKey);
    const runFrom = _runStart(segs);
    const run = segs.slice(runFrom);
    const loadRun = async () =>
      Buffer.concat(await Promise.all(run.map(async (s) => _collect(await this._getStream(segKey(s))))));
    if (runFrom === 0) {
      // Only small segments, < 5 MiB in all: one small PUT.
      const data = await loadRun();
      await this._putObject(toKey, data);
      return;
    }
    const parts: PartSource[] = [];
    for (const s of segs.slice(0, runFrom)) parts.push(..._copyRanges(segKey(s), s.size));
    if (run.length === 1) parts.push({ copyKey: segKey(run[0]), start: 0, end: run[0].size - 1 });
    else if (run.length > 1) parts.push({ load: loadRun });
    await this._multipartFrom(toKey, parts);
  }

  private async _dropAppendable(path: string, state: AppendState): Promise<void> {
    const dir = this._appendDir(path);
    await this._deleteKeys([`${dir}/.state`]);
    await this._deleteKeys([...state.segments.map((s) => s.id), ...state.garbage].map((id) => this._segKey(path, id)));
  }

  // ---- transfers ---------------------------------------------------------------------------------------------

  /** Streams `source` to `key`: one PutObject when it fits a part, else a multipart upload completed at the end. */
  private async _upload(key: string, source: AsyncIterable<Buffer | string>, opts: PutStreamOptions): Promise<number> {
    let partSize = this.partSize;
    if (opts.size !== undefined && opts.size > partSize * (MAX_PARTS - 1))
      partSize = Math.ceil(opts.size / (MAX_PARTS - 1) / MiB) * MiB;
    const hash = opts.sha256 ? createHash('sha256') : undefined;
    const parts = _rechunk(source, partSize);
    try {
      const first = await parts.next();
      const second = first.done ? first : await parts.next();
      if (second.done) {
        const data = first.done ? Buffer.alloc(0) : first.value;
        hash?.update(data);
        _verify(key, data.length, hash, opts);
        await opts.verify?.(data.length);
        const checksum = opts.sha256 ? { ChecksumSHA256: Buffer.from(opts.sha256, 'hex').toString('base64') } : {};
        await this._putObject(key, data, checksum);
        return data.length;
      }
      let total = 0;
      const more = async function* (): AsyncGenerator<Buffer> {
        yield first.value as Buffer;
        yield second.value as Buffer;
        for (let r = await parts.next(); !r.done; r = await parts.next()) yield r.value;
      };
      const counted = async function* (): AsyncGenerator<{ load: () => Promise<Buffer> }> {
        for await (const buf of more()) {
          total += buf.length;
          hash?.update(buf);
          yield { load: async () => buf };
        }
      };
      const verify = async () => {
        _verify(key, total, hash, opts);
        await opts.verify?.(total);
      };
      await this._multipartFrom(key, counted(), verify, this.concurrency);
      return total;
    } finally {
      await parts.return(undefined);
    }
  }

  /**
   * One multipart upload of `parts` (ranged server-side copies or bytes) to `key`, `concurrency` at a time, parts
   * pulled lazily so a streamed body is read only as fast as it is sent. `beforeComplete` may veto (throw) — then,
   * as on any failure, the upload is aborted and nothing becomes visible.
   */
  private async _multipartFrom(
    key: string,
    parts: Iterable<PartSource> | AsyncIterable<PartSource>,
    beforeComplete?: () => void | Promise<void>,
    concurrency = COPY_CONCURRENCY,
  ): Promise<void> {
    const create = new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key });
    const created = await this._send('CreateMultipartUpload', key, () => this.s3.send(create));
    const uploadId = created.UploadId!;
    const done: CompletedPart[] = [];
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    let n = 0;
    try {
      for await (const part of parts) {
        if (failure) break;
        const partNumber = ++n;
        if (partNumber > MAX_PARTS) throw new Error(`${key}: more than ${MAX_PARTS} parts; raise storage.s3.partSize`);
        const p = this._sendPart(key, uploadId, partNumber, part).then(
          (etag) => void done.push({ ETag: etag, PartNumber: partNumber }),
          (e) => void (failure ??= e),
        );
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
        if (inflight.size >= concurrency) await Promise.race(inflight);
      }
      await Promise.all(inflight);
      if (failure) throw failure;
      await beforeComplete?.();
      done.sort((a, b) => a.PartNumber! - b.PartNumber!);
      await this._completeMultipart(key, uploadId, done);
    } catch (e) {
      await Promise.allSettled(inflight);
      await this.s3
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }))
        .catch(() => {});
      throw e;
    }
  }

  private async _sendPart(key: string, uploadId: string, partNumber: number, part: PartSource): Promise<string> {
    if ('copyKey' in part) {
      const copy = new UploadPartCopyCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: partNumber,
        CopySource: this._copySource(part.copyKey),
        CopySourceRange: `bytes=${part.start}-${part.end}`,
      });
      const r = await this._send('UploadPartCopy', key, () => this.s3.send(copy));
      return r.CopyPartResult?.ETag ?? '';
    }
    const body = await part.load();
    const upload = new UploadPartCommand({
      Bucket: this.bucket,
      Key: key,
      UploadId: uploadId,
      PartNumber: partNumber,
      Body: body,
    });
    const r = await this._send('UploadPart', key, () => this.s3.send(upload));
    return r.ETag ?? '';
  }

  private async _completeMultipart(key: string, uploadId: string, parts: CompletedPart[]): Promise<void> {
    const complete = new CompleteMultipartUploadCommand({
      Bucket: this.bucket,
      Key: key,
      UploadId: uploadId,
      MultipartUpload: { Parts: parts },
    });
    try {
      await this._send('CompleteMultipartUpload', key, () => this.s3.send(complete));
    } catch (e) {
      // A retry after a lost response finds the upload already completed (NoSuchUpload): fine if the object is there.
      if ((e as S3StorageError).code !== 'NoSuchUpload') throw e;
      const head = new HeadObjectCommand({ Bucket: this.bucket, Key: key });
      if (!(await this.s3.send(head).catch(() => undefined))) throw e;
    }
  }

  /** Server-side copy of a whole object: CopyObject when small, else parallel ranged UploadPartCopy. */
  private async _copyObject(fromKey: string, size: number, toKey: string): Promise<void> {
    if (size <= SINGLE_COPY_MAX) {
      const copy = new CopyObjectCommand({ Bucket: this.bucket, Key: toKey, CopySource: this._copySource(fromKey) });
      await this._send('CopyObject', toKey, () => this.s3.send(copy));
      return;
    }
    await this._multipartFrom(toKey, _copyRanges(fromKey, size));
  }

  private async _putObject(key: string, body: Buffer, extra: Partial<PutObjectCommandInput> = {}): Promise<void> {
    const cmd = new PutObjectCommand({
      Bucket: this.bucket,
      Key: key,
      Body: body,
      ContentLength: body.length,
      ...extra,
    });
    await this._send('PutObject', key, () => this.s3.send(cmd));
  }

  /**
   * One PutObject whose body is `source`, sent as it is read (never buffered): exactly `length` bytes, or the request
   * is aborted and nothing is stored. The SDK never retries a streamed body, so this does, with the SDK's backoff,
   * as long as no byte was taken from `source`: the body goes out only after S3's 100 Continue, so throttling, a
   * refused request or a dead socket leave it untouched. Once bytes went out the failure is the caller's (an append
   * then changes nothing, and the client sends the chunk again).
   */
  private async _putStreamed(key: string, source: AsyncIterator<Buffer>, length: number): Promise<number> {
    let read = 0;
    let started = false;
    async function* exact(): AsyncGenerator<Buffer> {
      started = true;
      // Not `for await`: an attempt that ends must not close `source` (the caller does).
      for (let r = await source.next(); !r.done; r = await source.next()) {
        read += r.value.length;
        if (read > length)
          throw new Error(`${key}: body is longer than the announced ${length} bytes; nothing was stored`);
        yield r.value;
      }
      if (read !== length) throw new Error(`${key}: body ended after ${read} of ${length} bytes; nothing was stored`);
    }
    for (let attempt = 1; ; attempt++) {
      const body = Readable.from(exact(), { objectMode: false });
      const abort = new AbortController();
      let bodyError: unknown;
      body.once('error', (e) => {
        bodyError = e;
        abort.abort(e);
      });
      const cmd = new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: length });
      try {
        await this._send('PutObject', key, () => this.s3.send(cmd, { abortSignal: abort.signal }));
        return length;
      } catch (e) {
        const retry = !started && attempt < this.maxAttempts && e instanceof S3StorageError && e.retryable;
        if (!retry) throw bodyError ?? e;
      } finally {
        body.destroy();
      }
      await sleep(Math.random() * Math.min(20_000, 100 * 2 ** attempt)); // full jitter, as the SDK's standard mode
    }
  }

  /**
   * The object through storage/http-relay.ts (a presigned GET on a pooled connection, bytes moved through reused
   * buffers), or undefined when the relay can't serve it — then the SDK asks again, with its retries and errors.
   */
  private async _relay(key: string, start?: number, end?: number): Promise<Readable | undefined> {
    if (!this.relayReads || Date.now() < this.relayRefusedUntil) return undefined;
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: key });
    const url = new URL(await getSignedUrl(this.s3, command, { expiresIn: 15 * 60 }));
    try {
      return await relayGet(url, {
        range: _rangeHeader(start, end),
        connectTimeoutMs: this.connectTimeoutMs,
        idleTimeoutMs: this.requestTimeoutMs,
      });
    } catch (e) {
      if (!(e instanceof RelayUnavailable)) throw e;
      // 400/403/405/501: this bucket (a policy on the auth type, a server without presigned GETs) refuses them —
      // stop asking twice for every blob for a while. 404, 416, 5xx and network trouble are per request.
      if (e.status !== undefined && [400, 403, 405, 501].includes(e.status))
        this.relayRefusedUntil = Date.now() + RELAY_PAUSE_MS;
      return undefined;
    }
  }

  private async _getStream(key: string, start?: number, end?: number): Promise<Readable> {
    const range = _rangeHeader(start, end);
    try {
      const r = await this._send('GetObject', key, () =>
        this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range })),
      );
      return r.Body instanceof Readable
        ? r.Body
        : Readable.from(r.Body as AsyncIterable<Buffer>, { objectMode: false });
    } catch (e) {
      // A range starting at or past the end: nothing to read (as the other drivers do).
      if ((e as S3StorageError).status === 416) return Readable.from([], { objectMode: false });
      throw e;
    }
  }

  // ---- listing and deleting ----------------------------------------------------------------------------------

  private async _listNames(prefix: string, names: Set<string>, appendables: boolean): Promise<void> {
    const dirs: string[] = [];
    let token: string | undefined;
    do {
      const r = await this._send('ListObjectsV2', prefix, () =>
        this.s3.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }),
        ),
      );
      for (const cp of r.CommonPrefixes ?? []) {
        const name = cp.Prefix!.slice(prefix.length, -1);
        if (name && !(appendables && name.startsWith('.')) && !names.has(name)) dirs.push(name);
      }
      if (!appendables) {
        for (const o of r.Contents ?? []) {
          const name = o.Key!.slice(prefix.length);
          if (name) names.add(name);
        }
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    if (!this.checkEmptyPrefixes) {
      for (const d of dirs) names.add(d);
      return;
    }
    // Some servers (SeaweedFS) keep listing a "folder" for a while after its last object was deleted: keep only
    // prefixes that still hold an object.
    await pool(dirs, 16, async (d) => {
      const r = await this._send('ListObjectsV2', prefix + d, () =>
        this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${prefix}${d}/`, MaxKeys: 1 })),
      );
      if ((r.Contents ?? []).length > 0) names.add(d);
    });
  }

  private async _deletePrefix(prefix: string): Promise<void> {
    let token: string | undefined;
    do {
      const page = new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token });
      const r = await this._send('ListObjectsV2', prefix, () => this.s3.send(page));
      await this._deleteKeys((r.Contents ?? []).map((o) => o.Key!));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  private async _deleteKeys(keys: string[]): Promise<void> {
    if (keys.length === 1) {
      await this._send('DeleteObject', keys[0], () =>
        this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: keys[0] })),
      );
      return;
    }
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const r = await this._send('DeleteObjects', batch[0], () =>
        this.s3.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        ),
      );
      const failed = (r.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length) {
        const f = failed[0];
        const msg = `s3 DeleteObjects ${this.bucket}/${f.Key}: ${f.Code}: ${_oneLine(f.Message ?? '')} (${failed.length} keys failed)`;
        throw new S3StorageError(msg, f.Code ?? 'DeleteFailed', undefined, true);
      }
    }
  }

  // ---- keys and requests -------------------------------------------------------------------------------------

  /** Which namespace(s) may hold `path` (S3DriverHints.appendable). */
  private _kind(path: string): 'plain' | 'appendable' | 'either' {
    if (!this.appendable) return 'either';
    return this.appendable(path) ? 'appendable' : 'plain';
  }

  private _key(path: string): string {
    assertSafePath(path);
    return this.root + path;
  }
  private _unkey(key: string): string {
    return key.slice(this.root.length);
  }
  private _appendDir(path: string): string {
    assertSafePath(path);
    return `${this.root}${APPEND_ROOT}/${path}`;
  }
  private _segKey(path: string, id: string): string {
    return `${this._appendDir(path)}/.seg/${id}`;
  }
  private _copySource(key: string): string {
    return `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** Runs one SDK call; any failure (after the SDK's retries) becomes an S3StorageError with a one-line message. */
  private async _send<T>(op: string, key: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (e) {
      throw _toStorageError(op, `${this.bucket}/${key}`, e);
    }
  }
}

// ---- helpers ----------------------------------------------------------------------------------------------------

/** `Range` for bytes `start`..`end` (inclusive; open-ended when `end` is undefined), or undefined for all of it. */
function _rangeHeader(start?: number, end?: number): string | undefined {
  return start === undefined && end === undefined ? undefined : `bytes=${start ?? 0}-${end ?? ''}`;
}

function _toStorageError(op: string, where: string, e: unknown): S3StorageError {
  type SdkError = {
    name?: string;
    Code?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $retryable?: unknown;
  };
  const err = e as SdkError;
  const status = err?.$metadata?.httpStatusCode;
  const code = err?.Code ?? err?.name ?? err?.code ?? 'Error';
  let hint = '';
  if (code === 'NoSuchBucket') hint = ': create the bucket or fix storage.s3.bucket';
  else if (code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch' || code === 'CredentialsProviderError')
    hint = ': check storage.s3 credentials';
  else if (status === undefined && /ECONNREFUSED|ENOTFOUND|EAI_AGAIN/.test(String(err?.message)))
    hint = ': is storage.s3.endpoint reachable?';
  const retryable =
    status === undefined || status >= 500 || status === 429 || code === 'SlowDown' || Boolean(err?.$retryable);
  const msg = `s3 ${op} ${where}: ${code}${status ? ` (HTTP ${status})` : ''}: ${_oneLine(err?.message ?? String(e))}${hint}`;
  return new S3StorageError(msg, code, status, retryable);
}

/** One short line, without markup: error bodies of S3-compatible servers and proxies may be XML or HTML. */
function _oneLine(s: string): string {
  const line = s
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line || 'no message';
}

function _isNotFound(e: unknown): boolean {
  const err = e as S3StorageError;
  return (
    err instanceof S3StorageError &&
    err.code !== 'NoSuchBucket' &&
    (err.status === 404 || err.code === 'NoSuchKey' || err.code === 'NotFound')
  );
}

function _isConditionFailed(e: unknown): boolean {
  const err = e as S3StorageError;
  if (!(err instanceof S3StorageError)) return false;
  return (
    err.status === 412 ||
    err.status === 409 ||
    err.code === 'PreconditionFailed' ||
    err.code === 'ConditionalRequestConflict'
  );
}

function _checkRange(opts: ReadOptions): void {
  const ok = (n: number | undefined) => n === undefined || (Number.isSafeInteger(n) && n >= 0);
  if (!ok(opts.start) || !ok(opts.end) || (opts.end !== undefined && opts.end < (opts.start ?? 0))) {
    throw new Error(`invalid byte range ${opts.start ?? 0}-${opts.end ?? ''}`);
  }
}

function _verify(
  key: string,
  size: number,
  hash: ReturnType<typeof createHash> | undefined,
  opts: PutStreamOptions,
): void {
  if (opts.size !== undefined && size !== opts.size) {
    throw new Error(`${key}: received ${size} bytes but ${opts.size} were announced; nothing was stored`);
  }
  if (hash && opts.sha256) {
    const actual = hash.digest('hex');
    if (actual !== opts.sha256)
      throw new Error(`${key}: content has sha256 ${actual}, expected ${opts.sha256}; nothing was stored`);
  }
}

/** Index where the trailing run of small (< 5 MiB) segments starts. */
function _runStart(segments: Segment[]): number {
  let i = segments.length;
  while (i > 0 && segments[i - 1].size < MIN_PART) i--;
  return i;
}

/** Ranged copy parts covering a whole object: one per ≤ COPY_PART, all but the last ≥ 5 MiB. */
function _copyRanges(copyKey: string, size: number): PartSource[] {
  const n = Math.max(1, Math.ceil(size / COPY_PART));
  const len = Math.ceil(size / n);
  const parts: PartSource[] = [];
  for (let start = 0; start < size; start += len) parts.push({ copyKey, start, end: Math.min(size, start + len) - 1 });
  return parts;
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

/** Reads from `it` until at least `n` bytes arrived or it ended. */
async function _readUpTo(it: AsyncIterator<Buffer | string>, n: number): Promise<{ data: Buffer; done: boolean }> {
  const chunks: Buffer[] = [];
  let have = 0;
  try {
    while (have < n) {
      const r = await it.next();
      if (r.done) return { data: Buffer.concat(chunks), done: true };
      const b = _bytes(r.value);
      chunks.push(b);
      have += b.length;
    }
  } catch (e) {
    await it.return?.();
    throw e;
  }
  return { data: Buffer.concat(chunks), done: false };
}

/** Re-cuts a byte stream into buffers of exactly `size` bytes (the last one may be shorter). */
async function* _rechunk(
  source: AsyncIterable<Buffer | string>,
  size: number,
): AsyncGenerator<Buffer, void, undefined> {
  let buf = Buffer.allocUnsafe(size);
  let fill = 0;
  for await (const c of source) {
    const chunk = _bytes(c);
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(size - fill, chunk.length - off);
      chunk.copy(buf, fill, off, off + n);
      fill += n;
      off += n;
      if (fill === size) {
        yield buf;
        buf = Buffer.allocUnsafe(size);
        fill = 0;
      }
    }
  }
  if (fill > 0) yield buf.subarray(0, fill);
}

function _bytes(c: Buffer | Uint8Array | string): Buffer {
  if (Buffer.isBuffer(c)) return c;
  return typeof c === 'string' ? Buffer.from(c) : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}

async function _collect(s: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}
