// The regular files a built layer holds, with their SHA-1 and SHA-256 — read back from the layer blob itself, so
// the SBOM lists exactly what was shipped (also for cached layers, and whatever kind of entry produced a file).
// A layer blob is content-addressed, so its file list is cached forever under its digest.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { loadZstd } from './zstd.js';
import { parseDigest, type Digest } from '../spec/digest.js';
import type { Layer } from './image.js';

export interface LayerFile {
  /** Absolute path in the image: `/usr/bin/app`. */
  path: string;
  size: number;
  sha1: string;
  sha256: string;
}

/** Bump when LayerFile changes: older cache entries are then simply not found. */
const CACHE_VERSION = 1;

/** Where a segment of a berth-built layer sits in its blob (segments.ts), with its content key. */
export interface LayerSegment {
  key: string;
  offset: number;
  length: number;
}

/**
 * The layer's regular files in tar order. A layer built here from segments is listed per segment (the builder
 * records each segment's files as it writes them; a missing list is read back from that segment alone), so a
 * layer rebuilt after a one-file change costs one segment. Any other layer is read whole, once: `cacheDir`
 * (optional) keeps its list under its digest.
 */
export async function layerFiles(layer: Layer, cacheDir?: string, segments?: LayerSegment[]): Promise<LayerFile[]> {
  if (segments?.length && cacheDir && layer.openRange) {
    // Read side by side: a layer has dozens of segments, each list a small file.
    const lists = await Promise.all(
      segments.map(async (s) => {
        const segFile = _segmentFile(cacheDir, s.key);
        const list = await _readList(segFile);
        if (list) return list;
        const scanned = await _scan(await layer.openRange!(s.offset, s.length), layer.descriptor.mediaType);
        await _writeList(segFile, scanned);
        return scanned;
      }),
    );
    return lists.flat();
  }
  const file = cacheDir ? _layerFile(cacheDir, layer.descriptor.digest) : undefined;
  const cached = file ? await _readList(file) : undefined;
  if (cached) return cached;
  const files = await _scan(await layer.open(), layer.descriptor.mediaType);
  if (file) await _writeList(file, files);
  return files;
}

/**
 * Records a whole layer's files, known without reading its blob (layers.ts: a layer found in a registry cache by
 * the key its files hashed to). Whiteouts are left out as a read-back would.
 */
export async function rememberLayerFiles(cacheDir: string, digest: Digest, files: LayerFile[]): Promise<void> {
  await _writeList(
    _layerFile(cacheDir, digest),
    files.filter((f) => !posix.basename(f.path).startsWith('.wh.')),
  );
}

function _layerFile(cacheDir: string, digest: Digest): string {
  return join(cacheDir, 'sbom', `v${CACHE_VERSION}-${parseDigest(digest).encoded}.json`);
}

/** Records a segment's files as the builder wrote them, so the SBOM never has to read that segment back. */
export async function rememberSegmentFiles(cacheDir: string, key: string, files: LayerFile[]): Promise<void> {
  await _writeList(_segmentFile(cacheDir, key), files);
}

function _segmentFile(cacheDir: string, key: string): string {
  return join(cacheDir, 'sbom', `v${CACHE_VERSION}-segment-${key}.json`);
}

async function _readList(file: string): Promise<LayerFile[] | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LayerFile[];
  } catch {
    return undefined; // not cached yet (or unreadable): read the blob
  }
}

async function _writeList(file: string, files: LayerFile[]): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const data = JSON.stringify(files);
  // The directory is made only when missing: a build writes a list per segment, hundreds into one directory.
  await writeFile(tmp, data).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
    await mkdir(join(file, '..'), { recursive: true });
    await writeFile(tmp, data);
  });
  await rename(tmp, file);
}

async function _scan(blob: Readable, mediaType: string): Promise<LayerFile[]> {
  let unzip: Transform | undefined;
  try {
    unzip = await _decompressor(mediaType);
  } catch (e) {
    blob.destroy();
    throw e;
  }
  const extract = tar.extract();
  const fail = (e: Error) => extract.destroy(e);
  blob.on('error', fail);
  if (unzip) {
    unzip.on('error', fail);
    blob.pipe(unzip).pipe(extract as unknown as NodeJS.WritableStream);
  } else {
    blob.pipe(extract as unknown as NodeJS.WritableStream);
  }
  const byPath = new Map<string, LayerFile>();
  for await (const entry of extract) {
    const h = entry.header;
    const path = _imagePath(h.name);
    if (h.type === 'file' || h.type === 'contiguous-file') {
      const sha1 = createHash('sha1');
      const sha256 = createHash('sha256');
      let size = 0;
      for await (const c of entry as AsyncIterable<Buffer>) {
        sha1.update(c);
        sha256.update(c);
        size += c.length;
      }
      byPath.set(path, { path, size, sha1: sha1.digest('hex'), sha256: sha256.digest('hex') });
      continue;
    }
    // A hard link is another name for an earlier file of this layer: same bytes, same checksums.
    const target = h.type === 'link' && h.linkname ? byPath.get(_imagePath(h.linkname)) : undefined;
    if (target) byPath.set(path, { ...target, path });
    entry.resume();
  }
  // Whiteouts (`.wh.*`) are deletions, not files.
  return [...byPath.values()].filter((f) => !posix.basename(f.path).startsWith('.wh.'));
}

async function _decompressor(mediaType: string): Promise<Transform | undefined> {
  if (/gzip$/.test(mediaType)) return createGunzip();
  if (/zstd$/.test(mediaType)) return new (await loadZstd()).DecompressStream() as unknown as Transform;
  return undefined;
}

/** `./a/b/` or `a/b` → `/a/b`. */
function _imagePath(name: string): string {
  return `/${name.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '')}`;
}
