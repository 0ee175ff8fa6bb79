// Resumable upload sessions, stored in storage so any replica can continue any upload and a restart loses nothing.
// spec: distribution-spec "Pushing blobs" (POST/PATCH/PUT), "Pushing a blob in chunks" (offsets, 416).
//
// Hash state: node's Hash objects can't be serialised, so each process keeps the running digest of the sessions it
// served in memory; when a session arrives that this process has no state for (restart, another replica, a failed
// chunk), the digest is recomputed from the stored bytes. The digest is always verified before a blob is visible.
//
// Appending, completing and cancelling one session are mutually exclusive (issue 14): in this process they take
// turns through a SessionLock (a request queued behind another touches nothing — not even its body — until its
// turn, and then re-reads the session, which may be gone); across replicas the driver publishes exactly the bytes
// that were hashed (`move` with the verified size fails when the session grew meanwhile).
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { Digester, OciError, parseDigest, type Algorithm, type Digest } from '../spec/index.js';
import { NotFoundError, OffsetMismatchError, type Driver } from './driver.js';
import { paths, isUploadId } from './paths.js';
import type { BlobStore, BlobInfo } from './blobs.js';
import { GcGuard } from './gc.js';
import { SessionLock } from './session-lock.js';

export interface UploadInfo {
  id: string;
  repository: string;
  /** Who started it (token subject), when auth is on: a session is usable only by its owner. */
  subject?: string;
  startedAt: string;
}

interface HashState {
  digester: Digester;
  offset: number;
}

export class UploadStore {
  private readonly hashes = new LRUCache<string, HashState>({ max: 1_000 });
  private readonly gc: GcGuard;
  private readonly sessions = new SessionLock();
  /** Bytes read back from storage to hash them (metric berth_upload_rehashed_bytes_total). */
  rehashedBytes = 0;

  constructor(
    private readonly driver: Driver,
    private readonly blobs: BlobStore,
  ) {
    this.gc = new GcGuard(driver);
  }

  /** The session's stored bytes (inclusive range): a fill serving what it has written but not yet published. */
  async read(id: string, range: { start: number; end: number }): Promise<Readable> {
    return this.driver.read(paths.uploadData(id), range);
  }

  async start(repository: string, subject?: string): Promise<UploadInfo> {
    const id = randomBytes(24).toString('base64url');
    const info: UploadInfo = { id, repository, subject, startedAt: new Date().toISOString() };
    await this.driver.put(paths.uploadInfo(id), JSON.stringify(info));
    return info;
  }

  /** The session, checked to belong to `repository` (and `subject` when given); else BLOB_UPLOAD_UNKNOWN. */
  async get(id: string, repository: string, subject?: string): Promise<UploadInfo> {
    const unknown = () => new OciError('BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry', { detail: { id } });
    if (!isUploadId(id)) throw unknown();
    // Always read from storage: another replica may have completed or cancelled the session since we last saw it.
    const raw = await this.driver.get(paths.uploadInfo(id));
    if (!raw) {
      this.hashes.delete(id);
      throw unknown();
    }
    const info = JSON.parse(raw.toString('utf8')) as UploadInfo;
    if (info.repository !== repository || (info.subject ?? undefined) !== (subject ?? undefined)) throw unknown();
    return info;
  }

  /** Bytes received so far. */
  async size(id: string): Promise<number> {
    return (await this.driver.stat(paths.uploadData(id)))?.size ?? 0;
  }

  /**
   * Appends a chunk that must start at `offset` (the current size) — else 416 RANGE_INVALID with nothing stored.
   * `length` is the chunk's Content-Length when the client sent one. Returns the new size.
   */
  async append(info: UploadInfo, offset: number | undefined, body: Readable, length?: number): Promise<number> {
    return this._turn(info, body, () => this._append(info, offset, body, length));
  }

  /**
   * The final PUT of a session: an optional last chunk (`body`, starting at `offset`), then complete(). A body into
   * an empty session is the monolithic fast path (completeMonolithic). One turn of the session lock for all of it.
   */
  async finish(
    info: UploadInfo,
    digest: string,
    last?: { body: Readable; offset?: number; length?: number },
  ): Promise<BlobInfo> {
    return this._turn(info, last?.body, async () => {
      if (last) {
        if (!last.offset && (await this.size(info.id)) === 0)
          return this._completeMonolithic(info, digest, last.body, last.length);
        await this._append(info, last.offset, last.body, last.length);
      }
      return this._complete(info, digest);
    });
  }

