// GC benchmark (issue 8): online GC of a filesystem registry holding 100,000 blobs and 10,000 manifests (half of
// them untagged garbage) while `berth serve` on the same storage answers pushes and pulls. Target: < 60 s.
// Run alone: `node --import tsx bench/gc.ts [--quick]`, or import `gcBench` (a Bench) / `benchGc` from the runner.
// Run `npx tsc -p tsconfig.build.json` first (berth runs dist/).
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { digestOf, type Digest } from '../spec/index.js';
import { paths } from '../storage/paths.js';
import { startBerth } from '../test/support/berth.js';
import { run } from '../test/support/peers.js';
import { raw, sha256, imageManifest, pushBlob, pushManifest } from '../test/support/registry-client.js';
import type { Bench, BenchContext, Row } from './types.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const OCI = 'application/vnd.oci.image.manifest.v1+json';

export interface GcBenchOptions {
  manifests: number;
  blobsPerManifest: number;
  repositories: number;
  log?: (msg: string) => void;
}

export interface GcBenchResult {
  blobs: number;
  manifests: number;
  seconds: number;
  freedBlobs: number;
  freedManifests: number;
  requestsDuringGc: number;
  failedRequests: number;
}

/** Writes the layout directly (paths.ts builds every path): far faster than pushing 100,000 blobs over HTTP. */
async function populate(
  root: string,
  o: GcBenchOptions,
): Promise<Array<{ repo: string; tag: string; digest: Digest; blobs: Digest[] }>> {
  const made = new Set<string>();
  const write = async (rel: string, data: string | Buffer) => {
    const abs = join(root, rel);
    const dir = dirname(abs);
    if (!made.has(dir)) {
      await mkdir(dir, { recursive: true });
      made.add(dir);
    }
    await writeFile(abs, data);
  };
  const tagged: Array<{ repo: string; tag: string; digest: Digest; blobs: Digest[] }> = [];
  const jobs: Array<() => Promise<void>> = [];
  for (let m = 0; m < o.manifests; m++) {
    const repo = `bench/repo-${m % o.repositories}`;
    const blobs = Array.from({ length: o.blobsPerManifest }, () => randomBytes(64));
    const digests = blobs.map((b) => digestOf(b));
    const body = imageManifest(
      { digest: digests[0], size: 64 },
      digests.slice(1).map((d) => ({ digest: d, size: 64 })),
    );
    const digest = digestOf(body);
    const tag = `t${m}`;
    jobs.push(async () => {
      for (const [i, b] of blobs.entries()) {
        await write(paths.blobData(digests[i]), b);
        await write(paths.layerLink(repo, digests[i]), digests[i]);
      }
      await write(paths.blobData(digest), body);
      await write(paths.manifestRevision(repo, digest), OCI);
      if (m % 2 === 0) await write(paths.tag(repo, tag), digest); // odd ones: untagged garbage
      await write(paths.catalogEntry(repo), '');
    });
    if (m % 2 === 0) tagged.push({ repo, tag, digest, blobs: digests });
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < jobs.length) {
        const i = next++;
        await jobs[i]();
        if (i % 1000 === 999) o.log?.(`  populated ${i + 1}/${jobs.length} manifests`);
      }
    }),
  );
  return tagged;
}

export async function benchGc(o: GcBenchOptions): Promise<GcBenchResult> {
  const root = await mkdtemp('/tmp/berth-bench-gc-');
  try {
    o.log?.(`gc bench: writing ${o.manifests * o.blobsPerManifest} blobs and ${o.manifests} manifests under ${root}`);
    const tagged = await populate(root, o);
    const berth = await startBerth(undefined, {
      root,
      config: 'log: { requests: false }\nstorage: { filesystem: { root: ./x, fsync: false } }\n',
    });
    try {
      // Traffic while GC runs: 4 clients pulling tagged images and pushing new ones.
      let stop = false;
      let requests = 0;
      let failed = 0;
      const traffic = Array.from({ length: 4 }, async (_, c) => {
        let n = 0;
        while (!stop) {
          const img = tagged[Math.floor(Math.random() * tagged.length)];
          const m = await raw(berth.url, 'GET', `/v2/${img.repo}/manifests/${img.tag}`);
          const b = await raw(berth.url, 'GET', `/v2/${img.repo}/blobs/${img.blobs[1]}`);
          requests += 2;
          if (m.status !== 200 || sha256(m.body) !== img.digest || b.status !== 200) failed++;
          const layer = await pushBlob(berth.url, `bench/live-${c}`, randomBytes(4096));
          const cfg = await pushBlob(berth.url, `bench/live-${c}`, `{"c":${c},"n":${n}}`);
          const put = await pushManifest(
            berth.url,
            `bench/live-${c}`,
            `n${n++}`,
            imageManifest({ digest: cfg, size: String(`{"c":${c},"n":${n - 1}}`).length }, [
              { digest: layer, size: 4096 },
            ]),
          );
          requests += 3;
          if (put.status !== 201) failed++;
        }
      });
      o.log?.('gc bench: running `berth gc --delete-untagged --grace 0s` while serving');
      const started = process.hrtime.bigint();
      const res = await run(
        process.execPath,
        [BERTH, 'gc', '--root', root, '--delete-untagged', '--grace', '0s', '--json'],
        { timeoutMs: 600_000 },
      );
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      stop = true;
      await Promise.all(traffic);
      if (res.code !== 0) throw new Error(`berth gc failed: ${res.stderr}`);
      const result = JSON.parse(res.stdout) as { blobs: number; manifests: number };
      // Everything tagged still pulls.
      for (const img of tagged.filter((_, i) => i % 50 === 0)) {
        const m = await raw(berth.url, 'GET', `/v2/${img.repo}/manifests/${img.tag}`);
        if (m.status !== 200) failed++;
      }
      return {
        blobs: o.manifests * o.blobsPerManifest,
        manifests: o.manifests,
        seconds,
        freedBlobs: result.blobs,
        freedManifests: result.manifests,
        requestsDuringGc: requests,
        failedRequests: failed,
      };
    } finally {
      await berth.stop();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

export const gcBench: Bench = {
  name: 'gc',
  async run(ctx: BenchContext): Promise<Row[]> {
    const manifests = ctx.quick ? 1_000 : 10_000;
    const r = await benchGc({ manifests, blobsPerManifest: 10, repositories: 100, log: ctx.log });
    return [
      {
        name: `GC ${r.blobs.toLocaleString('en')} blobs, ${r.manifests.toLocaleString('en')} manifests (fs, while serving)`,
        unit: 's',
        berth: r.seconds,
        better: 'lower',
        target: ctx.quick ? undefined : '< 60 s',
        met: ctx.quick ? undefined : r.seconds < 60,
        note: `freed ${r.freedBlobs} blobs, ${r.freedManifests} manifests; ${r.requestsDuringGc} requests during GC, ${r.failedRequests} failed`,
      },
    ];
  },
};

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const quick = process.argv.includes('--quick');
  const r = await benchGc({
    manifests: quick ? 1_000 : 10_000,
    blobsPerManifest: 10,
    repositories: 100,
    log: (m) => console.error(m),
  });
  console.log(JSON.stringify(r));
}
