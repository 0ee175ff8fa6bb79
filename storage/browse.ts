// Read-only views for the web UI and its JSON API (registry/ui), built from what storage already keeps — no database:
//   tagTimes(name)      every tag with its last write (push or move) and version: ONE listing of `_manifests/tags`
//                       (S3: the listing's LastModified and ETag, so 10,000 tags cost 10 LISTs, not 10,000 HEADs)
//   tagTarget(name, t)  the digest a listed tag points at: remembered by the listing's version, so a tag that did not
//                       change since it was last read costs no request
//   summary(name)       tag count, last push, distinct linked bytes, manifests held — for one page of repositories:
//                       listings of tags, layer links and revisions in parallel (S3: 5 LISTs at once, no HEAD per link)
//   catalog()           repository names; exists(name) whether one is there
// Push times are the tag objects' write times (fs mtime, S3 LastModified): a retag is a push too.
//
// Listings are reused for `ttlMs` (the registry sets it from `ui.listingTtl`): pages and filters of one repository
// within that time cost no listing. What this process writes (a push, a delete, a mount, a mirror fill) drops the
// repository's entries at once (ManifestStore/BlobStore `changed`, wired by createStore; the other workers of a
// cluster are told too, registry/cluster.ts); writes by other replicas show within `ttlMs`. Everything here only
// reads.
import { LRUCache } from 'lru-cache';
import { isDigest, type Digest } from '../spec/index.js';
import type { BlobStore } from './blobs.js';
import type { Driver } from './driver.js';
import { listFiles } from './links.js';
import type { ManifestStore } from './manifests.js';
import { paths } from './paths.js';
import { pool } from './pool.js';

export { listFiles } from './links.js';

export interface TagTime {
  tag: string;
  /** Last write of the tag (ms since the epoch). */
  pushed: number;
  /** The tag object's version when the driver's listing gives one (storage/driver.ts ListedFile). */
  version?: string;
}

export interface RepositorySummary {
  name: string;
  tags: number;
  /** Newest tag write (ms), undefined without tags. */
  lastPush?: number;
  /** Bytes of the distinct blobs linked into the repository (configs and layers; manifests not counted). */
  size: number;
  /** Manifests held (revision links), tagged or not. */
  manifests: number;
}

/** A listing in progress or done, shared by concurrent callers, reused until `at + ttlMs`. */
interface Cached<T> {
  at: number;
  value: Promise<T>;
}

export class BrowseStore {
  /** How long a listing may be reused (ms); 0: every call lists (the default outside the registry). */
  ttlMs = 0;
  private readonly tagLists = new LRUCache<string, Cached<TagTime[]>>({ max: 64 });
  private readonly summaries = new LRUCache<string, Cached<RepositorySummary>>({ max: 10_000 });
  private readonly existing = new LRUCache<string, Cached<boolean>>({ max: 10_000 });
  private catalogList?: Cached<string[]>;
  /** `name:tag` → the digest read from the tag object at `version`. */
  private readonly targets = new LRUCache<string, { version: string; digest: Digest }>({ max: 100_000 });

  constructor(
    private readonly driver: Driver,
    private readonly blobs: BlobStore,
    private readonly manifests: ManifestStore,
  ) {}

  /** This process changed `name`: its listings are read again next time (a new repository: the catalog too). */
  forget(name: string): void {
    this.tagLists.delete(name);
    this.summaries.delete(name);
    this.existing.delete(name);
    const catalog = this.catalogList;
    if (catalog)
      void catalog.value.then(
        (names) => {
          if (this.catalogList === catalog && !names.includes(name)) this.catalogList = undefined;
        },
        () => {},
      );
  }

  /** Repository names, lexically sorted (the catalog). */
  catalog(): Promise<string[]> {
    const hit = this.catalogList;
    if (hit && this._fresh(hit)) return hit.value;
    const entry: Cached<string[]> = { at: Date.now(), value: this.manifests.catalog() };
    this.catalogList = entry;
    entry.value.catch(() => {
      if (this.catalogList === entry) this.catalogList = undefined;
    });
    return entry.value;
  }

  /** Whether the repository exists (ManifestStore.repositoryExists, S3: a few LISTs), reused like the listings. */
  exists(name: string): Promise<boolean> {
    return this._cached(this.existing, name, () => this.manifests.repositoryExists(name));
  }

  /** Every tag of `name`, sorted by name; a new array each call (callers sort and filter it). */
  async tagTimes(name: string): Promise<TagTime[]> {
    return [...(await this._cached(this.tagLists, name, () => this._listTags(name)))];
  }

  /** The digest `t` (from tagTimes) points at; undefined when the tag is gone or holds no digest. */
  async tagTarget(name: string, t: TagTime): Promise<Digest | undefined> {
    const key = `${name}:${t.tag}`;
    const hit = this.targets.get(key);
    if (hit && t.version !== undefined && hit.version === t.version) return hit.digest;
    const raw = (await this.driver.get(paths.tag(name, t.tag)))?.toString('utf8');
    if (!raw || !isDigest(raw)) return undefined;
    // Read after the listing: the bytes are as new as `version` or newer; a newer listing shows another version.
    if (t.version !== undefined) this.targets.set(key, { version: t.version, digest: raw });
    return raw;
  }

  summary(name: string): Promise<RepositorySummary> {
    return this._cached(this.summaries, name, () => this._summary(name));
  }

  private async _summary(name: string): Promise<RepositorySummary> {
    const [tags, links, revisions] = await Promise.all([
      this.tagTimes(name),
      this.blobs.linkTimes(name),
      this.manifests.revisionTimes(name),
    ]);
    let size = 0;
    // Blob sizes are cached forever by digest (BlobStore.sizes): a second view of a page costs no stat.
    await pool(links, 16, async (l) => {
      size += (await this.blobs.dataSize(l.digest)) ?? 0;
    });
    const lastPush = tags.reduce<number | undefined>(
      (m, t) => (m === undefined || t.pushed > m ? t.pushed : m),
      undefined,
    );
    return { name, tags: tags.length, lastPush, size, manifests: revisions.length };
  }

  private async _listTags(name: string): Promise<TagTime[]> {
    return (await listFiles(this.driver, paths.tags(name))).map((f) => ({
      tag: f.name,
      pushed: f.modified.getTime(),
      ...(f.version !== undefined ? { version: f.version } : {}),
    }));
  }

  private _fresh(c: Cached<unknown>): boolean {
    return Date.now() - c.at < this.ttlMs;
  }

  /** `load()` shared by concurrent callers and reused within `ttlMs`; a failure is not kept. */
  private _cached<T>(cache: LRUCache<string, Cached<T>>, key: string, load: () => Promise<T>): Promise<T> {
    const hit = cache.get(key);
    if (hit && this._fresh(hit)) return hit.value;
    const entry: Cached<T> = { at: Date.now(), value: load() };
    if (this.ttlMs > 0) cache.set(key, entry);
    entry.value.catch(() => {
      if (cache.get(key) === entry) cache.delete(key);
    });
    return entry.value;
  }
}
