// The storage driver interface. A driver is a dumb, path-addressed object store; everything OCI-specific lives in
// the stores built on top (blobs.ts, manifests.ts, uploads.ts) and the layout lives in paths.ts alone.
//
// Contract (checked for every driver by driver-suite.ts):
// - Paths are `/`-separated, relative, without `.`/`..` segments; drivers never see user input unvalidated.
// - `put`/`putStream` are atomic: readers see the old object, or the whole new one, never a partial one — also after
//   a crash (`kill -9`) at any point. `putStream` calls `verify` once the whole body arrived and before anything is
//   visible; when it throws (or the body fails) the write is discarded and putStream rejects with that error.
// - `append` adds bytes to an "appendable" object used by upload sessions. It must start exactly at `offset`, the
//   object's current size; otherwise it throws OffsetMismatchError and changes nothing. An appendable object is
//   readable (`read`, `stat`) like any other, from any process sharing the storage.
// - `move` publishes an object (usually an appended upload) under a new path atomically. With `size`, it publishes
//   only an object of exactly that size (the bytes the caller verified): an object that grew or shrank meanwhile
//   (an append from another request or replica) throws OffsetMismatchError and nothing moves. In-flight appends to
//   the object in this process finish first. Bytes are never changed after a move.
import type { Readable, Writable } from 'node:stream';

export interface FileInfo {
  size: number;
  modified: Date;
  /**
   * Optional: changes whenever the object is replaced (fs: inode + ns times). Lets a reader keep a small object's
   * bytes and reuse them while a stat shows the same version (manifests.ts does, for tags). Drivers without a cheap
   * version leave it out and readers read every time.
   */
  version?: string;
}

/** A direct child object of a listed prefix, with what a listing tells about it (storage/browse.ts). */
export interface ListedFile {
  name: string;
  size: number;
  modified: Date;
  /**
   * Optional: changes whenever the object is replaced, like FileInfo.version (fs: the same string stat gives; S3: the
   * listing's ETag and LastModified). Lets a reader reuse a small object's bytes read earlier without asking again.
   */
  version?: string;
}

export interface ReadOptions {
  /** First byte to read (inclusive). */
  start?: number;
  /** Last byte to read (inclusive). */
  end?: number;
  /**
   * The caller streams the whole body on to a client socket (a blob GET). A driver may then answer with a body that
   * is also Sendable: `sendTo(dest)` moves the bytes through reused buffers (storage/buffer-pool.ts), far cheaper
   * than piping (fs.ts reads the file into them; s3.ts relays a presigned GET, storage/http-relay.ts).
   */
  relay?: boolean;
}

/** A body that can be written straight to a Writable, faster than piping it; see ReadOptions.relay. */
export interface Sendable {
  /** Writes the whole body to `dest` and ends it; resolves once `dest` finished. On failure `dest` is destroyed. */
  sendTo(dest: Writable): Promise<void>;
}

export function isSendable(body: Readable): body is Readable & Sendable {
  return typeof (body as Partial<Sendable>).sendTo === 'function';
}

export interface PutStreamOptions {
  /** Lowercase hex SHA-256 of the content, when the caller already knows it (lets S3 verify server-side). */
  sha256?: string;
  /** Exact size when known. */
  size?: number;
  /**
   * Called with the stored size after the last byte was received and before the object becomes visible (S3: before
   * CompleteMultipartUpload; fs: before the rename). Throwing vetoes the write: nothing becomes visible (the previous
   * object, if any, stays) and putStream rejects with the thrown error. Lets a caller hash the body as it streams
   * and publish it under its final name only when the digest matches.
   */
  verify?: (size: number) => void | Promise<void>;
}

export interface AppendOptions {
  /**
   * Exact number of bytes the body carries, when known (a PATCH's Content-Length). Lets a driver stream the body to
   * its backend as it arrives instead of buffering it; a body of another length fails the append (nothing stored).
   */
  size?: number;
}

export interface MoveOptions {
  /** The exact size the object must have; else OffsetMismatchError(from, size, actual) and nothing moves. */
  size?: number;
}

export interface Driver {
  readonly name: string;
  /** Size and modification time, or undefined when nothing is stored at `path`. */
  stat(path: string): Promise<FileInfo | undefined>;
  /** Streams the object (or a byte range). Throws NotFoundError. */
  read(path: string, opts?: ReadOptions): Promise<Readable>;
  /** Reads a small object fully, or undefined when missing. */
  get(path: string): Promise<Buffer | undefined>;
  /** Atomically stores a small object. */
  put(path: string, data: Buffer | string): Promise<void>;
  /** Atomically stores a streamed object; resolves to the stored size. */
  putStream(path: string, body: Readable, opts?: PutStreamOptions): Promise<number>;
  /** Appends to an appendable object starting at `offset` (0 creates it); resolves to the new size. */
  append(path: string, offset: number, body: Readable, opts?: AppendOptions): Promise<number>;
  /** Atomically moves an object (including an appended one) to `to`, replacing what is there. */
  move(from: string, to: string, opts?: MoveOptions): Promise<void>;
  /** Names of the direct children of a "directory" prefix (files and sub-prefixes), sorted; [] when none. */
  list(prefix: string): Promise<string[]>;
  /** Deletes an object or a whole prefix; deleting something missing is not an error. */
  delete(path: string): Promise<void>;

  // Optional extras.
  /**
   * The direct child objects of `prefix` (sub-prefixes left out) with size and mtime, sorted by name; [] when none.
   * S3 answers it with the listing itself, where `list` + `stat` cost one HEAD per object (10,000 tags: 10 LISTs
   * instead of 10,000 HEADs). Drivers without it get list + stat (storage/browse.ts `listFiles`).
   */
  listFiles?(prefix: string): Promise<ListedFile[]>;
  /** A URL clients may fetch the object from directly (S3 presigned GET), or undefined to stream through berth. */
  redirectUrl?(path: string, opts: { expiresIn: number }): Promise<string | undefined>;
  /** Frees resources (sockets, timers). */
  close?(): Promise<void>;
}

export class NotFoundError extends Error {
  constructor(readonly path: string) {
    super(`not found: ${path}`);
  }
}

/** The backend has no room left (fs: ENOSPC, EDQUOT). Whatever the failed write started was removed. */
export class StorageFullError extends Error {
  constructor(
    readonly path: string,
    override readonly cause: unknown,
  ) {
    super(`no space left in storage while writing ${path}: ${(cause as Error)?.message ?? cause}`);
  }
}

export class OffsetMismatchError extends Error {
  constructor(
    readonly path: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`append at offset ${expected} but ${path} holds ${actual} bytes`);
  }
}

/** Rejects paths a store could only have built by mistake (defence in depth; paths.ts validates inputs). */
export function assertSafePath(path: string): void {
  if (
    !path ||
    path.startsWith('/') ||
    path.split('/').some((s) => s === '' || s === '.' || s === '..') ||
    path.includes('\0')
  ) {
    throw new Error(`unsafe storage path ${JSON.stringify(path)}`);
  }
}
