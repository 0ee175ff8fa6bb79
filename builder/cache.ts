// The local layer cache. A layer's key hashes everything that can change its bytes: the member list (paths, types,
// modes, owners, names, link targets, sizes, content digests), the epoch and the compression identity (algorithm,
// level, library version). A hit reuses the stored blob: no tar, no compression, and (with skip-existing on push)
// no upload. Content digests come from a stat cache (like git's index: dev, ino, size, mtime, ctime → sha256), so
// a warm rebuild reads only the files that changed.
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { digestOf, type Digest } from '../spec/digest.js';
import type { Member } from './plan.js';

export interface CachedLayer {
  digest: Digest;
  size: number;
  diffId: Digest;
  mediaType: string;
}

/** A segment of a layer blob (segments.ts): its cache key and where its compressed bytes sit in the blob. */
export interface SegmentRecord {
  key: string;
  offset: number;
  length: number;
  /** Its uncompressed (tar) size: sizes the buffer it is decompressed into when reused. */
  tarLength?: number;
}

/** The last blob built for one layer slot (context + platform + layer name), with its segments. */
export interface SlotRecord {
  digest: Digest;
  mediaType: string;
  segments: SegmentRecord[];
}

type StatRow = [dev: number, ino: number, size: number, mtimeMs: number, ctimeMs: number, digest: Digest];

export class LayerCache {
  private stats = new Map<string, StatRow>();
  private dirty = false;
  private segmentsDir?: Promise<unknown>;

  private constructor(readonly root: string) {}

  static async open(root: string): Promise<LayerCache> {
    const c = new LayerCache(root);
    await mkdir(join(root, 'layers'), { recursive: true });
    try {
      const rows = JSON.parse(await readFile(join(root, 'contents.json'), 'utf8')) as Record<string, StatRow>;
      for (const [k, v] of Object.entries(rows)) c.stats.set(k, v);
    } catch {
      // No or unreadable stat cache: files get hashed again, nothing else is lost.
    }
    return c;
  }

  /** The content digest of a file member, if its stat identity is unchanged since we last hashed it. */
  contentDigest(m: Member): Digest | undefined {
    const src = m.source;
    if (!src) return undefined;
    if ('data' in src) return digestOf(src.data);
    const row = this.stats.get(src.abs);
    const s = src.stats;
    if (!row || !s) return undefined;
    return row[0] === s.dev && row[1] === s.ino && row[2] === s.size && row[3] === s.mtimeMs && row[4] === s.ctimeMs
      ? row[5]
      : undefined;
  }

  rememberContent(m: Member, digest: Digest): void {
    const src = m.source;
    if (!src || 'data' in src || !src.stats) return;
    const s = src.stats;
    this.stats.set(src.abs, [s.dev, s.ino, s.size, s.mtimeMs, s.ctimeMs, digest]);
    this.dirty = true;
  }

  async get(key: string): Promise<CachedLayer | undefined> {
    try {
      return JSON.parse(await readFile(join(this.root, 'layers', `${key}.json`), 'utf8')) as CachedLayer;
    } catch {
      return undefined;
    }
  }

  async put(key: string, layer: CachedLayer): Promise<void> {
    await _atomicWrite(join(this.root, 'layers', `${key}.json`), JSON.stringify(layer));
  }

  /** What was last built for this slot, so a changed layer can reuse its unchanged segments. */
  async lastBuilt(slot: string): Promise<SlotRecord | undefined> {
    try {
      return JSON.parse(await readFile(this._slotPath(slot), 'utf8')) as SlotRecord;
    } catch {
      return undefined;
    }
  }

  async setLastBuilt(slot: string, record: SlotRecord): Promise<void> {
    await mkdir(join(this.root, 'slots'), { recursive: true });
    await _atomicWrite(this._slotPath(slot), JSON.stringify(record));
  }

  private _slotPath(slot: string): string {
    return join(this.root, 'slots', `${digestOf(Buffer.from(slot)).slice('sha256:'.length)}.json`);
  }

  /**
   * A segment's uncompressed tar, kept so that reusing the segment in a rebuild costs a read, not a decompression
   * (the layer's diffID covers the uncompressed bytes). Only a copy of exactly the recorded length counts; written
   * via temp + rename, so a crash leaves none or a whole one. Pruned with the blobs (pruneCache).
   */
  async segmentTar(key: string, length: number): Promise<Buffer | undefined> {
    // Read on the thread pool: in a rebuild it is otherwise idle, while this thread hashes the segments before it.
    let fh: FileHandle | undefined;
    try {
      fh = await open(this._segmentTarPath(key), 'r');
      const buf = Buffer.allocUnsafe(length + 1);
      // One byte more than expected is asked for: a longer file is not the right copy either.
      const { bytesRead } = await fh.read(buf, 0, length + 1, 0);
      return bytesRead === length ? buf.subarray(0, length) : undefined;
    } catch {
      return undefined; // none kept (or pruned meanwhile): the caller decompresses
    } finally {
      await fh?.close();
    }
  }

