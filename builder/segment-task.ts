// One new segment's work, wherever it runs: read its context files into their places in its tar, hash each file
// (SHA-256 for the layer cache, SHA-1 for the SBOM) and compress the whole segment. A worker of the segment pool
// runs it (segment-worker.ts), or the building thread itself when that thread has nothing else to do
// (segment-pool.ts hashAndCompress `here`). Either way the bytes are the same: one gzip member / zstd frame.
import { createHash } from 'node:crypto';
import type { Compression } from '../spec/build-spec.js';
import { compressParts, type GzipTuning } from './compress.js';
import { type FileRead, readInto } from './tar.js';

export interface SegmentWork {
  compression: Compression;
  /** The segment's tar: its first `length` bytes. */
  tar: ArrayBuffer;
  length: number;
  /** Each file's data in `tar`: offset, length, offset, length… */
  files: number[];
  /** Context files to read into `tar` first. */
  reads: FileRead[];
  /** The layer plan's own gzip settings (compress.ts). */
  gzip?: GzipTuning;
}

/**
 * Hex SHA-256 then hex SHA-1 of each file (in `files` order), and the compressed segment in the parts it is made in
 * (compress.ts compressParts). `sync` compresses on this thread (a worker's own), so every part is done on return;
 * otherwise gzip runs on libuv's thread pool and the parts settle as they are done — the hashes overlap them.
 */
export function runSegment(w: SegmentWork, opts: { sync: boolean }): { sums: string[]; parts: Promise<Buffer>[] } {
  for (const r of w.reads) readInto(w.tar, r);
  const tar = Buffer.from(w.tar, 0, w.length);
  const parts = compressParts(w.compression, tar, { ...opts, gzip: w.gzip });
  for (const p of parts) p.catch(() => {}); // the caller awaits them
  const sums: string[] = [];
  for (let i = 0; i < w.files.length; i += 2) {
    const data = tar.subarray(w.files[i], w.files[i] + w.files[i + 1]);
    sums.push(createHash('sha256').update(data).digest('hex'), createHash('sha1').update(data).digest('hex'));
  }
  return { sums, parts };
}
