// Plan → layer blob, in one streaming pass, or a layer-cache hit.
//
// The blob is a run of compressed segments (segments.ts): each is either built (tar → diffID hash → compressor →
// blob) or, when its key matches a segment of the slot's previous blob, copied compressed from that blob while a
// decompressor feeds the diffID hash. Segments go strictly in order, so both digests cover the bytes in order.
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, openSync, readSync, writeSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Digester, type Digest } from '../spec/digest.js';
import type { Compression } from '../spec/build-spec.js';
import type { BlobDir } from './blobs.js';
import { type LayerCache, keyFromSegments, layerKey, touch, type SegmentRecord, type SlotRecord } from './cache.js';
import {
  compressBuffer,
  compressionIdentity,
  compressor,
  decompressBuffer,
  decompressor,
  layerMediaType,
  type GzipTuning,
} from './compress.js';
import type { Layer } from './image.js';
import type { LayerPlan, Member } from './plan.js';
import { SEGMENT_MAX_BYTES, memberTarBytes, splitSegments } from './segments.js';
import { END_OF_ARCHIVE, tarSegment, tarStream, type FileSums } from './tar.js';
import { hashAndCompress, recycle, segmentMemory } from './segment-pool.js';
import { rememberLayerFiles, rememberSegmentFiles, type LayerFile } from './layer-files.js';

export interface LayerBuildOptions {
  epoch: number;
  compression: Compression;
  blobs: BlobDir;
  cache?: LayerCache;
  /** Identifies "this layer of this build" across runs (context, platform, layer name): whose segments to reuse. */
  slot?: string;
  /** A registry-backed cache (registry-cache.ts) asked, by the same key, when the local cache has no blob. */
  remote?: RemoteLayerCache;
  /**
   * The slot as the registry cache names it (platform and layer name, not the context's directory, which differs
   * between CI runners): whose segments a cold runner may fetch by Range when the layer's key misses.
   */
  remoteSlot?: string;
}

/** Layers stored somewhere else under their cache keys (a registry): found without downloading them. */
export interface RemoteLayerCache {
  readonly label: string;
  /** The layer stored under `key` with this media type, or undefined; its blob stays where it is. */
  find(key: string, mediaType: string): Promise<{ layer: Layer; segments?: SegmentRecord[] } | undefined>;
  /** The blob last recorded for this slot with its segment map, when the record has one: reusable by Range. */
  previous?(slot: string, mediaType: string): Promise<RemoteSegments | undefined>;
}

/** A layer blob elsewhere (a registry) whose segments can be read one by one. */
export interface RemoteSegments {
  segments: SegmentRecord[];
  /** The bytes of one segment, or undefined when they cannot be had by part (then the segment is built here). */
  open(s: SegmentRecord): Promise<Readable | undefined>;
}

export interface BuiltLayer {
  layer: Layer;
  cached: boolean;
  name: string;
  uncompressedSize?: number;
  /** Segments copied from the previous build of this layer (`fetched` of them by Range from a registry), out of how many. */
  segmentsReused?: { reused: number; total: number; fetched: number };
  /** Where each segment sits in the blob (known when this build wrote the blob or the slot remembers it). */
  segments?: SegmentRecord[];
  /** The layer's cache key (cache.ts keyFromSegments), when it has one: what a registry cache records. */
  key?: string;
  /** Found in this registry cache (its label): the blob was neither built nor downloaded. */
  remote?: string;
  /** LayerBuildOptions.remoteSlot, for the registry cache's record. */
  remoteSlot?: string;
}

/** Reused segments up to this (compressed) size are read and decompressed ahead; bigger ones stream. */
const PREFETCH_MAX_BYTES = 8 << 20;
/**
 * How far ahead of the writer segments are prepared: at most this many, holding about this much tar. Enough to keep
 * every worker of the segment pool busy while the writer waits for the oldest one.
 */
const PREPARE_AHEAD = 8;
const PREPARE_AHEAD_BYTES = 32 << 20;

/**
 * A segment ready to append: its tar (for the diffID), its compressed bytes — or, for a segment compressed here,
 * its gzip members in order, still being compressed — and (if built now) its files and key.
 */