  /**
   * Runs `fn` in the session's turn. While it waits, a client that leaves must not become an unhandled 'error' on
   * its body (that took the whole process down); when its turn comes, a body that is gone and a session that was
   * completed or cancelled meanwhile end the request without touching storage.
   */
  private async _turn<T>(info: UploadInfo, body: Readable | undefined, fn: () => Promise<T>): Promise<T> {
    body?.on('error', _ignore);
    return this.sessions.run(info.id, async (waited) => {
      if (body && _gone(body))
        throw new OciError('BLOB_UPLOAD_INVALID', 'the request body was cut off before it could be stored');
      if (waited) await this.get(info.id, info.repository, info.subject);
      return fn();
    });
  }

  private async _append(
    info: UploadInfo,
    offset: number | undefined,
    body: Readable,
    length?: number,
  ): Promise<number> {
    // When this process's running hash already stands at the client's offset, no size lookup is needed: the driver
    // checks the offset itself (OffsetMismatchError), and a failed append drops the hash state below.
    const current =
      offset !== undefined && this.hashes.get(info.id)?.offset === offset ? offset : await this.size(info.id);
    if (offset !== undefined && offset !== current) {
      body.resume();
      throw new OciError('RANGE_INVALID', `chunk starts at ${offset} but the upload holds ${current} bytes`, {
        detail: {
          size: current,
        },
      });
    }
    const state = this._inlineState(info.id, current);
    const hashing = _tee(body, state?.digester);
    try {
      const size = await this.driver.append(paths.uploadData(info.id), current, hashing, { size: length });
      if (state) state.offset = size;
      return size;
    } catch (e) {
      this.hashes.delete(info.id);
      if (e instanceof OffsetMismatchError) {
        throw new OciError('RANGE_INVALID', `chunk starts at ${e.expected} but the upload holds ${e.actual} bytes`, {
          detail: {
            size: e.actual,
          },
        });
      }
      throw e;
    }
  }

  /**
   * Finishes the session: verifies `digest` against every stored byte, publishes the blob and links it into the
   * repository. On a mismatch nothing becomes visible and the session is removed (DIGEST_INVALID).
   */
  async complete(info: UploadInfo, digest: string, expectedSize?: number): Promise<BlobInfo> {
    return this._turn(info, undefined, () => this._complete(info, digest, expectedSize));
  }

  private async _complete(info: UploadInfo, digest: string, expectedSize?: number): Promise<BlobInfo> {
    const parsed = _parseDigest(digest);
    const size = await this.size(info.id);
    const actual = await this._digestOf(info.id, size, parsed.algorithm);
    if (actual !== parsed.digest || (expectedSize !== undefined && expectedSize !== size)) {
      await this._cancel(info);
      throw new OciError(
        'DIGEST_INVALID',
        `provided digest ${parsed.digest} does not match the uploaded content (${actual}, ${size} bytes)`,
        { detail: { digest } },
      );
    }
    const digestOk = parsed.digest;
    // Publish (unless the data is already there), then link. Bracketed by the GC protocol (storage/gc.ts): when a
    // sweep overlapped and took the data, publish again from the upload, which is still held until cancel below.
    const publish = async () => {
      // Not the size cache: GC (maybe in another process) may have removed the data since it was cached.
      if (!(await this.driver.stat(paths.blobData(digestOk)))) {
        if (size === 0) await this.driver.put(paths.blobData(digestOk), Buffer.alloc(0));
        else await this._publishVerified(info, size, digestOk);
        this.blobs.noteStored(digestOk, size);
      }
      await this.blobs.link(info.repository, digestOk);
    };
    await this.gc.around(publish, async () => {
      if ((await this.driver.stat(paths.blobData(digestOk))) && (await this.blobs.isLinked(info.repository, digestOk)))
        return;
      this.blobs.forget(digestOk);
      if (size > 0 && !(await this.driver.stat(paths.uploadData(info.id)))) {
        throw new OciError(
          'BLOB_UPLOAD_INVALID',
          'the blob was garbage-collected while this upload completed; upload it again',
        );
      }
      await this.gc.around(publish, async () => {
        if (!(await this.driver.stat(paths.blobData(digestOk))))
          throw new OciError(
            'BLOB_UPLOAD_INVALID',
            'the blob was garbage-collected while this upload completed; upload it again',
          );
      });
    });
    await this._cancel(info);
    return { digest: parsed.digest, size };
  }

  /**
   * Moves exactly the `size` verified bytes of the session to the blob's path. A session that changed since it was
   * hashed (another replica appended, or cancelled it) publishes nothing: the driver refuses the move.
   */
  private async _publishVerified(info: UploadInfo, size: number, digest: Digest): Promise<void> {
    try {
      await this.driver.move(paths.uploadData(info.id), paths.blobData(digest), { size });
    } catch (e) {
      if (e instanceof OffsetMismatchError) {
        throw new OciError(
          'BLOB_UPLOAD_INVALID',
          `the upload changed while it was being completed (${e.actual} bytes, ${size} verified); upload it again`,
        );
      }
      if (e instanceof NotFoundError)
        throw new OciError('BLOB_UPLOAD_UNKNOWN', 'the upload was cancelled while it was being completed', {
          detail: {
            id: info.id,
          },
        });
      throw e;
    }
  }

