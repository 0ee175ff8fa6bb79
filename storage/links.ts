// Listings of small objects: a directory's child objects with their metadata (listFiles), and scans of link
// directories (`<root>/<alg>/<hex>`): a repository's layer links and manifest revisions.
import { parseDigest, type Digest } from '../spec/index.js';
import type { Driver, ListedFile } from './driver.js';
import { pool } from './pool.js';

/** Direct child objects of `prefix` with size and mtime: the driver's listFiles, else list + stat (bounded). */
export async function listFiles(driver: Driver, prefix: string): Promise<ListedFile[]> {
  if (driver.listFiles) return driver.listFiles(prefix);
  const out: ListedFile[] = [];
  await pool(await driver.list(prefix), 32, async (name) => {
    const info = await driver.stat(`${prefix}/${name}`).catch(() => undefined);
    if (info) out.push({ name, size: info.size, modified: info.modified, version: info.version });
  });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The digest algorithms a link directory can hold (spec/digest.ts); entries under any other name are no links. */
const ALGORITHMS = ['sha256', 'sha512'] as const;

/**
 * Link entries under `<root>/<alg>/<hex>` with their mtimes (entries that are no digest are skipped): one listing
 * per algorithm, in parallel, with the times the listing gives (S3: a LIST per 1,000 links, no HEAD per link).
 */
export async function linkTimes(driver: Driver, root: string): Promise<Array<{ digest: Digest; modified: Date }>> {
  const lists = await Promise.all(
    ALGORITHMS.map(async (alg) =>
      (await listFiles(driver, `${root}/${alg}`)).flatMap((f) => {
        try {
          return [{ digest: parseDigest(`${alg}:${f.name}`).digest, modified: f.modified }];
        } catch {
          return [];
        }
      }),
    ),
  );
  return lists.flat();
}
