// One S3 bucket as berth uses it: single and multipart uploads that are atomic and verified before they complete,
// streamed PUTs retried while no byte went out, server-side (ranged) copies, listing of direct children, batched
// deletes, and one error type with a one-line message. The driver (s3.ts) and the appendable-object protocol
// (s3-append.ts) are built on it; it knows nothing of berth's paths.
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
import { createHash } from 'node:crypto';
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
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { pool } from './pool.js';
import type { ListedFile, PutStreamOptions } from './driver.js';

export const MiB = 1024 * 1024;
/** S3's minimum size of every multipart part but the last. */
export const MIN_PART = 5 * MiB;
export const MAX_PARTS = 10_000;
/** Largest object one PutObject may store. */
export const MAX_PUT = 5 * 1024 * MiB;
/** Largest object CopyObject handles in one request; larger ones are copied as parallel ranged parts. */
export const SINGLE_COPY_MAX = 64 * MiB;
/** Size of each ranged server-side copy when a segment is split. */
export const COPY_PART = 64 * MiB;
export const COPY_CONCURRENCY = 8;

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

/** A part of a multipart upload: a ranged server-side copy of an object, or bytes loaded when the part is sent. */
export type PartSource = { copyKey: string; start: number; end: number } | { load: () => Promise<Buffer> };

export interface S3BucketOptions {
  partSize: number;
  concurrency: number;
  maxAttempts: number;
  checkEmptyPrefixes: boolean;
}

export class S3Bucket {
  constructor(
    readonly s3: S3Client,
    readonly bucket: string,
    private readonly opts: S3BucketOptions,
  ) {}