  /**
   * The known-digest fast path (single-POST `?digest=`, or a monolithic PUT into an empty session): streams `body`
   * straight to the blob's final path while hashing it; the driver publishes it only when the digest (and
   * `expectedSize`) match — S3 completes its multipart upload only then, fs renames only then. No session object, no
   * server-side copy. On a mismatch (DIGEST_INVALID) or a broken body nothing becomes visible.
   */
  async putMonolithic(repository: string, digest: string, body: Readable, expectedSize?: number): Promise<BlobInfo> {
    const parsed = _parseDigest(digest);
    const data = paths.blobData(parsed.digest);
    const digester = new Digester(parsed.algorithm);
    const check = (size: number) => {
      const actual = digester.digest();
      if (actual !== parsed.digest || (expectedSize !== undefined && expectedSize !== size)) {
        throw new OciError(
          'DIGEST_INVALID',
          `provided digest ${parsed.digest} does not match the uploaded content (${actual}, ${size} bytes)`,
          { detail: { digest } },
        );
      }
    };
    let size = 0;
    const publish = async () => {
      // Not the size cache: GC (maybe in another process) may have removed the data since it was cached.
      const stored = await this.driver.stat(data);
      // Tapped only now: a failure before this point leaves the body unread, for node to discard after the answer.
      const hashing = _tee(body, digester);
      if (stored) {
        // Already stored (the same content pushed before): verify the body, write nothing.
        for await (const chunk of hashing) size += (chunk as Buffer).length;
        check(size);
      } else {
        size = await this.driver.putStream(data, hashing, { verify: check });
        this.blobs.noteStored(parsed.digest, size);
      }
      await this.blobs.link(repository, parsed.digest);
    };
    // Bracketed by the GC protocol (storage/gc.ts). Unlike complete() there is no upload to publish from again: a
    // sweep that took the data meanwhile fails the push cleanly, and the client pushes again.
    await this.gc.around(publish, async () => {
      if ((await this.driver.stat(data)) && (await this.blobs.isLinked(repository, parsed.digest))) return;
      this.blobs.forget(parsed.digest);
      throw new OciError(
        'BLOB_UPLOAD_INVALID',
        'the blob was garbage-collected while it was being pushed; push it again',
      );
    });
    return { digest: parsed.digest, size };
  }

  /** A monolithic PUT into an empty session: putMonolithic, then the session goes (also on DIGEST_INVALID). */
  private async _completeMonolithic(
    info: UploadInfo,
    digest: string,
    body: Readable,
    expectedSize?: number,
  ): Promise<BlobInfo> {
    try {
      const blob = await this.putMonolithic(info.repository, digest, body, expectedSize);
      await this._cancel(info);
      return blob;
    } catch (e) {
      // A retryable storage failure keeps the session, so the client can PUT again; a wrong digest ends it.
      if (e instanceof OciError && e.code === 'DIGEST_INVALID') await this._cancel(info).catch(() => {});
      throw e;
    }
  }

  /** Cancels the session (DELETE); waits for a chunk being stored to finish first. */
  async cancel(info: UploadInfo): Promise<void> {
    return this._turn(info, undefined, () => this._cancel(info));
  }

  private async _cancel(info: UploadInfo): Promise<void> {
    this.hashes.delete(info.id);
    await this.driver.delete(paths.upload(info.id));
  }

  /** Every stored session, for counting them (registry/sessions.ts); `known` infos are reused (they never change). */
  async list(known?: ReadonlyMap<string, UploadInfo>): Promise<UploadInfo[]> {
    const ids = (await this.driver.list(paths.uploadsRoot)).filter(isUploadId);
    const read = async (id: string) =>
      known?.get(id) ??
      (await this.driver.get(paths.uploadInfo(id)).then(
        (raw) => raw && (JSON.parse(raw.toString('utf8')) as UploadInfo),
        () => undefined,
      ));
    const out: UploadInfo[] = [];
    for (let i = 0; i < ids.length; i += 32)
      out.push(...(await Promise.all(ids.slice(i, i + 32).map(read))).filter((x): x is UploadInfo => !!x));
    return out;
  }