  async putSegmentTar(key: string, tar: Buffer): Promise<void> {
    await (this.segmentsDir ??= mkdir(join(this.root, 'segments'), { recursive: true }));
    await _atomicWrite(this._segmentTarPath(key), tar);
  }

  private _segmentTarPath(key: string): string {
    return join(this.root, 'segments', `${key}.tar`);
  }

  async save(): Promise<void> {
    if (!this.dirty) return;
    await _atomicWrite(join(this.root, 'contents.json'), JSON.stringify(Object.fromEntries(this.stats)));
    this.dirty = false;
  }
}

/** The cache key, or undefined when some file's content digest is not known yet (then: build, then key). */
export function layerKey(
  members: Member[],
  epoch: number,
  compression: string,
  digestOfMember: (m: Member) => Digest | undefined,
): string | undefined {
  // One JSON row per member into one hash: rows are arrays of strings, numbers and nulls, whose JSON is canonical.
  const h = createHash('sha256').update(JSON.stringify({ v: 1, epoch, compression }));
  for (const m of members) {
    let content: Digest | undefined;
    if (m.type === 'file') {
      content = digestOfMember(m);
      if (!content) return undefined;
    }
    h.update(
      JSON.stringify([
        m.path,
        m.type,
        m.mode,
        m.uid,
        m.gid,
        m.uname ?? null,
        m.gname ?? null,
        m.linkname ?? null,
        m.size,
        content ?? null,
      ]),
    );
    h.update('\n');
  }
  return h.digest('hex');
}

/** A layer's cache key from its segments' keys (segments.ts), in order; undefined while one is unknown. */
export function keyFromSegments(segmentKeys: (string | undefined)[], compression: string): string | undefined {
  if (segmentKeys.some((k) => !k)) return undefined;
  return createHash('sha256')
    .update(JSON.stringify({ v: 2, compression, segments: segmentKeys }))
    .digest('hex');
}

async function _atomicWrite(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** The default size cap of a build cache directory (pipeline.ts `cacheMaxBytes`). */
export const DEFAULT_CACHE_MAX_BYTES = 8 * 1024 ** 3;

/**
 * Keeps a build cache under `maxBytes`: when it holds more, the least recently used files (layer blobs, staged
 * tar inputs, SBOM file lists, uncompressed segments; by mtime — a cache hit touches its blob) go until it is back under 80% of the cap.
 * Files in `keep` (what the build that just ran uses) are never removed. Layer records and slot records stay: one
 * whose blob is gone is a miss, so the layer is simply built again.
 */
export async function pruneCache(
  root: string,
  maxBytes: number,
  keep: Set<string> = new Set(),
): Promise<{ removed: number; freedBytes: number }> {
  // Every build ends here, so the scan is on the critical path: all directories and stats at once (one after
  // another, a cache of ~150 files took 13 ms of a 0.6 s preset go build).
  const dirs = ['blobs/sha256', 'tar-inputs/sha256', 'sbom', 'segments', 'debian/sha256', 'debian/unpacked'];
  const listed = await Promise.all(
    dirs.map(async (dir) => {
      const names = await readdir(join(root, dir)).catch(() => [] as string[]);
      return Promise.all(
        names.map(async (name) => {
          const path = join(root, dir, name);
          // Removed meanwhile (another build): nothing to count.
          const st = await stat(path).catch(() => undefined);
          return st?.isFile() ? { path, size: st.size, mtimeMs: st.mtimeMs } : undefined;
        }),
      );
    }),
  );
  const files = listed.flat().filter((f) => f !== undefined);
  let total = files.reduce((n, f) => n + f.size, 0);
  if (total <= maxBytes) return { removed: 0, freedBytes: 0 };
  const goal = Math.floor(maxBytes * 0.8);
  let removed = 0;
  let freedBytes = 0;
  for (const f of files.sort((a, b) => a.mtimeMs - b.mtimeMs)) {
    if (total <= goal) break;
    if (keep.has(f.path)) continue;
    await rm(f.path, { force: true });
    total -= f.size;
    freedBytes += f.size;
    removed++;
  }
  return { removed, freedBytes };
}

/** Marks a cached file as just used (LRU order for pruneCache); failure only makes it look older. */
export async function touch(path: string): Promise<void> {
  const now = new Date();
  await utimes(path, now, now).catch(() => {});
}