interface Prepared {
  tar: Buffer;
  compressed: Buffer | Promise<Buffer>[];
  files?: LayerFile[];
  key?: string;
  /** The tar's memory goes back to the segment pool once appended. */
  recyclable?: boolean;
}

/**
 * One segment of the layer: its members, its cache key when known up front, and its copy in the previous blob —
 * a local file, or (`remote`) a registry blob whose part is fetched by Range.
 */
interface Segment {
  members: Member[];
  segKey?: string;
  tarBytes: number;
  old?: SegmentRecord;
  remote?: RemoteSegments;
}

/** What one layer build shares between its steps. */
interface _Job {
  opts: LayerBuildOptions;
  /** The plan's own gzip level (preset go's binary), else the default (compress.ts). */
  gzip?: GzipTuning;
  ident: string;
  mediaType: string;
  /** Content digests learnt while tarring (and from the cache's stat rows): what segment keys are made of. */
  lookup: (m: Member) => Digest | undefined;
  onFile: (m: Member, sums: FileSums, files: LayerFile[]) => void;
  segmentKey: (members: Member[]) => string | undefined;
}

export async function buildLayer(plan: LayerPlan, opts: LayerBuildOptions): Promise<BuiltLayer> {
  const job = await _job(opts, plan.gzip);
  // A layer's key is made of its segments' keys, so each member is keyed once (layer-cache hit or not).
  const segments: Segment[] = splitSegments(plan.members).map((members) => ({
    members,
    segKey: job.segmentKey(members),
    tarBytes: members.reduce((n, m) => n + memberTarBytes(m), 0),
  }));
  const key = opts.cache
    ? keyFromSegments(
        segments.map((s) => s.segKey),
        job.ident,
      )
    : undefined;
  // The previous blob of this slot: the source of reusable segments (and of a cache hit's segment map).
  const previous = opts.cache && opts.slot ? await opts.cache.lastBuilt(opts.slot) : undefined;
  const remoteSlot = opts.remoteSlot;
  const hit = key ? await _cacheHit(job, key, previous, plan.name) : undefined;
  if (hit) return { ...hit, key, remoteSlot };
  if (opts.remote && opts.cache) {
    const found = await _remoteHit(job, plan, segments, previous, opts.remote);
    if (found) return { ...found, remoteSlot };
  }
  const previousPath = await _reusableSegments(job, previous, segments);
  // A cold runner (no local blob of this slot): the registry's copy of the slot's last blob, part by part.
  if (!previousPath && opts.remote?.previous && remoteSlot && opts.cache)
    _remoteSegments(segments, await opts.remote.previous(remoteSlot, job.mediaType));
  const written = await _writeBlob(job, segments, previousPath);
  const { digest, size, diffId, records, reused, fetched } = written;
  const k = opts.cache
    ? (key ??
      keyFromSegments(
        records.map((r) => r.key),
        job.ident,
      ))
    : undefined;
  if (opts.cache) {
    if (k) await opts.cache.put(k, { digest, size, diffId, mediaType: job.mediaType });
    if (opts.slot) await opts.cache.setLastBuilt(opts.slot, { digest, mediaType: job.mediaType, segments: records });
  }
  return {
    layer: _layer(digest, size, diffId, job.mediaType, opts.blobs),
    cached: false,
    name: plan.name,
    uncompressedSize: written.tarSize,
    segmentsReused: { reused, total: records.length, fetched },
    segments: records.length === segments.length ? records : undefined,
    key: k,
    remoteSlot,
  };
}

/**
 * The layer from the local cache (now that every file is hashed) or from the registry cache. On a cold runner the
 * stat cache is empty, so the key is unknown until each file is read and hashed: that read is the whole cost of
 * a hit — no tar, no compression, no download. The file list the hashing yields is kept for the SBOM under the
 * blob's digest, as if the blob had been read back (layer-files.ts), so the SBOM never downloads it either.
 */