  /** Removes sessions started before `cutoff` (abandoned uploads). Lists one flat prefix, never all repositories. */
  async purge(cutoff: Date): Promise<number> {
    let removed = 0;
    for (const id of await this.driver.list(paths.uploadsRoot)) {
      if (!isUploadId(id)) continue;
      const raw = await this.driver.get(paths.uploadInfo(id));
      const started = raw ? new Date((JSON.parse(raw.toString('utf8')) as UploadInfo).startedAt) : undefined;
      const touched = (await this.driver.stat(paths.uploadData(id)))?.modified;
      const last = Math.max(started?.getTime() ?? 0, touched?.getTime() ?? 0);
      if (last < cutoff.getTime()) {
        await this.driver.delete(paths.upload(id));
        this.hashes.delete(id);
        removed++;
      }
    }
    return removed;
  }

  /**
   * The running hash to feed a chunk at `offset` as it streams in: this process's state when it stands exactly
   * there (or a new one at 0), else none — the chunk is stored unhashed, and whoever completes the session catches
   * up from the stored bytes once (`_hashState`). Catching up here instead, on every chunk, made each process of
   * a cluster hash every byte (a client opening one connection per PATCH lands on the workers in turn), doubling the
   * CPU of a chunked push on two workers (issue 18).
   */
  private _inlineState(id: string, offset: number): HashState | undefined {
    const cached = this.hashes.get(id);
    if (cached) return cached.offset === offset ? cached : undefined;
    if (offset !== 0) return undefined;
    const state = { digester: new Digester('sha256'), offset: 0 };
    this.hashes.set(id, state);
    return state;
  }

  /**
   * The running sha256 state for a session at `offset`, rebuilt from stored bytes when this process has none. When
   * another process (a cluster worker, a replica) appended since this one last did, the state it kept is brought
   * forward by hashing only the bytes appended meanwhile: session data is append-only and bytes below an offset
   * this process saw committed never change, so a chunked push alternating between workers hashes each byte at most
   * once per process instead of re-reading the whole session on every chunk (issue 18: quadratic with curl's one
   * connection per PATCH).
   */
  private async _hashState(id: string, offset: number): Promise<HashState> {
    const cached = this.hashes.get(id);
    if (cached && cached.offset === offset) return cached;
    if (cached && cached.offset < offset) {
      try {
        await this._hashStored(id, offset, cached.digester, cached.offset);
        cached.offset = offset;
        return cached;
      } catch (e) {
        this.hashes.delete(id);
        throw e;
      }
    }
    const digester = new Digester('sha256');
    if (offset > 0) await this._hashStored(id, offset, digester);
    const state = { digester, offset };
    this.hashes.set(id, state);
    return state;
  }

  private async _digestOf(id: string, size: number, algorithm: Algorithm): Promise<Digest> {
    if (algorithm === 'sha256') {
      const state = await this._hashState(id, size);
      this.hashes.delete(id);
      return state.digester.digest();
    }
    const digester = new Digester(algorithm);
    if (size > 0) await this._hashStored(id, size, digester);
    return digester.digest();
  }

  private async _hashStored(id: string, size: number, digester: Digester, from = 0): Promise<void> {
    const stream = await this.driver.read(paths.uploadData(id), { start: from, end: size - 1 });
    for await (const chunk of stream) {
      digester.update(chunk as Buffer);
      this.rehashedBytes += (chunk as Buffer).length;
    }
  }
}

function _parseDigest(digest: string): ReturnType<typeof parseDigest> {
  try {
    return parseDigest(digest);
  } catch (e) {
    throw new OciError('DIGEST_INVALID', (e as Error).message, { detail: { digest } });
  }
}

/** Passes `body` through unchanged while feeding every chunk to `digester` (when given). */
function _tee(body: Readable, digester: Digester | undefined): Readable {
  const out = new Readable({
    read() {
      body.resume();
    },
    highWaterMark: 1024 * 1024,
  });
  // The consumer (a driver) may subscribe only after an await: until then an error must not go unhandled. The
  // consumer still sees it (a destroyed stream rejects its iterator and fails its pipeline).
  out.on('error', _ignore);
  body.on('data', (chunk: Buffer) => {
    digester?.update(chunk);
    if (!out.push(chunk)) body.pause();
  });
  body.once('end', () => out.push(null));
  body.once('error', (e) => out.destroy(e));
  body.once('close', () => {
    if (!body.readableEnded) out.destroy(new Error('request body ended early'));
  });
  out.once('close', () => {
    if (!body.readableEnded) body.destroy();
  });
  // A body that failed or was cut off before we got here emits nothing more: end `out` now, or its reader waits forever.
  if (_gone(body)) out.destroy(body.errored ?? new Error('request body ended early'));
  return out;
}

function _ignore(): void {}

/** Whether a request body can no longer deliver its bytes (its client left, or it failed). */
function _gone(body: Readable): boolean {
  return (
    body.destroyed ||
    body.errored !== null ||
    (body as Readable & { readableAborted?: boolean }).readableAborted === true
  );
}
