// Plan → layer blob, in one streaming pass, or a layer-cache hit.
//
// The blob is a run of compressed segments (segments.ts): each is either built (tar → diffID hash → compressor →
// blob) or, when its key matches a segment of the slot's previous blob, copied compressed from that blob while a
// decompressor feeds the diffID hash. Segments go strictly in order, so both digests cover the bytes in order.
import { createReadStream } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { decompress as zstdDecompress } from 'zstd-napi';
import { Digester, type Digest } from '../spec/digest.js';
import type { Compression } from '../spec/build-spec.js';
import { BlobDir } from './blobs.js';
import { LayerCache, layerKey, touch, type SegmentRecord } from './cache.js';
import { compressionIdentity, compressor, decompressor, layerMediaType } from './compress.js';
import type { Layer } from './image.js';
import type { LayerPlan, Member } from './plan.js';
import { splitSegments } from './segments.js';
import { END_OF_ARCHIVE, tarStream, type FileSums } from './tar.js';
import { rememberSegmentFiles, type LayerFile } from './layer-files.js';

const gunzipAsync = promisify(gunzip);

export interface LayerBuildOptions {
  epoch: number;
  compression: Compression;
  blobs: BlobDir;
  cache?: LayerCache;
  /** Identifies "this layer of this build" across runs (context, platform, layer name): whose segments to reuse. */
  slot?: string;
}

export interface BuiltLayer {
  layer: Layer;
  cached: boolean;
  name: string;
  uncompressedSize?: number;
  /** Segments copied from the previous build of this layer, out of how many. */
  segmentsReused?: { reused: number; total: number };
  /** Where each segment sits in the blob (known when this build wrote the blob or the slot remembers it). */
  segments?: SegmentRecord[];
}

/** Reused segments up to this size are read and decompressed ahead, several at once; bigger ones stream. */
const PREFETCH_MAX_BYTES = 8 << 20;
const PREFETCH_AHEAD = 4;

export async function buildLayer(plan: LayerPlan, opts: LayerBuildOptions): Promise<BuiltLayer> {
  const ident = compressionIdentity(opts.compression);
  const mediaType = layerMediaType(opts.compression);
  const known = new Map<Member, Digest>();
  const lookup = (m: Member) => known.get(m) ?? opts.cache?.contentDigest(m);
  const key = opts.cache ? layerKey(plan.members, opts.epoch, ident, lookup) : undefined;
  // The previous blob of this slot: the source of reusable segments (and of a cache hit's segment map).
  const previous = opts.cache && opts.slot ? await opts.cache.lastBuilt(opts.slot) : undefined;
  if (key && opts.cache) {
    const hit = await opts.cache.get(key);
    if (hit && hit.mediaType === mediaType && (await opts.blobs.has(hit.digest, hit.size))) {
      const segments = previous?.digest === hit.digest ? previous.segments : undefined;
      await touch(opts.blobs.path(hit.digest));
      return { layer: _layer(hit.digest, hit.size, hit.diffId, mediaType, opts.blobs), cached: true, name: plan.name, segments };
    }
  }
  // Files of the segment being written, with their checksums, for the SBOM (layer-files.ts).
  let segmentFiles: LayerFile[] = [];
  const onFile = (m: Member, sums: FileSums) => {
    known.set(m, sums.sha256);
    opts.cache?.rememberContent(m, sums.sha256);
    segmentFiles.push({ path: `/${m.path}`, size: m.size, sha1: sums.sha1, sha256: sums.sha256.slice('sha256:'.length) });
  };

  const reusable = new Map<string, SegmentRecord>();
  let previousPath: string | undefined;
  if (previous && previous.mediaType === mediaType && (await opts.blobs.has(previous.digest))) {
    previousPath = opts.blobs.path(previous.digest);
    for (const s of previous.segments) reusable.set(s.key, s);
  }

  const segmentIdent = `${ident}/segment`;
  const tmp = await opts.blobs.staging();
  const out = await open(tmp, 'w');
  const blob = new Digester();
  const diff = new Digester();
  const records: SegmentRecord[] = [];
  let reused = 0;
  const segments = splitSegments(plan.members).map((members) => {
    const segKey = layerKey(members, opts.epoch, segmentIdent, lookup);
    return { members, segKey, old: segKey && previousPath ? reusable.get(segKey) : undefined };
  });
  // Reused segments are decompressed (for the diffID) ahead of the writer, a few at a time on the thread pool.
  const ahead = new Map<number, Promise<{ compressed: Buffer; tar: Buffer }>>();
  const fetchAhead = (from: number) => {
    for (let i = from; i < segments.length && i < from + PREFETCH_AHEAD; i++) {
      const old = segments[i].old;
      if (old && old.length <= PREFETCH_MAX_BYTES && !ahead.has(i)) ahead.set(i, _readSegment(previousPath!, old, opts.compression));
    }
  };
  try {
    for (const [i, { members, segKey, old }] of segments.entries()) {
      fetchAhead(i);
      const offset = blob.size;
      if (old && ahead.has(i)) {
        const { compressed, tar } = await ahead.get(i)!;
        ahead.delete(i);
        diff.update(tar);
        blob.update(compressed);
        await out.write(compressed);
        reused++;
      } else if (old) {
        const range = { start: old.offset, end: old.offset + old.length - 1, highWaterMark: 1 << 20 };
        await Promise.all([
          _append(createReadStream(previousPath!, range), out, blob),
          pipeline(createReadStream(previousPath!, range), decompressor(opts.compression), _hashInto(diff)),
        ]);
        reused++;
      } else {
        segmentFiles = [];
        const tar = tarStream(members, opts.epoch, onFile, { endOfArchive: false });
        await _append(tar, out, blob, [_coalesce(), _tap(diff), ...compressor(opts.compression)]);
      }
      // After building, every file's digest is known, so the key exists.
      const k = segKey ?? layerKey(members, opts.epoch, segmentIdent, lookup);
      if (k) records.push({ key: k, offset, length: blob.size - offset });
      if (k && !old && opts.cache) await rememberSegmentFiles(opts.cache.root, k, segmentFiles);
    }
    diff.update(END_OF_ARCHIVE);
    await _append(Readable.from([END_OF_ARCHIVE]), out, blob, compressor(opts.compression));
    await out.close();
  } catch (e) {
    await out.close().catch(() => {});
    await rm(tmp, { force: true });
    await Promise.allSettled(ahead.values());
    throw e;
  }
  const digest = blob.digest();
  const diffId = diff.digest();
  await rename(tmp, opts.blobs.path(digest));
  if (opts.cache) {
    const k = key ?? layerKey(plan.members, opts.epoch, ident, lookup);
    if (k) await opts.cache.put(k, { digest, size: blob.size, diffId, mediaType });
    if (opts.slot) await opts.cache.setLastBuilt(opts.slot, { digest, mediaType, segments: records });
  }
  return {
    layer: _layer(digest, blob.size, diffId, mediaType, opts.blobs),
    cached: false,
    name: plan.name,
    uncompressedSize: diff.size,
    segmentsReused: { reused, total: records.length },
    segments: records.length === segments.length ? records : undefined,
  };
}

