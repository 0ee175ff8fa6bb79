// The scrub behind `berth fsck`: re-hashes every stored blob (layers, configs and manifests alike) and moves any whose
// bytes do not match its digest to quarantine/ (paths.ts), so that nothing is ever served, mounted or reused under a
// digest that does not name it. A quarantined blob is simply missing afterwards: repositories that link it answer
// BLOB_UNKNOWN, and the next honest push of that content stores it again (a publish writes data that is missing).
//
// Safe while a registry serves the same storage: blobs are immutable once published (drivers publish atomically and
// only verified bytes), so a mismatch is damage — a bug of an older berth (issue 14), a disk, or a hand edit.
import { Digester, isDigest, type Algorithm, type Digest } from '../spec/index.js';
import type { Driver } from './driver.js';
import { NotFoundError } from './driver.js';
import { paths } from './paths.js';
import { pool } from './pool.js';

export interface ScrubOptions {
  /** Report only; move nothing. */
  dryRun?: boolean;
  /** Blobs hashed at once (default 4). */
  concurrency?: number;
  /** Called for every damaged blob found (after it was quarantined, unless dry). */
  onBad?: (bad: DamagedBlob) => void;
}

export interface DamagedBlob {
  digest: Digest;
  /** What the stored bytes hash to. */
  actual: Digest;
  size: number;
  /** Where the bytes now are (undefined in a dry run). */
  quarantinedAt?: string;
}

export interface ScrubResult {
  /** Blobs re-hashed. */
  checked: number;
  bytes: number;
  bad: DamagedBlob[];
  quarantined: number;
  ms: number;
}

export async function scrubBlobs(driver: Driver, opts: ScrubOptions = {}): Promise<ScrubResult> {
  const started = Date.now();
  const result: ScrubResult = { checked: 0, bytes: 0, bad: [], quarantined: 0, ms: 0 };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (const alg of await driver.list(paths.blobsRoot)) {
    for (const hh of await driver.list(`${paths.blobsRoot}/${alg}`)) {
      const hexes = await driver.list(`${paths.blobsRoot}/${alg}/${hh}`);
      await pool(hexes, opts.concurrency ?? 4, async (hex) => {
        const digest = `${alg}:${hex}`;
        if (!isDigest(digest)) return; // not a name berth writes; GC leaves it alone as well
        const checked = await _hash(driver, digest, alg as Algorithm);
        if (!checked) return; // removed (GC) while we looked
        result.checked++;
        result.bytes += checked.size;
        if (checked.actual === digest) return;
        const bad: DamagedBlob = { digest, actual: checked.actual, size: checked.size };
        if (!opts.dryRun) {
          bad.quarantinedAt = paths.quarantined(digest, stamp);
          await driver.move(paths.blobData(digest), bad.quarantinedAt);
          result.quarantined++;
        }
        result.bad.push(bad);
        opts.onBad?.(bad);
      });
    }
  }
  result.bad.sort((a, b) => (a.digest < b.digest ? -1 : 1));
  result.ms = Date.now() - started;
  return result;
}

async function _hash(
  driver: Driver,
  digest: Digest,
  algorithm: Algorithm,
): Promise<{ actual: Digest; size: number } | undefined> {
  const digester = new Digester(algorithm);
  try {
    for await (const chunk of await driver.read(paths.blobData(digest))) digester.update(chunk as Buffer);
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
  return { actual: digester.digest(), size: digester.size };
}