async function _remoteHit(
  job: _Job,
  plan: LayerPlan,
  segments: Segment[],
  previous: SlotRecord | undefined,
  remote: RemoteLayerCache,
): Promise<BuiltLayer | undefined> {
  const files = await _hashFiles(job, plan.members);
  for (const s of segments) s.segKey ??= job.segmentKey(s.members);
  const key = keyFromSegments(
    segments.map((s) => s.segKey),
    job.ident,
  );
  if (!key) return undefined;
  const local = await _cacheHit(job, key, previous, plan.name);
  if (local) return { ...local, key };
  const found = await remote.find(key, job.mediaType);
  if (!found) return undefined;
  const { layer, segments: map } = found;
  await rememberLayerFiles(job.opts.cache!.root, layer.descriptor.digest, files);
  // The segment map travels on into the next record, so a later one-file change can still reuse segments.
  return { layer, cached: true, name: plan.name, key, remote: remote.label, segments: map };
}

/** Reads every file member once (SHA-256 for the keys, SHA-1 too for the SBOM), a few at a time, in tar order. */
async function _hashFiles(job: _Job, members: Member[]): Promise<LayerFile[]> {
  const files = members.filter((m) => m.type === 'file');
  const sums = new Array<FileSums>(files.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) sums[i] = await _hashMember(files[i]);
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  const out: LayerFile[] = [];
  files.forEach((m, i) => job.onFile(m, sums[i], out));
  return out;
}

