// Plan → layer blob, in one streaming pass, or a layer-cache hit.
//
// The blob is a run of compressed segments (segments.ts): each is either built (tar → diffID hash → compressor →
// blob) or, when its key matches a segment of the slot's previous blob, copied compressed from that blob while a
// decompressor feeds the diffID hash. Segments go strictly in order, so both digests cover the bytes in order.
import { closeSync, createReadStream, openSync, readSync, writeSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Digester, type Digest } from '../spec/digest.js';
import type { Compression } from '../spec/build-spec.js';
import type { BlobDir } from './blobs.js';
import { type LayerCache, keyFromSegments, layerKey, touch, type SegmentRecord } from './cache.js';
import {
  compressBuffer,
  compressionIdentity,
  compressor,
  decompressBuffer,
  decompressor,
  layerMediaType,
} from './compress.js';
import type { Layer } from './image.js';
import type { LayerPlan, Member } from './plan.js';
import { SEGMENT_MAX_BYTES, memberTarBytes, splitSegments } from './segments.js';
import { END_OF_ARCHIVE, SMALL_FILE, tarSegmentSync, tarStream, type FileSums } from './tar.js';
import { rememberSegmentFiles, type LayerFile } from './layer-files.js';

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

/** Reused segments up to this (compressed) size are read and decompressed ahead; bigger ones stream. */
const PREFETCH_MAX_BYTES = 8 << 20;
/** How far ahead of the writer segments are prepared: at most this many, holding about this much tar. */
const PREPARE_AHEAD = 4;
const PREPARE_AHEAD_BYTES = 8 << 20;

/** A segment ready to append: its tar (for the diffID), its compressed bytes, and (if built now) its files and key. */
interface Prepared {
  tar: Buffer;
  compressed: Buffer;
  files?: LayerFile[];
  key?: string;
}

