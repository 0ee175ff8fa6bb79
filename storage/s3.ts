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
// Appendable objects (upload sessions): the protocol is in s3-append.ts. Bucket requests (multipart, streamed
// PUTs, copies, listing, deleting, error mapping) are in s3-bucket.ts; this file maps driver paths onto them.
//
// `list` asks for direct children with Delimiter "/" (paginated) in both namespaces. Some servers (SeaweedFS) keep
// listing an emptied "folder" for minutes, so each sub-prefix is confirmed with a one-key LIST (`checkEmptyPrefixes`,
// default on; AWS S3 and MinIO never list empty prefixes and can turn it off).
import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { RelayUnavailable, relayGet } from './http-relay.js';
import { AppendableObjects } from './s3-append.js';
import { MIN_PART, MiB, S3Bucket, collect, isNotFound, rangeHeader, s3Version } from './s3-bucket.js';
import {
  assertSafePath,
  NotFoundError,
  OffsetMismatchError,
  type AppendOptions,
  type Driver,
  type FileInfo,
  type ListedFile,
  type MoveOptions,
  type PutStreamOptions,
  type ReadOptions,
} from './driver.js';

export { S3StorageError } from './s3-bucket.js';

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

export class S3Driver implements Driver {
  readonly name = 's3';
  /** The SDK client (exposed for diagnostics and tests, e.g. counting requests with a middleware). */
  readonly s3: S3Client;
  readonly bucket: string;
  private readonly root: string;
  private readonly blobGet: 'redirect' | 'proxy';
  /** Bucket requests: uploads, copies, listing, deleting (s3-bucket.ts). */
  private readonly objects: S3Bucket;
  /** Upload data: appendable objects made of segments (s3-append.ts). */
  private readonly appendables: AppendableObjects;
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
    this.appendable = hints.appendable;
    const maxAttempts = Math.max(1, opts.maxAttempts ?? 6);
    const timeout = (this.requestTimeoutMs = opts.requestTimeoutMs ?? 120_000);
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.relayReads = opts.relayReads ?? true;
    const config: S3ClientConfig = {
      region: opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle ?? opts.endpoint !== undefined,
      maxAttempts,
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
    this.objects = new S3Bucket(this.s3, this.bucket, {
      partSize: Math.max(MIN_PART, opts.partSize ?? 16 * MiB),
      concurrency: Math.max(1, opts.concurrency ?? 4),
      maxAttempts,
      checkEmptyPrefixes: opts.checkEmptyPrefixes ?? true,
    });
    this.appendables = new AppendableObjects(this.objects, (path) => this._appendDir(path));
  }

  // ---- plain objects ----------------------------------------------------------------------------------------

  async stat(path: string): Promise<FileInfo | undefined> {
    const key = this._key(path);
    const kind = this._kind(path);
    if (kind !== 'appendable') {
      try {
        const h = await this.objects.send('HeadObject', key, () =>
          this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })),
        );
        const modified = h.LastModified ?? new Date(0);
        return { size: h.ContentLength ?? 0, modified, version: s3Version(h.ETag, modified) };
      } catch (e) {
        if (!isNotFound(e)) throw e;
        if (kind === 'plain') return undefined;
      }
    }
    const loaded = await this.appendables.load(path);
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
        return await this.objects.getStream(key, opts.start, opts.end);
      } catch (e) {
        if (!isNotFound(e)) throw e;
        if (kind === 'plain') throw new NotFoundError(path);
      }
    }
    const loaded = await this.appendables.load(path);
    if (!loaded) throw new NotFoundError(path);
    return this.appendables.read(path, loaded.state, opts.start ?? 0, opts.end);
  }

  async get(path: string): Promise<Buffer | undefined> {
    try {
      return await collect(await this.read(path));
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
  }

  async put(path: string, data: Buffer | string): Promise<void> {
    const key = this._key(path);
    const body = Buffer.from(data);
    await this.objects.putObject(key, body);
  }

  async putStream(path: string, body: Readable, opts: PutStreamOptions = {}): Promise<number> {
    const key = this._key(path);
    if (opts.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(opts.sha256)) {
      body.resume();
      throw new Error(`putStream ${path}: sha256 must be 64 lowercase hex digits`);
    }
    return this.objects.upload(key, body, opts);
  }

  async move(from: string, to: string, opts: MoveOptions = {}): Promise<void> {
    const fromKey = this._key(from);
    const toKey = this._key(to);
    const kind = this._kind(from);
    const loaded = kind === 'plain' ? undefined : await this.appendables.load(from);
    if (loaded) {
      // The state read here is a snapshot: its segments never change, so the destination holds exactly these
      // `size` bytes even when another replica appends meanwhile (its state swap then fails or lands on a session
      // that is about to vanish). A state of another size than the caller verified publishes nothing.
      if (opts.size !== undefined && loaded.state.size !== opts.size)
        throw new OffsetMismatchError(from, opts.size, loaded.state.size);
      await this.appendables.assemble(loaded.state, from, toKey);
      await this.appendables.drop(from, loaded.state);
      return;
    }
    if (kind === 'appendable') throw new NotFoundError(from);
    let size: number;
    try {
      const h = await this.objects.send('HeadObject', fromKey, () =>
        this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: fromKey })),
      );
      size = h.ContentLength ?? 0;
    } catch (e) {
      if (isNotFound(e)) throw new NotFoundError(from);
      throw e;
    }
    if (opts.size !== undefined && size !== opts.size) throw new OffsetMismatchError(from, opts.size, size);
    await this.objects.copyObject(fromKey, size, toKey);
    await this.objects.deleteKeys([fromKey]);
  }

  async list(prefix: string): Promise<string[]> {
    const names = new Set<string>();
    // Data tree first: a name it confirmed needs no emptiness check in the appendable namespace.
    await this.objects.listNames(`${this._key(prefix)}/`, names, false);
    await this.objects.listNames(`${this._appendDir(prefix)}/`, names, true);
    return [...names].sort();
  }

  /** Plain objects only, from the listing itself (Size, LastModified): no HEAD per object. */
  async listFiles(prefix: string): Promise<ListedFile[]> {
    return this.objects.listFiles(`${this._key(prefix)}/`);
  }

  async delete(path: string): Promise<void> {
    const key = this._key(path);
    const dir = this._appendDir(path);
    // The state first: an appendable object vanishes at once, before its segments go.
    await Promise.all([this.objects.deleteKeys([key]), this.objects.deleteKeys([`${dir}/.state`])]);
    await Promise.all([this.objects.deletePrefix(`${key}/`), this.objects.deletePrefix(`${dir}/`)]);
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

  // ---- appendable objects (s3-append.ts) ----------------------------------------------------------------------

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
    return this.appendables.append(path, offset, body, opts);
  }

  // ---- transfers ---------------------------------------------------------------------------------------------

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
        range: rangeHeader(start, end),
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

  // ---- listing and deleting ----------------------------------------------------------------------------------

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
  private _appendDir(path: string): string {
    assertSafePath(path);
    return `${this.root}${APPEND_ROOT}/${path}`;
  }
}

// ---- helpers ----------------------------------------------------------------------------------------------------

function _checkRange(opts: ReadOptions): void {
  const ok = (n: number | undefined) => n === undefined || (Number.isSafeInteger(n) && n >= 0);
  if (!ok(opts.start) || !ok(opts.end) || (opts.end !== undefined && opts.end < (opts.start ?? 0))) {
    throw new Error(`invalid byte range ${opts.start ?? 0}-${opts.end ?? ''}`);
  }
}