/** Streams `source` (through `transforms`) onto the end of the blob file, hashing what is written. */
async function _append(source: Readable, out: FileHandle, blob: Digester, transforms: Transform[] = []): Promise<void> {
  const write = async (chunks: AsyncIterable<Buffer>) => {
    for await (const c of chunks) {
      blob.update(c);
      await out.write(c);
    }
  };
  await (pipeline as (...s: unknown[]) => Promise<void>)(source, ...transforms, write);
}

function _hashInto(d: Digester) {
  return async (chunks: AsyncIterable<Buffer>) => {
    for await (const c of chunks) d.update(c);
  };
}

/**
 * Gathers tar-stream's many small chunks (a 512-byte header, then a file) into ~256 KiB ones: each chunk handed to
 * zlib is a thread-pool round trip, and with 20,000 small files those round trips, not deflate, filled the profile.
 */
function _coalesce(target = 256 << 10): Transform {
  let parts: Buffer[] = [];
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      parts.push(chunk);
      size += chunk.length;
      if (size < target) return cb();
      const all = Buffer.concat(parts, size);
      parts = [];
      size = 0;
      cb(null, all);
    },
    flush(cb: TransformCallback) {
      cb(null, size ? Buffer.concat(parts, size) : undefined);
    },
  });
}

function _tap(d: Digester): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      d.update(chunk);
      cb(null, chunk);
    },
  });
}

async function _readSegment(path: string, s: SegmentRecord, c: Compression): Promise<{ compressed: Buffer; tar: Buffer }> {
  const fh = await open(path, 'r');
  try {
    const compressed = Buffer.allocUnsafe(s.length);
    const { bytesRead } = await fh.read(compressed, 0, s.length, s.offset);
    if (bytesRead !== s.length) throw new Error(`layer cache blob ${path} is shorter than its segment map says`);
    const tar = c === 'gzip' ? await gunzipAsync(compressed) : zstdDecompress(compressed);
    return { compressed, tar };
  } finally {
    await fh.close();
  }
}

function _layer(digest: Digest, size: number, diffId: Digest, mediaType: string, blobs: BlobDir): Layer {
  return {
    descriptor: { mediaType, digest, size },
    diffId,
    open: () => blobs.open(digest),
    openRange: (offset, length) => blobs.open(digest, { offset, length }),
  };
}
