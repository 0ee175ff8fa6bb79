// Reproducible tar: members in the plan's (byte-sorted) order, every time field = epoch, owners from the spec,
// uname/gname only when the spec sets them, modes exactly as planned (never the builder's umask), ustar headers
// with a PAX record only when a name does not fit ustar or is not ASCII (tar-stream's rule).
// https://github.com/opencontainers/image-spec/blob/main/layer.md
import { createReadStream, readFileSync } from 'node:fs';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar, { type Header } from 'tar-stream';
import type { Member } from './plan.js';
import { Digester, digestOf, type Digest } from '../spec/digest.js';
import { createHash } from 'node:crypto';

/** Files up to this size are read whole (one at a time); larger ones stream. */
const SMALL_FILE = 1 << 20;

/** The tar header for one member. Exported so tests can pin the exact fields. */
export function headerFor(m: Member, epoch: number): Partial<Header> & { name: string } {
  const h: Partial<Header> & { name: string } = {
    // tar-stream does not add the conventional trailing '/' to directory names; GNU tar and Go's archive/tar do.
    name: m.type === 'directory' ? `${m.path}/` : m.path,
    type: m.type,
    mode: m.mode,
    uid: m.uid,
    gid: m.gid,
    size: m.type === 'file' ? m.size : 0,
    mtime: new Date(epoch * 1000),
  };
  if (m.linkname !== undefined) h.linkname = m.linkname;
  if (m.uname) h.uname = m.uname;
  if (m.gname) h.gname = m.gname;
  return h;
}

/** The two zero blocks that end every tar archive (POSIX ustar). */
export const END_OF_ARCHIVE = Buffer.alloc(1024);

/**
 * Streams the layer's tar. File contents are read as the tar is consumed, never buffered whole.
 * With `endOfArchive: false` the stream stops after the last member: a segment of a larger tar (segments.ts).
 */
export interface FileSums {
  sha256: Digest;
  /** Hex SHA-1: what SPDX 2.3 requires for every file (sbom.ts). */
  sha1: string;
}

export function tarStream(members: Member[], epoch: number, onFile?: (m: Member, sums: FileSums) => void, opts: { endOfArchive?: boolean } = {}): Readable {
  const pack = tar.pack();
  (async () => {
    for (const m of members) {
      const header = headerFor(m, epoch);
      if (m.type !== 'file') {
        await new Promise<void>((res, rej) => pack.entry(header, (e) => (e ? rej(e) : res())).end(undefined as unknown as Buffer));
        continue;
      }
      const src = m.source!;
      if ('data' in src) {
        onFile?.(m, _sums(src.data));
        await new Promise<void>((res, rej) => pack.entry(header, src.data, (e) => (e ? rej(e) : res())));
        continue;
      }
      if (m.size <= SMALL_FILE) {
        // Small files (most of a typical tree) in one read: far fewer stream hops per file. Bounded memory.
        // Sync on purpose: four thread-pool hops (open, fstat, read, close) per small file cost more than the read.
        const data = readFileSync(src.abs);
        if (data.length !== m.size) throw new Error(`${src.abs} changed size while the layer was being written (expected ${m.size} bytes)`);
        onFile?.(m, _sums(data));
        await new Promise<void>((res, rej) => pack.entry(header, data, (e) => (e ? rej(e) : res())));
        continue;
      }
      const sink = pack.entry(header);
      try {
        const d = new Digester();
        const sha1 = createHash('sha1');
        await pipeline(
          createReadStream(src.abs, { highWaterMark: 1 << 20 }),
          async function* (chunks: AsyncIterable<Buffer>) {
            for await (const c of chunks) {
              d.update(c);
              sha1.update(c);
              yield c;
            }
          },
          sink as unknown as NodeJS.WritableStream,
        );
        onFile?.(m, { sha256: d.digest(), sha1: sha1.digest('hex') });
      } catch (e) {
        const msg = (e as Error).message === 'Size mismatch'
          ? `${src.abs} changed size while the layer was being written (expected ${m.size} bytes)`
          : `reading ${src.abs}: ${(e as Error).message}`;
        throw new Error(msg);
      }
    }
    pack.finalize();
  })().catch((e) => pack.destroy(e));
  const out = Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
  if (opts.endOfArchive !== false) return out;
  const cut = new _DropTail(END_OF_ARCHIVE.length);
  out.once('error', (e) => cut.destroy(e));
  return out.pipe(cut);
}

function _sums(data: Buffer): FileSums {
  return { sha256: digestOf(data), sha1: createHash('sha1').update(data).digest('hex') };
}

/** Passes everything but the last `n` bytes: tar-stream always ends a pack with the end-of-archive blocks. */
class _DropTail extends Transform {
  private held: Buffer = Buffer.alloc(0);
  constructor(private readonly n: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const all = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    const keep = Math.max(0, all.length - this.n);
    this.held = all.subarray(keep);
    cb(null, keep ? all.subarray(0, keep) : undefined);
  }
  override _flush(cb: TransformCallback): void {
    if (this.held.length !== this.n || this.held.some((b) => b !== 0)) cb(new Error('tar stream did not end with the end-of-archive blocks'));
    else cb();
  }
}
