// Reproducible tar: members in the plan's (byte-sorted) order, every time field = epoch, owners from the spec,
// uname/gname only when the spec sets them, modes exactly as planned (never the builder's umask), ustar headers
// with a PAX record only when a name does not fit ustar or is not ASCII (tar-stream's rule).
// https://github.com/opencontainers/image-spec/blob/main/layer.md
import { closeSync, createReadStream, openSync, readFileSync, readSync } from 'node:fs';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar, { type Header } from 'tar-stream';
import type { Member } from './plan.js';
import { Digester, digestOf, type Digest } from '../spec/digest.js';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

// tar-stream's own header encoder, so the in-memory path below writes exactly the bytes tar.pack() writes. Its
// package exports only the root, so the file is required by path.
const _require = createRequire(import.meta.url);
const tarHeaders = _require(join(dirname(_require.resolve('tar-stream')), 'headers.js')) as {
  encode(h: Partial<Header>): Buffer | null;
  encodePax(h: { name: string; linkname?: string; pax?: Record<string, string> }): Buffer;
};

/** Files up to this size are read whole (one at a time); larger ones stream. */
export const SMALL_FILE = 1 << 20;

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

export function tarStream(
  members: Member[],
  epoch: number,
  onFile?: (m: Member, sums: FileSums) => void,
  opts: { endOfArchive?: boolean } = {},
): Readable {
  const pack = tar.pack();
  (async () => {
    for (const m of members) {
      const header = headerFor(m, epoch);
      if (m.type !== 'file') {
        await new Promise<void>((res, rej) =>
          pack.entry(header, (e) => (e ? rej(e) : res())).end(undefined as unknown as Buffer),
        );
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
        if (data.length !== m.size) throw _changed(src.abs, m, `now ${data.length}`);
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
            // Counted here, not left to tar-stream: its bare "Size mismatch" would reach the user first (the entry
            // destroys the whole pack with it), naming no file. Checked before yielding: no byte past the header size.
            let seen = 0;
            for await (const c of chunks) {
              seen += c.length;
              if (seen > m.size) throw _changed(src.abs, m, `now at least ${seen}`);
              d.update(c);
              sha1.update(c);
              yield c;
            }
            if (seen !== m.size) throw _changed(src.abs, m, `now ${seen}`);
          },
          sink as unknown as NodeJS.WritableStream,
        );
        onFile?.(m, { sha256: d.digest(), sha1: sha1.digest('hex') });
      } catch (e) {
        if (e instanceof ChangedFileError) throw e;
        throw new Error(`reading ${src.abs} (for /${m.path}): ${(e as Error).message}`);
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

/**
 * The tar of `members` (no end-of-archive blocks) built in memory, synchronously: byte for byte what tarStream gives
 * (the test pins it), without a stream hop per member. For segments of small files only (the caller bounds the size).
 */
export function tarSegmentSync(members: Member[], epoch: number, onFile?: (m: Member, sums: FileSums) => void): Buffer {
  // Headers first, so the segment's exact size is known and every file is read straight into its place: no buffer
  // per file, no concatenation (both showed up as garbage-collector time with 20,000 files).
  const headers = members.map((m) => _headerBytes(m, epoch));
  let total = 0;
  for (const [i, m] of members.entries()) total += headers[i].length + (m.type === 'file' ? _padded(m.size) : 0);
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const [i, m] of members.entries()) {
    at += headers[i].copy(out, at);
    if (m.type !== 'file') continue;
    const src = m.source!;
    const data = out.subarray(at, at + m.size);
    if ('data' in src) {
      if (src.data.length !== m.size)
        throw new Error(`${m.path}: inline data is ${src.data.length} bytes, planned ${m.size}`);
      src.data.copy(data);
    } else {
      _readExactly(src.abs, data, m);
    }
    out.fill(0, at + m.size, at + _padded(m.size));
    at += _padded(m.size);
    onFile?.(m, _sums(data));
  }
  return out;
}

function _padded(n: number): number {
  return Math.ceil(n / 512) * 512;
}

/** One member's header block(s), with tar.pack().entry()'s defaults so the bytes match the streamed path exactly. */
function _headerBytes(m: Member, epoch: number): Buffer {
  const header = headerFor(m, epoch);
  if (!header.size || header.type === 'symlink') header.size = 0;
  if (!header.mode) header.mode = header.type === 'directory' ? 0o755 : 0o644;
  const plain = tarHeaders.encode(header);
  if (plain) return plain;
  // A name or link name ustar cannot hold: a PAX header first, as tar-stream's _encodePax does.
  const pax = tarHeaders.encodePax({ name: header.name, linkname: header.linkname });
  const paxHeader: Partial<Header> = {
    ...header,
    name: 'PaxHeader',
    size: pax.length,
    type: 'pax-header' as Header['type'],
    linkname: header.linkname && 'PaxHeader',
  };
  const padding = END_OF_ARCHIVE.subarray(0, _padded(pax.length) - pax.length);
  return Buffer.concat([
    tarHeaders.encode(paxHeader)!,
    pax,
    padding,
    tarHeaders.encode({ ...paxHeader, size: header.size, type: header.type })!,
  ]);
}

/** Fills `into` with the file's bytes; the file must be exactly that long (it was planned at that size). */
/** A context file that changed between planning and writing: names the file, its place in the image and the fix. */
export class ChangedFileError extends Error {}

function _changed(abs: string, m: Member, now: string): ChangedFileError {
  return new ChangedFileError(
    `${abs} (/${m.path} in the image) changed while the layer was being written: planned ${m.size} bytes, ${now}; ` +
      'keep the build context unchanged during berth build (stop whatever writes to it) and build again',
  );
}

function _readExactly(path: string, into: Buffer, m: Member): void {
  const fd = openSync(path, 'r');
  try {
    let got = 0;
    while (got < into.length) {
      const n = readSync(fd, into, got, into.length - got, got);
      if (n === 0) break;
      got += n;
    }
    if (got < into.length) throw _changed(path, m, `now ${got}`);
    if (readSync(fd, _probe, 0, 1, got) !== 0) throw _changed(path, m, `now more than ${got}`);
  } finally {
    closeSync(fd);
  }
}
const _probe = Buffer.alloc(1);

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
    if (this.held.length !== this.n || this.held.some((b) => b !== 0))
      cb(new Error('tar stream did not end with the end-of-archive blocks'));
    else cb();
  }
}
