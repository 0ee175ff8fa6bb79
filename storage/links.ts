// Scans of link directories (`<root>/<alg>/<hex>`): a repository's layer links and manifest revisions.
import { parseDigest, type Digest } from '../spec/index.js';
import type { Driver } from './driver.js';

/** Link entries under `<root>/<alg>/<hex>` with their mtimes (entries that are no digest are skipped). */
export async function linkTimes(
  driver: Driver,
  root: string,
  link: (d: Digest) => string,
): Promise<Array<{ digest: Digest; modified: Date }>> {
  const out: Array<{ digest: Digest; modified: Date }> = [];
  for (const alg of await driver.list(root)) {
    for (const hex of await driver.list(`${root}/${alg}`)) {
      let digest: Digest;
      try {
        digest = parseDigest(`${alg}:${hex}`).digest;
      } catch {
        continue;
      }
      const info = await driver.stat(link(digest));
      if (info) out.push({ digest, modified: info.modified });
    }
  }
  return out;
}
