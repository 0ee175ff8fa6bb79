// Read-only views for the web UI and its JSON API (registry/ui), built from what storage already keeps — no database:
//   tagTimes(name)   every tag with its last write (push or move): ONE listing of `_manifests/tags` (S3: the
//                    listing's LastModified, so 10,000 tags cost 10 LISTs, not 10,000 HEADs)
//   summary(name)    tag count, last push, distinct linked bytes, manifests held — for one page of repositories
// Push times are the tag objects' write times (fs mtime, S3 LastModified): a retag is a push too.
import type { Digest } from '../spec/index.js';
import type { BlobStore } from './blobs.js';
import type { Driver, ListedFile } from './driver.js';
import type { ManifestStore } from './manifests.js';
import { paths } from './paths.js';
import { pool } from './pool.js';

/** Direct child objects of `prefix` with size and mtime: the driver's listFiles, else list + stat (bounded). */
export async function listFiles(driver: Driver, prefix: string): Promise<ListedFile[]> {
  if (driver.listFiles) return driver.listFiles(prefix);
  const out: ListedFile[] = [];
  await pool(await driver.list(prefix), 32, async (name) => {
    const info = await driver.stat(`${prefix}/${name}`).catch(() => undefined);
    if (info) out.push({ name, size: info.size, modified: info.modified });
  });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export interface TagTime {
  tag: string;
  /** Last write of the tag (ms since the epoch). */
  pushed: number;
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

export class BrowseStore {
  constructor(
    private readonly driver: Driver,
    private readonly blobs: BlobStore,
    private readonly manifests: ManifestStore,
  ) {}

  /** Repository names, lexically sorted (the catalog). */
  catalog(): Promise<string[]> {
    return this.manifests.catalog();
  }

  async tagTimes(name: string): Promise<TagTime[]> {
    return (await listFiles(this.driver, paths.tags(name))).map((f) => ({ tag: f.name, pushed: f.modified.getTime() }));
  }

  async summary(name: string): Promise<RepositorySummary> {
    const [tags, digests, revisions] = await Promise.all([
      this.tagTimes(name),
      this.blobs.linkedDigests(name),
      this._revisionCount(name),
    ]);
    let size = 0;
    // Blob sizes are cached forever by digest (BlobStore.sizes): a second view of a page costs no stat.
    await pool(digests, 16, async (d: Digest) => {
      size += (await this.blobs.dataSize(d)) ?? 0;
    });
    const lastPush = tags.reduce<number | undefined>(
      (m, t) => (m === undefined || t.pushed > m ? t.pushed : m),
      undefined,
    );
    return { name, tags: tags.length, lastPush, size, manifests: revisions };
  }

  private async _revisionCount(name: string): Promise<number> {
    let n = 0;
    for (const alg of await this.driver.list(paths.manifestRevisions(name)))
      n += (await this.driver.list(`${paths.manifestRevisions(name)}/${alg}`)).length;
    return n;
  }
}
