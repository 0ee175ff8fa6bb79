// Reproducible tar: members in the plan's (byte-sorted) order, every time field = epoch, owners from the spec,
// uname/gname only when the spec sets them, modes exactly as planned (never the builder's umask), ustar headers
// with a PAX record only when a name does not fit ustar or is not ASCII (tar-header.ts owns the bytes).
// https://github.com/opencontainers/image-spec/blob/main/layer.md
import { closeSync, createReadStream, openSync, readFileSync, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import type { Member } from './plan.js';
import { Digester, digestOf, type Digest } from '../spec/digest.js';
import { createHash } from 'node:crypto';
import { encodeMember } from './tar-header.js';

/** Files up to this size are read whole (one at a time); larger ones stream. */
export const SMALL_FILE = 1 << 20;

/** The two zero blocks that end every tar archive (POSIX ustar). */
export const END_OF_ARCHIVE = Buffer.alloc(1024);

export interface FileSums {
  sha256: Digest;
  /** Hex SHA-1: what SPDX 2.3 requires for every file (sbom.ts). */
  sha1: string;
}

/**
 * Streams the layer's tar. File contents are read as the tar is consumed, never buffered whole.
 * With `endOfArchive: false` the stream stops after the last member: a segment of a larger tar (segments.ts).
 */
export function tarStream(
  members: Member[],
  epoch: number,
  onFile?: (m: Member, sums: FileSums) => void,
  opts: { endOfArchive?: boolean } = {},
): Readable {
  return Readable.from(_members(members, epoch, onFile, opts.endOfArchive !== false), { objectMode: false });
}

async function* _members(
  members: Member[],
  epoch: number,
  onFile: ((m: Member, sums: FileSums) => void) | undefined,
  endOfArchive: boolean,
): AsyncGenerator<Buffer> {
  for (const m of members) {
    yield encodeMember(m, epoch);
    if (m.type !== 'file') continue;
    const src = m.source!;
    if ('data' in src || m.size <= SMALL_FILE) {
      // Small files (most of a typical tree) in one read: far fewer stream hops per file. Bounded memory.
      // Sync on purpose: four thread-pool hops (open, fstat, read, close) per small file cost more than the read.
      const data = 'data' in src ? src.data : readFileSync(src.abs);
      if (data.length !== m.size) {
        if ('data' in src) throw new Error(`${m.path}: inline data is ${data.length} bytes, planned ${m.size}`);
        throw _changed(src.abs, m, `now ${data.length}`);
      }
      onFile?.(m, fileSums(data));
      yield data;
    } else {
      yield* _largeFile(src.abs, m, onFile);
    }
    const pad = _padded(m.size) - m.size;
    if (pad) yield END_OF_ARCHIVE.subarray(0, pad);
  }
  if (endOfArchive) yield END_OF_ARCHIVE;
}

async function* _largeFile(
  abs: string,
  m: Member,
  onFile: ((m: Member, sums: FileSums) => void) | undefined,
): AsyncGenerator<Buffer> {
  const d = new Digester();
  const sha1 = createHash('sha1');
  let seen = 0;
  try {
    for await (const c of createReadStream(abs, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      // Checked before yielding: no byte past the size the header promised.
      seen += c.length;
      if (seen > m.size) throw _changed(abs, m, `now at least ${seen}`);
      d.update(c);
      sha1.update(c);
      yield c;
    }
  } catch (e) {
    if (e instanceof ChangedFileError) throw e;
    throw new Error(`reading ${abs} (for /${m.path}): ${(e as Error).message}`);
  }
  if (seen !== m.size) throw _changed(abs, m, `now ${seen}`);
  onFile?.(m, { sha256: d.digest(), sha1: sha1.digest('hex') });
}

/** A segment's tar in memory: where each file's data sits in it, for hashing. */
export interface SegmentTar {
  /** Starts its ArrayBuffer (so it can be transferred to a worker thread); the buffer may be longer. */
  tar: Buffer;
  /** The file members, each with the offset of its data in `tar`. */
  files: { member: Member; offset: number }[];
  /** Context files still to be read into place (readInto), when the layout was asked to leave them. */
  reads: FileRead[];
}

/** A context file to read into a segment at `offset`: `size` bytes exactly, `path` its place in the image. */
export interface FileRead {
  abs: string;
  offset: number;
  size: number;
  path: string;
}

/**
 * The tar of `members` (no end-of-archive blocks) built in memory, synchronously: byte for byte what tarStream gives
 * (the test pins it), without a stream hop per member. For segments (the caller bounds the size). `alloc` gives
 * the memory (segment-pool.ts recycles it: fresh memory for 200 MB of segments cost page faults and GC time); it
 * need not be zeroed, and must hold one byte more than asked for. With `deferReads` the context files are left for
 * the caller to read (segment-pool.ts reads them on a worker thread).
 */
export function tarSegment(
  members: Member[],
  epoch: number,
  alloc: (size: number) => Buffer = (n) => Buffer.from(new ArrayBuffer(n + 1)),
  opts: { deferReads?: boolean } = {},
): SegmentTar {
  // Headers first, so the segment's exact size is known and every file is read straight into its place: no buffer
  // per file, no concatenation (both showed up as garbage-collector time with 20,000 files).
  const headers = members.map((m) => encodeMember(m, epoch));
  let total = 0;
  for (const [i, m] of members.entries()) total += headers[i].length + (m.type === 'file' ? _padded(m.size) : 0);
  const mem = alloc(total);
  const files: SegmentTar['files'] = [];
  const reads: FileRead[] = [];
  let at = 0;
  for (const [i, m] of members.entries()) {
    at += headers[i].copy(mem, at);
    if (m.type !== 'file') continue;
    const src = m.source!;
    mem.fill(0, at + m.size, at + _padded(m.size)); // the padding
    if ('data' in src) {
      if (src.data.length !== m.size)
        throw new Error(`${m.path}: inline data is ${src.data.length} bytes, planned ${m.size}`);
      src.data.copy(mem, at);
    } else {
      reads.push({ abs: src.abs, offset: at, size: m.size, path: m.path });
    }
    files.push({ member: m, offset: at });
    at += _padded(m.size);
  }
  const tar = mem.subarray(0, total);
  if (!opts.deferReads) for (const r of reads.splice(0)) readInto(tar.buffer as ArrayBuffer, r);
  return { tar, files, reads };
}

/** tarSegment, with each file's checksums computed here. */
export function tarSegmentSync(members: Member[], epoch: number, onFile?: (m: Member, sums: FileSums) => void): Buffer {
  const { tar, files } = tarSegment(members, epoch);
  for (const f of files) onFile?.(f.member, fileSums(tar.subarray(f.offset, f.offset + f.member.size)));
  return tar;
}

function _padded(n: number): number {
  return Math.ceil(n / 512) * 512;
}

/** A context file that changed between planning and writing: names the file, its place in the image and the fix. */
export class ChangedFileError extends Error {}

function _changed(abs: string, m: { path: string; size: number }, now: string): ChangedFileError {
  return new ChangedFileError(
    `${abs} (/${m.path} in the image) changed while the layer was being written: planned ${m.size} bytes, ${now}; ` +
      'keep the build context unchanged during berth build (stop whatever writes to it) and build again',
  );
}

/**
 * Reads a context file into its place in a segment's memory (`mem`, which has a byte to spare past the segment); it
 * must be exactly the planned size. One read asks for a byte more, so a file that grew is caught without a second
 * read; the byte it lands on (the next header or padding) is put back.
 */
export function readInto(mem: ArrayBuffer, r: FileRead): void {
  const into = Buffer.from(mem);
  const after = into[r.offset + r.size];
  const fd = openSync(r.abs, 'r');
  try {
    const want = r.size + 1;
    let got = 0;
    while (got < want) {
      const n = readSync(fd, into, r.offset + got, want - got, got);
      if (n === 0) break;
      got += n;
    }
    if (got > r.size) throw _changed(r.abs, r, `now more than ${r.size}`);
    if (got < r.size) throw _changed(r.abs, r, `now ${got}`);
  } finally {
    into[r.offset + r.size] = after;
    closeSync(fd);
  }
}

export function fileSums(data: Buffer): FileSums {
  return { sha256: digestOf(data), sha1: createHash('sha1').update(data).digest('hex') };
}
