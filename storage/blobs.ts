// Content-addressed blobs shared by all repositories; a repository sees a blob only through its link.
//
// Beyond the OCI routes, for registry/ (which never touches the driver, issue 15):
//   linkTimes(name)       blobs linked into a repository, with each link's mtime (last push or mirror pull)
//   linkedDigests(name)   the same without the stats (quota usage)
//   dropLink(name, d)     removes a link without checks (eviction; GC reclaims the bytes)
//   read(digest, range)   the bytes for this process to consume (a fill re-reading what it published)
import type { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { OciError, type Digest } from '../spec/index.js';
import type { Driver } from './driver.js';
import { paths } from './paths.js';
import { GcGuard } from './gc.js';
import { linkTimes } from './links.js';

export interface BlobInfo {
  digest: Digest;
  size: number;
}

export class BlobStore {
  /** Blob sizes never change for a digest, so they can be cached forever (bounded by count). */
  private readonly sizes = new LRUCache<string, number>({ max: 100_000 });

  private readonly gc: GcGuard;
  /** Told when this process links or unlinks a blob in a repository (createStore: the browse caches forget it). */
  changed?: (name: string) => void;

  constructor(private readonly driver: Driver) {
    this.gc = new GcGuard(driver);
  }

  /** Size of the blob's data if it exists anywhere in storage (no repository check). */
  async dataSize(digest: Digest): Promise<number | undefined> {
    const cached = this.sizes.get(digest);
    if (cached !== undefined) return cached;
    const info = await this.driver.stat(paths.blobData(digest));
    if (info) this.sizes.set(digest, info.size);
    return info?.size;
  }

  /** The blob as `name` sees it; throws BLOB_UNKNOWN when not linked into the repository or missing. */
  async stat(name: string, digest: Digest): Promise<BlobInfo> {
    const [linked, size] = await Promise.all([this.isLinked(name, digest), this.dataSize(digest)]);
    if (!linked || size === undefined)
      throw new OciError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest } });
    return { digest, size };
  }

  /**
   * When set, a link older than this is rewritten when checked (HEAD/GET of the blob, a manifest referencing it): a
   * client that just saw a blob can rely on it for the GC grace window (storage/gc.ts spares fresh links). The
   * registry sets it to half of `gc.grace`.
   */
  linkRefreshMs?: number;

  async isLinked(name: string, digest: Digest): Promise<boolean> {
    const path = paths.layerLink(name, digest);
    const info = await this.driver.stat(path);
    if (!info) return false;
    if (this._stale(info.modified)) await this.driver.put(path, digest);
    return true;
  }

  /** Whether a link or object last written at `modified` should be rewritten before it is relied on. */
  _stale(modified: Date): boolean {
    return this.linkRefreshMs !== undefined && Date.now() - modified.getTime() > this.linkRefreshMs;
  }

  async link(name: string, digest: Digest): Promise<void> {
    await this.driver.put(paths.layerLink(name, digest), digest);
    this.changed?.(name);
  }

  async unlink(name: string, digest: Digest): Promise<void> {
    await this.stat(name, digest);
    await this.driver.delete(paths.layerLink(name, digest));
    this.changed?.(name);
  }

  /** Opens the blob's bytes (or a byte range, inclusive) to stream to a client; the body may be Sendable. */
  async open(digest: Digest, range?: { start: number; end: number }): Promise<Readable> {
    return this.driver.read(paths.blobData(digest), { ...range, relay: true });
  }

  /** The blob's bytes (or an inclusive range) to read in this process, never a relay body. */
  async read(digest: Digest, range?: { start: number; end: number }): Promise<Readable> {
    return this.driver.read(paths.blobData(digest), { ...range });
  }

  async linkTimes(name: string): Promise<Array<{ digest: Digest; modified: Date }>> {
    return linkTimes(this.driver, paths.layerLinks(name));
  }

  /** Digests linked into `name` (link entries that are no digest are skipped). */
  async linkedDigests(name: string): Promise<Digest[]> {
    return (await this.linkTimes(name)).map((l) => l.digest);
  }

  async dropLink(name: string, digest: Digest): Promise<void> {
    await this.driver.delete(paths.layerLink(name, digest));
    this.changed?.(name);
  }

  /** A direct URL for clients (S3 presigned), when the driver offers one. */
  async redirectUrl(digest: Digest): Promise<string | undefined> {
    return this.driver.redirectUrl?.(paths.blobData(digest), { expiresIn: 20 * 60 });
  }

  /** Cross-repository mount: links `digest` into `to` when `from` has it. Returns false when it can't. */
  async mount(from: string, to: string, digest: Digest): Promise<BlobInfo | undefined> {
    try {
      // Bracketed by the GC protocol (storage/gc.ts): a mount that raced a sweep of the blob is undone.
      return await this.gc.around(
        async () => {
          const info = await this.stat(from, digest);
          await this.link(to, digest);
          return info;
        },
        async () => {
          if (await this.driver.stat(paths.blobData(digest))) return;
          await this.driver.delete(paths.layerLink(to, digest));
          this.forget(digest);
          throw new OciError('BLOB_UNKNOWN', 'blob was garbage-collected during the mount');
        },
      );
    } catch (e) {
      if (e instanceof OciError && e.code === 'BLOB_UNKNOWN') return undefined;
      throw e;
    }
  }

  /** Stores small content (a manifest) under its digest when not already there. */
  async putSmall(digest: Digest, data: Buffer): Promise<void> {
    // Not the size cache: GC (maybe in another process) may have removed the data since it was cached. Old data is
    // rewritten (fresh mtime): a re-pushed manifest must not look like garbage to a GC that is marking right now.
    const info = await this.driver.stat(paths.blobData(digest));
    if (info?.size === data.length && !this._stale(info.modified)) return;
    await this.driver.put(paths.blobData(digest), data);
    this.sizes.set(digest, data.length);
  }

  noteStored(digest: Digest, size: number): void {
    this.sizes.set(digest, size);
  }

  forget(digest: Digest): void {
    this.sizes.delete(digest);
  }
}
