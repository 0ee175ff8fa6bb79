// Layer compression with pinned settings (layers.ts hashes both sides of it in one pass).
//
// gzip: node:zlib at a pinned level (GZIP_LEVEL, or a layer plan's own GzipTuning: preset go's binary); the header is made machine-independent (MTIME 0, OS byte 255 "unknown" as Go
// writes it) — zlib stamps the build platform's OS code otherwise. zstd: zstd-napi at a pinned level, one thread,
// no content size (a streamed frame never knows it). The compressor library versions are part of the cache key.
import { Transform, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import { constants as zc, createGunzip, createGzip, gzip, gzipSync, gunzip, type ZlibOptions } from 'node:zlib';
// zstd is loaded only when used (zstd.ts), so gzip builds never need its native addon.
import { loadZstd } from './zstd.js';
import { OCI_LAYER_GZIP, OCI_LAYER_ZSTD } from '../spec/media-types.js';
import type { Compression } from '../spec/build-spec.js';

export const GZIP_LEVEL = 6;
export const ZSTD_LEVEL = 3;

/** A layer's own gzip settings (a layer plan's `gzip`); zstd ignores them. */
export interface GzipTuning {
  /** 1…9; default GZIP_LEVEL. */
  level?: number;
  /** zlib's memLevel, 1…9; default 8 (zlib's). 9 is ~13 % faster at level 1 on a Go binary, for +0.1 % bytes. */
  memLevel?: number;
  /**
   * Compress a segment held in memory as consecutive gzip members of at most this much tar each, all at once on
   * the thread pool (one valid gzip stream, as segments are; the member size, not the machine, sets the bytes).
   * A segment too big to hold (> SEGMENT_MAX_BYTES) streams as one member.
   */
  memberBytes?: number;
}

/** Everything about compression that changes output bytes: part of every layer cache key. */
export async function compressionIdentity(c: Compression, gzip: GzipTuning = {}): Promise<string> {
  const members = gzip.memberBytes ? `/members-${gzip.memberBytes}` : '';
  const mem = gzip.memLevel && gzip.memLevel !== 8 ? `/mem-${gzip.memLevel}` : '';
  return c === 'gzip'
    ? `gzip/${gzip.level ?? GZIP_LEVEL}${mem}${members}/zlib-${process.versions.zlib}`
    : `zstd/${ZSTD_LEVEL}/zstd-${(await loadZstd()).version}`;
}

export function layerMediaType(c: Compression): string {
  return c === 'gzip' ? OCI_LAYER_GZIP : OCI_LAYER_ZSTD;
}

/** Every zlib setting but the level and memLevel is pinned. */
function _gzipOptions({ level = GZIP_LEVEL, memLevel = 8 }: GzipTuning = {}): ZlibOptions {
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new Error(`gzip level ${level} is not 1…9`);
  if (!Number.isInteger(memLevel) || memLevel < 1 || memLevel > 9)
    throw new Error(`gzip memLevel ${memLevel} is not 1…9`);
  return { level, memLevel, windowBits: 15, strategy: zc.Z_DEFAULT_STRATEGY };
}
const ZSTD_OPTIONS = { compressionLevel: ZSTD_LEVEL, nbWorkers: 0, checksumFlag: false } as const;
const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** The gzip header's MTIME, XFL and OS bytes (RFC 1952 §2.3), made machine-independent. */
function _fixHeaderBytes(buf: Buffer, seen: number): void {
  for (let i = 0; i < buf.length && seen + i < 10; i++) {
    const at = seen + i;
    if (at >= 4 && at <= 8) buf[i] = 0; // MTIME, XFL
    if (at === 9) buf[i] = 0xff; // OS: unknown
  }
}

/** Rewrites gzip header bytes 4..9 (MTIME, XFL, OS) to fixed values, whatever chunking zlib uses. */
class _FixGzipHeader extends Transform {
  private seen = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.seen < 10) {
      chunk = Buffer.from(chunk);
      _fixHeaderBytes(chunk, this.seen);
      this.seen += chunk.length;
    }
    cb(null, chunk);
  }
}

