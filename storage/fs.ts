// Filesystem driver. Atomic writes: temp file in `<root>/_tmp` (same filesystem) → fsync → rename.
import type { BigIntStats, Dirent } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, truncate } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import { giveBuffer, takeBuffer } from './buffer-pool.js';
import { FileSink } from './file-sink.js';
import { pool } from './pool.js';
import {
  assertSafePath,
  NotFoundError,
  OffsetMismatchError,
  StorageFullError,
  type Driver,
  type FileInfo,
  type ListedFile,
  type MoveOptions,
  type PutStreamOptions,
  type ReadOptions,
  type Sendable,
} from './driver.js';

const TMP = '_tmp';
const HIGH_WATER_MARK = 1024 * 1024;
/** Bytes between background fdatasync calls while a file streams in (storage/file-sink.ts). */
const WRITEBACK_BYTES = 32 * 1024 * 1024;

export interface FsDriverOptions {
  root: string;
  /** fsync files before publishing them (default true); off only for throw-away test data. */
  fsync?: boolean;
}

function isNotFound(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** A full disk (or a quota of the filesystem) becomes StorageFullError, which the registry answers with 507. */
function _full(path: string, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? new StorageFullError(path, e) : e;
}
const _rethrow =
  (path: string) =>
  (e: unknown): never => {
    throw _full(path, e);
  };

export class FsDriver implements Driver {
  readonly name = 'filesystem';
  readonly root: string;
  private readonly fsync: boolean;
  private readonly appending = new Map<string, Promise<unknown>>();

  constructor(opts: FsDriverOptions) {
    this.root = opts.root;
    this.fsync = opts.fsync ?? true;
  }

  private _abs(path: string): string {
    assertSafePath(path);
    return join(this.root, path);
  }

  private async _tempPath(): Promise<string> {
    const dir = join(this.root, TMP);
    await mkdir(dir, { recursive: true });
    return join(dir, randomBytes(12).toString('hex'));
  }

  private async _sync(file: string): Promise<void> {
    if (!this.fsync) return;
    const fh = await open(file, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Streams `body` into `file` from byte `start` (a new file when 0); returns the bytes written. */
  private async _stream(file: string, start: number, body: Readable): Promise<number> {
    const fh = await open(file, start === 0 ? 'w' : 'r+');
    try {
      const sink = new FileSink(fh.fd, start, this.fsync ? WRITEBACK_BYTES : 0);
      await pipeline(body, sink);
      return sink.bytesWritten;
    } finally {
      await fh.close();
    }
  }

  private async _publish(tmp: string, path: string): Promise<void> {
    const dest = this._abs(path);
    await mkdir(dirname(dest), { recursive: true });
    await rename(tmp, dest);
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    // version: every write here is a rename of a new file, so inode + ns times change on each replace.
    try {
      const s = await stat(this._abs(path), { bigint: true });
      if (!s.isFile()) return undefined;
      return _info(s);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async read(path: string, opts: ReadOptions = {}): Promise<Readable> {
    let fh;
    try {
      fh = await open(this._abs(path), 'r');
    } catch (e) {
      if (isNotFound(e)) throw new NotFoundError(path);
      throw e;
    }
    const stream = fh.createReadStream({ start: opts.start, end: opts.end, highWaterMark: HIGH_WATER_MARK });
    if (!opts.relay) return stream;
    // Sendable too: the file goes to the client through reused buffers, read by read instead of streamed (1 MiB
    // Buffers per chunk keep V8's GC busy). The stream itself is then never read; destroying it closes the file.
    const sendTo = (dest: Writable) => _sendFile(fh, opts.start ?? 0, opts.end, dest).finally(() => stream.destroy());
    return Object.assign(stream, { sendTo }) satisfies Readable & Sendable;
  }

  async get(path: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this._abs(path));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async put(path: string, data: Buffer | string): Promise<void> {
    const tmp = await this._tempPath().catch(_rethrow(path));
    try {
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(data);
        if (this.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      await this._publish(tmp, path);
    } catch (e) {
      // Also when the disk is full: an empty temp file left here would pile up until the next start.
      await rm(tmp, { force: true });
      throw _full(path, e);
    }
  }

  async putStream(path: string, body: Readable, opts: PutStreamOptions = {}): Promise<number> {
    const tmp = await this._tempPath().catch(_rethrow(path));
    try {
      const size = await this._stream(tmp, 0, body);
      // Before the fsync: a vetoed body costs no disk flush. The temp file is invisible until the rename.
      await opts.verify?.(size);
      await this._sync(tmp);
      await this._publish(tmp, path);
      return size;
    } catch (e) {
      await rm(tmp, { force: true });
      throw _full(path, e);
    }
  }

  async append(path: string, offset: number, body: Readable): Promise<number> {
    const abs = this._abs(path);
    // One append (or move) at a time per object; a second one waits and then fails the offset check.
    return this._exclusive(abs, () => this._appendNow(abs, path, offset, body));
  }

  /** Runs `fn` after every earlier append or move of `abs` in this process settled. */
  private async _exclusive<T>(abs: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.appending.get(abs) ?? Promise.resolve();
    const mine = previous.catch(() => {}).then(fn);
    this.appending.set(abs, mine);
    try {
      return await mine;
    } finally {
      if (this.appending.get(abs) === mine) this.appending.delete(abs);
    }
  }

  private async _appendNow(abs: string, path: string, offset: number, body: Readable): Promise<number> {
    const current = (await this.stat(path))?.size ?? 0;
    if (current !== offset) {
      body.resume();
      throw new OffsetMismatchError(path, offset, current);
    }
    await mkdir(dirname(abs), { recursive: true }).catch(_rethrow(path));
    let written: number;
    try {
      written = await this._stream(abs, offset, body);
    } catch (e) {
      // A failed chunk leaves nothing behind: cut the object back to where this append started.
      await truncate(abs, offset).catch(() => {});
      throw _full(path, e);
    }
    return offset + written;
  }

  async move(from: string, to: string, opts: MoveOptions = {}): Promise<void> {
    const src = this._abs(from);
    // In the object's append queue: an append in flight writes through an open descriptor, which would go on
    // writing into the published file after the rename. Appends queued behind the move find the object gone.
    return this._exclusive(src, async () => {
      if (opts.size !== undefined) {
        const size = (await this.stat(from))?.size;
        if (size === undefined) throw new NotFoundError(from);
        if (size !== opts.size) throw new OffsetMismatchError(from, opts.size, size);
      }
      await this._sync(src).catch((e) => {
        if (isNotFound(e)) throw new NotFoundError(from);
        throw e;
      });
      await this._publish(src, to).catch(_rethrow(to));
    });
  }

  async list(prefix: string): Promise<string[]> {
    try {
      return (await readdir(this._abs(prefix))).sort();
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
  }

  async listFiles(prefix: string): Promise<ListedFile[]> {
    let entries: Dirent[];
    try {
      entries = await readdir(this._abs(prefix), { withFileTypes: true });
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
    const files = entries.filter((d) => d.isFile()).map((d) => d.name);
    const out: ListedFile[] = [];
    // Bounded: a 10,000-tag directory must not open 10,000 stats at once.
    await pool(files, 64, async (name) => {
      const s = await stat(join(this._abs(prefix), name), { bigint: true }).catch((e) => {
        if (isNotFound(e)) return undefined; // deleted since the readdir
        throw e;
      });
      if (s?.isFile()) out.push({ name, ..._info(s) });
    });
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async delete(path: string): Promise<void> {
    await rm(this._abs(path), { recursive: true, force: true });
  }

  /** Removes temp files left by a crash; called once at start. */
  async cleanTemp(): Promise<void> {
    await rm(join(this.root, TMP), { recursive: true, force: true });
  }
}

/**
 * Writes bytes `start`..`end` (inclusive; to the end of the file when undefined) of `fh` to `dest` and ends it. Each
 * read fills a pool buffer that goes back to the pool when its write completed; a full `dest` pauses the reads.
 * Settles in every case — also when the client leaves at any point (the caller then closes the file).
 */
async function _sendFile(fh: FileHandle, start: number, end: number | undefined, dest: Writable): Promise<void> {
  const gone = () => new Error('the client went away');
  // Watched from the start: a response closed before we wait on it emits nothing later.
  let closed = dest.destroyed;
  let wake: (() => void) | undefined;
  const onClose = () => {
    closed = true;
    wake?.();
  };
  dest.on('close', onClose);
  try {
    let pos = start;
    while (end === undefined || pos <= end) {
      if (closed) throw gone();
      const buf = takeBuffer();
      const want = end === undefined ? buf.length : Math.min(buf.length, end - pos + 1);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) {
        giveBuffer(buf);
        if (end !== undefined) throw new Error(`file ended at byte ${pos}, before ${end + 1}`);
        break;
      }
      pos += bytesRead;
      if (!dest.write(buf.subarray(0, bytesRead), () => giveBuffer(buf)) && !closed) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          dest.once('drain', resolve);
        });
        dest.off('drain', wake!);
      }
    }
    if (closed) throw gone();
    await new Promise<void>((resolve, reject) => {
      wake = () => reject(gone());
      dest.end(() => resolve());
    });
  } catch (e) {
    dest.destroy(e as Error);
    throw e;
  } finally {
    dest.off('close', onClose);
  }
}

/** What a stat tells: every write here is a rename of a new file, so inode + ns times change on each replace. */
function _info(s: BigIntStats): FileInfo & { version: string } {
  return { size: Number(s.size), modified: s.mtime, version: `${s.dev}:${s.ino}:${s.mtimeNs}:${s.ctimeNs}:${s.size}` };
}