  /** Streams `source` to `key`: one PutObject when it fits a part, else a multipart upload completed at the end. */
  async upload(key: string, source: AsyncIterable<Buffer | string>, opts: PutStreamOptions): Promise<number> {
    let partSize = this.opts.partSize;
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
        await this.putObject(key, data, checksum);
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
      await this.multipartFrom(key, counted(), verify, this.opts.concurrency);
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
  async multipartFrom(
    key: string,
    parts: Iterable<PartSource> | AsyncIterable<PartSource>,
    beforeComplete?: () => void | Promise<void>,
    concurrency = COPY_CONCURRENCY,
  ): Promise<void> {
    const create = new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key });
    const created = await this.send('CreateMultipartUpload', key, () => this.s3.send(create));
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
      const r = await this.send('UploadPartCopy', key, () => this.s3.send(copy));
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
    const r = await this.send('UploadPart', key, () => this.s3.send(upload));
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
      await this.send('CompleteMultipartUpload', key, () => this.s3.send(complete));
    } catch (e) {
      // A retry after a lost response finds the upload already completed (NoSuchUpload): fine if the object is there.
      if ((e as S3StorageError).code !== 'NoSuchUpload') throw e;
      const head = new HeadObjectCommand({ Bucket: this.bucket, Key: key });
      if (!(await this.s3.send(head).catch(() => undefined))) throw e;
    }
  }

  /** Server-side copy of a whole object: CopyObject when small, else parallel ranged UploadPartCopy. */
  async copyObject(fromKey: string, size: number, toKey: string): Promise<void> {
    if (size <= SINGLE_COPY_MAX) {
      const copy = new CopyObjectCommand({ Bucket: this.bucket, Key: toKey, CopySource: this._copySource(fromKey) });
      await this.send('CopyObject', toKey, () => this.s3.send(copy));
      return;
    }
    await this.multipartFrom(toKey, copyRanges(fromKey, size));
  }

  async putObject(key: string, body: Buffer, extra: Partial<PutObjectCommandInput> = {}): Promise<void> {
    const cmd = new PutObjectCommand({
      Bucket: this.bucket,
      Key: key,
      Body: body,
      ContentLength: body.length,
      ...extra,
    });
    await this.send('PutObject', key, () => this.s3.send(cmd));
  }

  /**
   * One PutObject whose body is `source`, sent as it is read (never buffered): exactly `length` bytes, or the request
   * is aborted and nothing is stored. The SDK never retries a streamed body, so this does, with the SDK's backoff,
   * as long as no byte was taken from `source`: the body goes out only after S3's 100 Continue, so throttling, a
   * refused request or a dead socket leave it untouched. Once bytes went out the failure is the caller's (an append
   * then changes nothing, and the client sends the chunk again).
   */
  async putStreamed(key: string, source: AsyncIterator<Buffer>, length: number): Promise<number> {
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
        await this.send('PutObject', key, () => this.s3.send(cmd, { abortSignal: abort.signal }));
        return length;
      } catch (e) {
        const retry = !started && attempt < this.opts.maxAttempts && e instanceof S3StorageError && e.retryable;
        if (!retry) throw bodyError ?? e;
      } finally {
        body.destroy();
      }
      await sleep(Math.random() * Math.min(20_000, 100 * 2 ** attempt)); // full jitter, as the SDK's standard mode
    }
  }

  async getStream(key: string, start?: number, end?: number): Promise<Readable> {
    const range = rangeHeader(start, end);
    try {
      const r = await this.send('GetObject', key, () =>
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

  /** The objects directly under `prefix` (ending in `/`) with the listing's Size, LastModified and ETag, sorted. */
  async listFiles(prefix: string): Promise<ListedFile[]> {
    const out: ListedFile[] = [];
    let token: string | undefined;
    do {
      const r = await this.send('ListObjectsV2', prefix, () =>
        this.s3.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }),
        ),
      );
      for (const o of r.Contents ?? []) {
        const name = o.Key!.slice(prefix.length);
        if (!name) continue;
        const modified = o.LastModified ?? new Date(0);
        out.push({ name, size: o.Size ?? 0, modified, version: s3Version(o.ETag, modified) });
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async listNames(prefix: string, names: Set<string>, appendables: boolean): Promise<void> {
    const dirs: string[] = [];
    let token: string | undefined;
    do {
      const r = await this.send('ListObjectsV2', prefix, () =>
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
    if (!this.opts.checkEmptyPrefixes) {
      for (const d of dirs) names.add(d);
      return;
    }
    // Some servers (SeaweedFS) keep listing a "folder" for a while after its last object was deleted: keep only
    // prefixes that still hold an object.
    await pool(dirs, 16, async (d) => {
      const r = await this.send('ListObjectsV2', prefix + d, () =>
        this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${prefix}${d}/`, MaxKeys: 1 })),
      );
      if ((r.Contents ?? []).length > 0) names.add(d);
    });
  }

  async deletePrefix(prefix: string): Promise<void> {
    let token: string | undefined;
    do {
      const page = new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token });
      const r = await this.send('ListObjectsV2', prefix, () => this.s3.send(page));
      await this.deleteKeys((r.Contents ?? []).map((o) => o.Key!));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  async deleteKeys(keys: string[]): Promise<void> {
    if (keys.length === 1) {
      await this.send('DeleteObject', keys[0], () =>
        this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: keys[0] })),
      );
      return;
    }
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const r = await this.send('DeleteObjects', batch[0], () =>
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

  /** Runs one SDK call; any failure (after the SDK's retries) becomes an S3StorageError with a one-line message. */
  async send<T>(op: string, key: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (e) {
      throw _toStorageError(op, `${this.bucket}/${key}`, e);
    }
  }

  private _copySource(key: string): string {
    return `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }
}

// ---- helpers ----------------------------------------------------------------------------------------------------

/** `Range` for bytes `start`..`end` (inclusive; open-ended when `end` is undefined), or undefined for all of it. */
export function rangeHeader(start?: number, end?: number): string | undefined {
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

export function isNotFound(e: unknown): boolean {
  const err = e as S3StorageError;
  return (
    err instanceof S3StorageError &&
    err.code !== 'NoSuchBucket' &&
    (err.status === 404 || err.code === 'NoSuchKey' || err.code === 'NotFound')
  );
}

export function isConditionFailed(e: unknown): boolean {
  const err = e as S3StorageError;
  if (!(err instanceof S3StorageError)) return false;
  return (
    err.status === 412 ||
    err.status === 409 ||
    err.code === 'PreconditionFailed' ||
    err.code === 'ConditionalRequestConflict'
  );
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

/** Ranged copy parts covering a whole object: one per ≤ COPY_PART, all but the last ≥ 5 MiB. */
export function copyRanges(copyKey: string, size: number): PartSource[] {
  const n = Math.max(1, Math.ceil(size / COPY_PART));
  const len = Math.ceil(size / n);
  const parts: PartSource[] = [];
  for (let start = 0; start < size; start += len) parts.push({ copyKey, start, end: Math.min(size, start + len) - 1 });
  return parts;
}

/** Reads from `it` until at least `n` bytes arrived or it ended. */
export async function readUpTo(
  it: AsyncIterator<Buffer | string>,
  n: number,
): Promise<{ data: Buffer; done: boolean }> {
  const chunks: Buffer[] = [];
  let have = 0;
  try {
    while (have < n) {
      const r = await it.next();
      if (r.done) return { data: Buffer.concat(chunks), done: true };
      const b = bytes(r.value);
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
    const chunk = bytes(c);
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

export function bytes(c: Buffer | Uint8Array | string): Buffer {
  if (Buffer.isBuffer(c)) return c;
  return typeof c === 'string' ? Buffer.from(c) : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}

export async function collect(s: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

/**
 * An object's version from what S3 tells about it (HEAD or a listing): the ETag (an MD5 of the bytes for a plain PUT)
 * with the write time in whole seconds (HEAD gives seconds, listings milliseconds), so a rewrite with other bytes, or
 * with the same bytes later, reads as a new version. Undefined without an ETag: the caller then reads every time.
 */
export function s3Version(etag: string | undefined, modified: Date): string | undefined {
  return etag ? `${etag}@${Math.floor(modified.getTime() / 1000)}` : undefined;
}