async function _hashMember(m: Member): Promise<FileSums> {
  const sha1 = createHash('sha1');
  const sha256 = createHash('sha256');
  let size = 0;
  const src = m.source;
  if (src && 'data' in src) {
    sha1.update(src.data);
    sha256.update(src.data);
    size = src.data.length;
  } else if (src && m.size <= 4 << 20) {
    // One read of exactly the file: a stream would allocate its full chunk size for every small file.
    const data = await readFile(src.abs);
    sha1.update(data);
    sha256.update(data);
    size = data.length;
  } else if (src) {
    for await (const c of createReadStream(src.abs, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      sha1.update(c);
      sha256.update(c);
      size += c.length;
    }
  }
  // The plan's size goes into the key and the tar header: a file that changed since it was listed is refused.
  if (size !== m.size) throw new Error(`/${m.path} changed while the build read it (${m.size} bytes, now ${size})`);
  return { sha256: `sha256:${sha256.digest('hex')}`, sha1: sha1.digest('hex') };
}

async function _job(opts: LayerBuildOptions, gzip?: GzipTuning): Promise<_Job> {
  const ident = await compressionIdentity(opts.compression, gzip);
  const segmentIdent = `${ident}/segment`;
  const known = new Map<Member, Digest>();
  const lookup = (m: Member) => known.get(m) ?? opts.cache?.contentDigest(m);
  return {
    opts,
    gzip,
    ident,
    mediaType: layerMediaType(opts.compression),
    lookup,
    // Each file written, with its checksums: for the cache and the segment's SBOM file list (layer-files.ts).
    onFile: (m, sums, files) => {
      known.set(m, sums.sha256);
      opts.cache?.rememberContent(m, sums.sha256);
      files.push({ path: `/${m.path}`, size: m.size, sha1: sums.sha1, sha256: sums.sha256.slice('sha256:'.length) });
    },
    segmentKey: (members) => (opts.cache ? layerKey(members, opts.epoch, segmentIdent, lookup) : undefined),
  };
}

/** The cached blob for `key`, if it is still there with the right media type and size. */
async function _cacheHit(
  job: _Job,
  key: string,
  previous: SlotRecord | undefined,
  name: string,
): Promise<BuiltLayer | undefined> {
  const { cache, blobs } = job.opts;
  const hit = await cache!.get(key);
  if (!hit || hit.mediaType !== job.mediaType || !(await blobs.has(hit.digest, hit.size))) return undefined;
  await touch(blobs.path(hit.digest));
  return {
    layer: _layer(hit.digest, hit.size, hit.diffId, job.mediaType, blobs),
    cached: true,
    name,
    segments: previous?.digest === hit.digest ? previous.segments : undefined,
  };
}

/** Marks the segments the previous blob of this slot already holds (same key); returns that blob's path. */
async function _reusableSegments(
  job: _Job,
  previous: SlotRecord | undefined,
  segments: Segment[],
): Promise<string | undefined> {
  if (!previous || previous.mediaType !== job.mediaType || !(await job.opts.blobs.has(previous.digest))) return;
  const reusable = new Map(previous.segments.map((s) => [s.key, s]));
  for (const s of segments) if (s.segKey) s.old = reusable.get(s.segKey);
  return job.opts.blobs.path(previous.digest);
}

/**
 * Marks the segments the registry's blob of this slot holds (same key): they are fetched by Range, not built. The
 * keys are all known here — the registry lookup before this hashed every file.
 */
function _remoteSegments(segments: Segment[], remote: RemoteSegments | undefined): void {
  if (!remote) return;
  const reusable = new Map(remote.segments.map((s) => [s.key, s]));
  for (const s of segments) {
    s.old = s.segKey ? reusable.get(s.segKey) : undefined;
    if (s.old) s.remote = remote;
  }
}

/** The blob file being written, with the digests of what it holds (blob) and of its uncompressed tar (diffID). */
class _BlobFile {
  readonly blob = new Digester();
  readonly diff = new Digester();
  private fd: number | undefined;

  constructor(readonly path: string) {
    // Written synchronously (page cache): async writes would queue on the thread pool behind the deflate jobs and
    // stall this loop, and with it the tarring of the next segments.
    this.fd = openSync(path, 'w');
  }

  /**
   * Appends a prepared segment: its tar to the diffID, its compressed bytes to the file — parts in order, each
   * as soon as it is done, so hashing and writing overlap the compression of the rest.
   */
  async append(tar: Buffer, compressed: Buffer | Promise<Buffer>[]): Promise<void> {
    this.diff.update(tar);
    if (Buffer.isBuffer(compressed)) this.write(compressed);
    else for (const part of compressed) this.write(await part);
  }

  write(compressed: Buffer): void {
    this.blob.update(compressed);
    for (let at = 0; at < compressed.length; ) at += writeSync(this.fd!, compressed, at, compressed.length - at);
  }

  /** Streams `source` (through `transforms`) onto the end of the file. */
  async appendStream(source: Readable, transforms: Transform[] = []): Promise<void> {
    const write = async (chunks: AsyncIterable<Buffer>) => {
      for await (const c of chunks) this.write(c);
    };
    await (pipeline as (...s: unknown[]) => Promise<void>)(source, ...transforms, write);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * Writes the segments in order (prepared ahead where they are small enough, streamed otherwise), then the
 * end-of-archive segment, and moves the blob into place under its digest.
 */
async function _writeBlob(job: _Job, segments: Segment[], previousPath: string | undefined) {
  const { opts } = job;
  const tmp = await opts.blobs.staging();
  const out = new _BlobFile(tmp);
  const listsWritten: Promise<void>[] = [];
  const records: SegmentRecord[] = [];
  let reused = 0;
  let fetched = 0;
  const previousFile = segments.some((s) => s.old && !s.remote)
    ? { path: previousPath!, fd: openSync(previousPath!, 'r') }
    : undefined;
  // A layer with one segment to build (a preset's binary, a small layer) compresses it from this thread: nothing
  // else is laid out meanwhile, so a worker would only add its start-up.
  const alone = segments.filter((s) => !s.old).length === 1;
  // A one-segment layer keeps no uncompressed copy: whenever that segment could be reused, the whole layer is a
  // cache hit (same key), so the copy would never be read — for a preset's 10 MB binary it was a 10 MB write.
  const keepTars = previousPath !== undefined && segments.length > 1;
  const ahead = new _Lookahead(segments, (s) => _prepare(job, s, previousFile, keepTars, alone));
  try {
    for (const [i, s] of segments.entries()) {
      ahead.from(i);
      const offset = out.blob.size;
      const before = out.diff.size;
      let files: LayerFile[] | undefined;
      let preparedKey: string | undefined;
      const prepared = await ahead.take(i);
      if (prepared) {
        await out.append(prepared.tar, prepared.compressed);
        if (prepared.recyclable) recycle(prepared.tar);
        files = prepared.files;
        preparedKey = prepared.key;
      } else if (s.old && !s.remote) {
        await _copySegment(out, previousPath!, s.old, opts.compression);
      } else if (!(s.old && s.remote && (await _fetchSegmentInto(out, s.remote, s.old, opts.compression)))) {
        s.old = s.remote = undefined; // not to be had by Range: built here, to the same bytes
        files = [];
        const tar = tarStream(s.members, opts.epoch, (m, sums) => job.onFile(m, sums, files!), { endOfArchive: false });
        await out.appendStream(tar, [_coalesce(), _tap(out.diff), ...(await compressor(opts.compression, job.gzip))]);
      }
      if (s.old) reused++;
      if (s.old && s.remote) fetched++;
      // After building, every file's digest is known, so the key exists.
      const k = s.segKey ?? preparedKey ?? job.segmentKey(s.members);
      if (k) records.push({ key: k, offset, length: out.blob.size - offset, tarLength: out.diff.size - before });
      if (k && files && opts.cache) {
        const written = rememberSegmentFiles(opts.cache.root, k, files);
        written.catch(() => {}); // awaited after the loop
        listsWritten.push(written);
      }
    }
    await out.append(END_OF_ARCHIVE, await compressBuffer(opts.compression, END_OF_ARCHIVE, { gzip: job.gzip }));
    out.close();
    await Promise.all(listsWritten);
  } catch (e) {
    out.close();
    await Promise.allSettled(listsWritten);
    await rm(tmp, { force: true });
    await ahead.settle();
    throw e;
  } finally {
    if (previousFile) closeSync(previousFile.fd);
  }
  const digest = out.blob.digest();
  await opts.blobs.publish(tmp, digest);
  const diffId = out.diff.digest();
  return { digest, size: out.blob.size, diffId, tarSize: out.diff.size, records, reused, fetched };
}

/** Segments prepared ahead of the writer, in order, within PREPARE_AHEAD / PREPARE_AHEAD_BYTES. */
class _Lookahead {
  private ready = new Map<number, Promise<Prepared | undefined>>();
  constructor(
    private readonly segments: Segment[],
    private readonly prepare: (s: Segment) => Promise<Prepared | undefined> | undefined,
  ) {}

  from(first: number): void {
    let bytes = 0;
    for (let i = first; i < this.segments.length && i < first + PREPARE_AHEAD; i++) {
      if (i > first && bytes >= PREPARE_AHEAD_BYTES) break;
      bytes += this.segments[i].tarBytes;
      if (this.ready.has(i)) continue;
      const p = this.prepare(this.segments[i]);
      if (!p) continue;
      p.catch(() => {}); // awaited (and its error thrown) when the writer reaches it
      this.ready.set(i, p);
    }
  }

  async take(i: number): Promise<Prepared | undefined> {
    const p = this.ready.get(i);
    this.ready.delete(i);
    return p;
  }

  async settle(): Promise<void> {
    await Promise.allSettled(this.ready.values());
  }
}

/**
 * A segment made ready ahead of the writer, or undefined when it is too big to hold (it streams when reached).
 * Reused: read from the previous blob (its tar from the cache's uncompressed copy, else decompressed — the diffID
 * needs it). New: laid out here in memory (headers, inline data), then its files read, hashed and compressed by a
 * worker of the segment pool while this thread lays out the next ones and writes the blob (or, `alone`, on this
 * thread). With `keepTar` (a rebuild of a layer of several segments), each new segment's tar is kept uncompressed
 * for the next one.
 */
function _prepare(
  job: _Job,
  s: Segment,
  previousFile: { path: string; fd: number } | undefined,
  keepTar: boolean,
  alone: boolean,
): Promise<Prepared | undefined> | undefined {
  const { opts } = job;
  if (s.old && s.remote)
    return s.old.length <= PREFETCH_MAX_BYTES ? _fetchSegment(job, s, s.remote, s.old, keepTar) : undefined;
  if (s.old)
    return s.old.length <= PREFETCH_MAX_BYTES
      ? _readSegment(previousFile!, s.old, opts.compression, opts.cache)
      : undefined;
  return _buildSegment(job, s, keepTar, alone);
}

/** A new segment, tarred here and hashed and compressed by the segment pool; undefined when too big to hold. */
function _buildSegment(job: _Job, s: Segment, keepTar: boolean, alone = false): Promise<Prepared> | undefined {
  const { opts } = job;
  if (s.tarBytes > SEGMENT_MAX_BYTES) return undefined;
  const segment = tarSegment(s.members, opts.epoch, segmentMemory, { deferReads: true });
  const spans = segment.files.flatMap((f) => [f.offset, f.member.size]);
  return hashAndCompress(opts.compression, segment.tar, spans, segment.reads, {
    here: alone,
    gzip: job.gzip,
  }).then(async ({ tar, parts, sums }) => {
    const files: LayerFile[] = [];
    segment.files.forEach((f, i) =>
      job.onFile(f.member, { sha256: `sha256:${sums[i].sha256}`, sha1: sums[i].sha1 }, files),
    );
    // Every file of the segment is hashed now, so its key is known. The tar is kept only for a layer being rebuilt
    // (its slot has an earlier blob): layers that never change never pay for a copy, a cold build writes nothing extra.
    const key = job.segmentKey(s.members);
    if (key && keepTar) await opts.cache!.putSegmentTar(key, tar);
    return { compressed: parts, tar, files, key, recyclable: true };
  });
}

/**
 * A segment of the registry's blob, fetched by Range and decompressed for the diffID; its tar must be as long as
 * recorded. When the registry will not serve the part (it ignores Range), the request fails or the bytes do not
 * decompress to that length, the segment is built here instead — the same bytes, only slower. Undefined (the
 * writer streams it) when such a fallback is too big to hold.
 */
async function _fetchSegment(
  job: _Job,
  s: Segment,
  remote: RemoteSegments,
  old: SegmentRecord,
  rebuilding: boolean,
): Promise<Prepared | undefined> {
  const c = job.opts.compression;
  try {
    const body = await remote.open(old);
    if (body) {
      const compressed = Buffer.allocUnsafe(old.length);
      let at = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) at += chunk.copy(compressed, at);
      const tar = await decompressBuffer(c, compressed, (old.tarLength ?? 0) + 1024);
      if (tar.length === old.tarLength) return { compressed, tar };
    }
  } catch {
    // a failed or wrong part costs only its reuse
  }
  s.old = s.remote = undefined;
  return _buildSegment(job, s, rebuilding);
}

/**
 * Streams a segment too big to read ahead from the registry's blob: compressed bytes into the file, decompressed
 * into the diffID. False when the registry will not serve the part (nothing was written: build it instead).
 * Once bytes are written a failure cannot fall back, so it fails the build, naming the segment.
 */
async function _fetchSegmentInto(
  out: _BlobFile,
  remote: RemoteSegments,
  old: SegmentRecord,
  c: Compression,
): Promise<boolean> {
  const body = await remote.open(old).catch(() => undefined);
  if (!body) return false;
  const before = out.diff.size;
  const write = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      out.write(chunk);
      cb(null, chunk);
    },
  });
  await pipeline(body, write, await decompressor(c), _hashInto(out.diff));
  if (out.diff.size - before !== old.tarLength)
    throw new Error(
      `registry cache segment ${old.key} decompressed to ${out.diff.size - before} bytes, not the ${old.tarLength} recorded`,
    );
  return true;
}

/** Copies a reused segment too big to read ahead: compressed bytes as they are, decompressed into the diffID. */
async function _copySegment(out: _BlobFile, previousPath: string, old: SegmentRecord, c: Compression): Promise<void> {
  const range = { start: old.offset, end: old.offset + old.length - 1, highWaterMark: 1 << 20 };
  await Promise.all([
    out.appendStream(createReadStream(previousPath, range)),
    decompressor(c).then((d) => pipeline(createReadStream(previousPath, range), d, _hashInto(out.diff))),
  ]);
}

function _hashInto(d: Digester) {
  return async (chunks: AsyncIterable<Buffer>) => {
    for await (const c of chunks) d.update(c);
  };
}

/**
 * Gathers the tar stream's many small chunks (a 512-byte header, then a file) into ~256 KiB ones: each chunk handed to
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