export async function buildLayer(plan: LayerPlan, opts: LayerBuildOptions): Promise<BuiltLayer> {
  const ident = await compressionIdentity(opts.compression);
  const mediaType = layerMediaType(opts.compression);
  const known = new Map<Member, Digest>();
  const lookup = (m: Member) => known.get(m) ?? opts.cache?.contentDigest(m);
  // A layer's key is made of its segments' keys, so each member is keyed once (layer-cache hit or not).
  const segmentIdent = `${ident}/segment`;
  const segments = splitSegments(plan.members).map((members) => {
    const segKey = opts.cache ? layerKey(members, opts.epoch, segmentIdent, lookup) : undefined;
    const tarBytes = members.reduce((n, m) => n + memberTarBytes(m), 0);
    return { members, segKey, tarBytes, old: undefined as SegmentRecord | undefined };
  });
  const key = opts.cache
    ? keyFromSegments(
        segments.map((s) => s.segKey),
        ident,
      )
    : undefined;
  // The previous blob of this slot: the source of reusable segments (and of a cache hit's segment map).
  const previous = opts.cache && opts.slot ? await opts.cache.lastBuilt(opts.slot) : undefined;
  if (key && opts.cache) {
    const hit = await opts.cache.get(key);
    if (hit && hit.mediaType === mediaType && (await opts.blobs.has(hit.digest, hit.size))) {
      const segments = previous?.digest === hit.digest ? previous.segments : undefined;
      await touch(opts.blobs.path(hit.digest));
      return {
        layer: _layer(hit.digest, hit.size, hit.diffId, mediaType, opts.blobs),
        cached: true,
        name: plan.name,
        segments,
      };
    }
  }
  // Each file written, with its checksums: for the cache and the segment's SBOM file list (layer-files.ts).
  const onFile = (m: Member, sums: FileSums, files: LayerFile[]) => {
    known.set(m, sums.sha256);
    opts.cache?.rememberContent(m, sums.sha256);
    files.push({ path: `/${m.path}`, size: m.size, sha1: sums.sha1, sha256: sums.sha256.slice('sha256:'.length) });
  };

  const reusable = new Map<string, SegmentRecord>();
  let previousPath: string | undefined;
  if (previous && previous.mediaType === mediaType && (await opts.blobs.has(previous.digest))) {
    previousPath = opts.blobs.path(previous.digest);
    for (const s of previous.segments) reusable.set(s.key, s);
  }

  const tmp = await opts.blobs.staging();
  // Written synchronously (page cache): async writes would queue on the thread pool behind the deflate jobs and
  // stall this loop, and with it the tarring of the next segments.
  const out = openSync(tmp, 'w');
  let outOpen = true;
  const closeOut = () => {
    if (outOpen) closeSync(out);
    outOpen = false;
  };
  const listsWritten: Promise<void>[] = [];
  const blob = new Digester();
  const diff = new Digester();
  const records: SegmentRecord[] = [];
  let reused = 0;
  for (const s of segments) if (s.segKey && previousPath) s.old = reusable.get(s.segKey);
  const previousFile = segments.some((s) => s.old)
    ? { path: previousPath!, fd: openSync(previousPath!, 'r') }
    : undefined;
  // Segments small enough to hold are prepared ahead of the writer: a reused one read (its tar from the cache's
  // uncompressed copy, else decompressed — the diffID needs it), a new one of small files tarred in memory and
  // compressed on the thread pool, several at once, so deflate keeps every core busy while this thread tars the next
  // ones. In a rebuild, each segment's tar is kept uncompressed for the next one. Larger segments stream when reached.
  const ready = new Map<number, Promise<Prepared>>();
  const prepare = (i: number): Promise<Prepared> | undefined => {
    const { members, old, tarBytes } = segments[i];
    if (old)
      return old.length <= PREFETCH_MAX_BYTES
        ? _readSegment(previousFile!, old, opts.compression, opts.cache)
        : undefined;
    if (tarBytes > SEGMENT_MAX_BYTES || members.some((m) => m.type === 'file' && m.size > SMALL_FILE)) return undefined;
    const files: LayerFile[] = [];
    const tar = tarSegmentSync(members, opts.epoch, (m, sums) => onFile(m, sums, files));
    // Every file of the segment is hashed now, so its key is known. The tar is kept only for a layer being rebuilt
    // (its slot has an earlier blob): layers that never change never pay for a copy, a cold build writes nothing extra.
    const key = opts.cache && layerKey(members, opts.epoch, segmentIdent, lookup);
    const keep = key && previousPath ? opts.cache!.putSegmentTar(key, tar) : undefined;
    return Promise.all([compressBuffer(opts.compression, tar), keep]).then(([compressed]) => ({
      compressed,
      tar,
      files,
      key: key || undefined,
    }));
  };
  const prepareAhead = (from: number) => {
    let bytes = 0;
    for (
      let i = from;
      i < segments.length && i < from + PREPARE_AHEAD && (i === from || bytes < PREPARE_AHEAD_BYTES);
      i++
    ) {
      bytes += segments[i].tarBytes;
      if (ready.has(i)) continue;
      const p = prepare(i);
      if (!p) continue;
      p.catch(() => {}); // awaited (and its error thrown) when the writer reaches it
      ready.set(i, p);
    }
  };
  try {
    for (const [i, { members, segKey, old }] of segments.entries()) {
      prepareAhead(i);
      const offset = blob.size;
      let files: LayerFile[] | undefined;
      let tarLength: number;
      let preparedKey: string | undefined;
      const prepared = ready.get(i);
      if (prepared) {
        const { compressed, tar, files: f, key } = await prepared;
        ready.delete(i);
        diff.update(tar);
        blob.update(compressed);
        _writeAll(out, compressed);
        files = f;
        preparedKey = key;
        tarLength = tar.length;
      } else if (old) {
        const range = { start: old.offset, end: old.offset + old.length - 1, highWaterMark: 1 << 20 };
        const before = diff.size;
        await Promise.all([
          _append(createReadStream(previousPath!, range), out, blob),
          pipeline(createReadStream(previousPath!, range), await decompressor(opts.compression), _hashInto(diff)),
        ]);
        tarLength = diff.size - before;
      } else {
        files = [];
        const before = diff.size;
        const tar = tarStream(members, opts.epoch, (m, sums) => onFile(m, sums, files!), { endOfArchive: false });
        await _append(tar, out, blob, [_coalesce(), _tap(diff), ...(await compressor(opts.compression))]);
        tarLength = diff.size - before;
      }
      if (old) reused++;
      // After building, every file's digest is known, so the key exists.
      const k = segKey ?? preparedKey ?? layerKey(members, opts.epoch, segmentIdent, lookup);
      if (k) records.push({ key: k, offset, length: blob.size - offset, tarLength });
      if (k && files && opts.cache) {
        const written = rememberSegmentFiles(opts.cache.root, k, files);
        written.catch(() => {}); // awaited after the loop
        listsWritten.push(written);
      }
    }
    diff.update(END_OF_ARCHIVE);
    const end = await compressBuffer(opts.compression, END_OF_ARCHIVE);
    blob.update(end);
    _writeAll(out, end);
    closeOut();
    await Promise.all(listsWritten);
  } catch (e) {
    closeOut();
    await Promise.allSettled(listsWritten);
    await rm(tmp, { force: true });
    await Promise.allSettled(ready.values());
    throw e;
  } finally {
    if (previousFile) closeSync(previousFile.fd);
  }
  const digest = blob.digest();
  const diffId = diff.digest();
  await rename(tmp, opts.blobs.path(digest));
  if (opts.cache) {
    const k =
      key ??
      keyFromSegments(
        records.map((r) => r.key),
        ident,
      );
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
async function _append(source: Readable, out: number, blob: Digester, transforms: Transform[] = []): Promise<void> {
  const write = async (chunks: AsyncIterable<Buffer>) => {
    for await (const c of chunks) {
      blob.update(c);
      _writeAll(out, c);
    }
  };
  await (pipeline as (...s: unknown[]) => Promise<void>)(source, ...transforms, write);
}

function _writeAll(fd: number, data: Buffer): void {
  for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, data.length - at);
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

/**
 * Reads a (small) segment of the previous blob — synchronously: one read from the page cache beats a round trip —
 * and its tar: the cache's uncompressed copy when there is one, else decompressed (and then kept for next time).
 */
async function _readSegment(
  previous: { path: string; fd: number },
  s: SegmentRecord,
  c: Compression,
  cache?: LayerCache,
): Promise<Prepared> {
  const compressed = Buffer.allocUnsafe(s.length);
  if (readSync(previous.fd, compressed, 0, s.length, s.offset) !== s.length) {
    throw new Error(`layer cache blob ${previous.path} is shorter than its segment map says`);
  }
  const kept = s.tarLength === undefined ? undefined : await cache?.segmentTar(s.key, s.tarLength);
  if (kept) return { compressed, tar: kept };
  const tar = await decompressBuffer(c, compressed, s.tarLength === undefined ? undefined : s.tarLength + 1024);
  await cache?.putSegmentTar(s.key, tar);
  return { compressed, tar };
}

function _layer(digest: Digest, size: number, diffId: Digest, mediaType: string, blobs: BlobDir): Layer {
  return {
    descriptor: { mediaType, digest, size },
    diffId,
    open: () => blobs.open(digest),
    openRange: (offset, length) => blobs.open(digest, { offset, length }),
  };
}