/** A fresh compressor pipeline (one gzip member / one zstd frame per call). */
export async function compressor(c: Compression, gzip: GzipTuning = {}): Promise<Transform[]> {
  if (c === 'gzip') return [createGzip(_gzipOptions(gzip)), new _FixGzipHeader()];
  const { CompressStream } = await loadZstd();
  return [new CompressStream(ZSTD_OPTIONS) as unknown as Transform];
}

/**
 * One gzip member / zstd frame holding `data`: the same bytes compressor() writes for it (zlib's and zstd's output
 * does not depend on how the input is chunked) — or, with `gzip.memberBytes`, consecutive members of that much
 * each, compressed at once. gzip runs on the thread pool with one output buffer, so segments compress in parallel
 * with one round trip each instead of one per 16 KiB; `sync` compresses on this thread (a worker of segment-pool.ts).
 */
export async function compressBuffer(
  c: Compression,
  data: Buffer,
  opts: { sync?: boolean; gzip?: GzipTuning } = {},
): Promise<Buffer> {
  const parts = compressParts(c, data, opts);
  return parts.length === 1 ? parts[0] : Buffer.concat(await Promise.all(parts));
}

/**
 * compressBuffer's bytes in the pieces they are made in (gzip members: `gzip.memberBytes` each), each settling as
 * it is done, so a writer can hash and write the first while the others are still being compressed.
 */
export function compressParts(
  c: Compression,
  data: Buffer,
  opts: { sync?: boolean; gzip?: GzipTuning } = {},
): Promise<Buffer>[] {
  const each = c === 'gzip' ? opts.gzip?.memberBytes : undefined;
  if (!each || data.length <= each) return [_compressWhole(c, data, opts)];
  const parts: Promise<Buffer>[] = [];
  for (let at = 0; at < data.length; at += each)
    parts.push(_gzipMember(data.subarray(at, at + each), opts.gzip, opts.sync));
  return parts;
}

async function _compressWhole(
  c: Compression,
  data: Buffer,
  opts: { sync?: boolean; gzip?: GzipTuning },
): Promise<Buffer> {
  if (c === 'gzip') return _gzipMember(data, opts.gzip, opts.sync);
  const { CompressStream } = await loadZstd();
  const z = new CompressStream(ZSTD_OPTIONS);
  const parts: Buffer[] = [];
  z.on('data', (b: Buffer) => parts.push(b));
  const done = new Promise<void>((res, rej) => z.once('end', res).once('error', rej));
  z.end(data);
  await done;
  return Buffer.concat(parts);
}

async function _gzipMember(data: Buffer, tuning: GzipTuning | undefined, sync = false): Promise<Buffer> {
  // deflateBound (zlib's worst case for stored blocks) plus the gzip header and trailer.
  const bound = data.length + (data.length >> 12) + (data.length >> 14) + 64;
  const o = { ..._gzipOptions(tuning), chunkSize: Math.max(bound, 64 << 10) };
  let out = sync ? gzipSync(data, o) : await gzipAsync(data, o);
  // The result is a view of that bound-sized buffer: copy it out when that frees most of it (segments wait in
  // memory until the writer reaches them).
  if (out.length < out.buffer.byteLength / 2) out = Buffer.from(out);
  _fixHeaderBytes(out, 0);
  return out;
}

/** Decompresses one whole segment; `sizeHint` (its tar size, when known) sizes zlib's output buffer. */
export async function decompressBuffer(c: Compression, data: Buffer, sizeHint?: number): Promise<Buffer> {
  if (c === 'gzip') return gunzipAsync(data, { chunkSize: Math.max(sizeHint ?? data.length * 3, 64 << 10) });
  return (await loadZstd()).decompress(data);
}

/** Decompresses one or more concatenated gzip members / zstd frames. */
export async function decompressor(c: Compression): Promise<Transform> {
  return c === 'gzip' ? createGunzip() : (new (await loadZstd()).DecompressStream() as unknown as Transform);
}
