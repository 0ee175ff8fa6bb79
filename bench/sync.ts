// Sync benchmark (issue 21): N tags (distinct images, one random layer each, T bytes in all) in distribution 2.8.2,
// copied to an empty berth by `berth sync`, by `skopeo sync` and by regctl (`regctl image copy` per tag, as regctl
// has no repository sync) — each into a fresh berth storage — then berth's no-op re-sync.
// Default 1,000 tags / 5 GB (the issue's figure); `--quick` 100 tags / 512 MiB; BENCH_SYNC_TAGS and
// BENCH_SYNC_MIB override both. Run alone: `node --import tsx bench/sync.ts`.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pLimit from 'p-limit';
import { Client } from '../client/remote.js';
import { Digester } from '../spec/digest.js';
import { OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST } from '../spec/media-types.js';
import { startBerth } from '../test/support/berth.js';
import { startDistribution } from '../test/support/distribution.js';
import { findExecutable, run } from '../test/support/peers.js';
import type { Bench, BenchContext, Row } from './types.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const TIME = '/usr/bin/time';

/** Pushes `tags` distinct one-layer images of `bytes / tags` random bytes each to `host/bench/app`. */
async function seed(work: string, host: string, tags: number, bytes: number): Promise<void> {
  const repo = new Client({ retries: 3 }).repository(`${host}/bench/app`, { push: true });
  const per = Math.max(1, Math.floor(bytes / tags));
  const limit = pLimit(4);
  await Promise.all(
    Array.from({ length: tags }, (_, i) =>
      limit(async () => {
        const file = join(work, `layer-${i}`);
        const out = createWriteStream(file);
        const d = new Digester();
        for (let left = per; left > 0; ) {
          const chunk = randomBytes(Math.min(left, 1 << 20));
          d.update(chunk);
          left -= chunk.length;
          if (!out.write(chunk)) await once(out, 'drain');
        }
        out.end();
        await once(out, 'finish');
        const layer = { mediaType: OCI_LAYER_GZIP, digest: d.digest(), size: per };
        await repo.pushBlob(layer, (offset) => createReadStream(file, { start: offset }));
        await rm(file);
        const config = await repo.pushBytes(
          Buffer.from(
            JSON.stringify({
              architecture: 'amd64',
              os: 'linux',
              rootfs: { type: 'layers', diff_ids: [layer.digest] },
            }),
          ),
        );
        const manifest = {
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
          layers: [layer],
        };
        await repo.putManifest(`1.0.${i}`, Buffer.from(JSON.stringify(manifest)), OCI_MANIFEST);
      }),
    ),
  );
}

async function timed(cmd: string, args: string[], env: Record<string, string> = {}) {
  const measure = findExecutable(TIME);
  const argv = measure ? ['-f', 'BENCH-TIME %U %S %M', cmd, ...args] : args;
  const t0 = process.hrtime.bigint();
  const r = await run(measure ?? cmd, argv, { env: { CI: 'true', ...env }, timeoutMs: 3_600_000 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const m = /BENCH-TIME (\S+) (\S+) (\d+)/.exec(r.stderr);
  const note = m
    ? `cpu ${(Number(m[1]) + Number(m[2])).toFixed(1)} s, max RSS ${Math.round(Number(m[3]) / 1024)} MB`
    : undefined;
  return {
    seconds: r.code === 0 ? seconds : NaN,
    note: r.code === 0 ? note : `FAILED: ${r.stderr.trim().split('\n').pop()}`,
  };
}

export async function benchSync(ctx: BenchContext): Promise<Row[]> {
  const tags = Number(process.env.BENCH_SYNC_TAGS ?? (ctx.quick ? 100 : 1000));
  const mib = Number(process.env.BENCH_SYNC_MIB ?? (ctx.quick ? 512 : 5000));
  const what = `${tags} tags / ${mib} MiB`;
  const work = await mkdtemp('/tmp/berth-bench-sync-');
  const src = await startDistribution({ logLevel: 'warn' });
  const rows: Row[] = [];
  try {
    ctx.log(`seeding ${what} into distribution…`);
    await seed(work, src.host, tags, mib << 20);
    const home = join(work, 'home');
    await mkdir(join(home, '.config', 'containers'), { recursive: true });
    await writeFile(
      join(home, '.config', 'containers', 'policy.json'),
      JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }),
    );
    // berth sync straight into a fresh storage root (what `berth serve` does on its schedule).
    const root = join(work, 'berth-sync');
    const config = join(work, 'sync.yaml');
    await writeFile(
      config,
      JSON.stringify({
        log: { level: 'error' },
        storage: { filesystem: { root } },
        sync: [
          { name: 'bench', url: src.url, allowPrivateNetworks: true, repositories: ['bench/app'], concurrency: 8 },
        ],
      }),
    );
    await run('sync', []);
    ctx.log('berth sync…');
    const berth = await timed(process.execPath, [BERTH, 'sync', '-c', config]);
    const peer = async (name: string, args: (dst: string) => [string, string[]]) => {
      const dst = await startBerth(undefined, {});
      try {
        await run('sync', []);
        ctx.log(`${name}…`);
        const [cmd, argv] = args(dst.host);
        return await timed(cmd, argv, { HOME: home });
      } finally {
        await dst.stop();
        await rm(dst.root, { recursive: true, force: true });
      }
    };
    const skopeo = findExecutable('skopeo');
    const regctl = findExecutable('regctl');
    const sk = skopeo
      ? await peer('skopeo sync', (dst) => [
          skopeo,
          [
            'sync',
            '--src',
            'docker',
            '--dest',
            'docker',
            '--src-tls-verify=false',
            '--dest-tls-verify=false',
            `${src.host}/bench/app`,
            `${dst}/bench`,
          ],
        ])
      : { seconds: NaN, note: 'skopeo not installed' };
    const rc = regctl
      ? await peer('regctl image copy per tag', (dst) => [
          'sh',
          [
            '-c',
            `set -e; ${regctl} registry set --tls disabled ${src.host}; ${regctl} registry set --tls disabled ${dst}; ` +
              `for t in $(${regctl} tag ls ${src.host}/bench/app); do ${regctl} image copy ${src.host}/bench/app:$t ${dst}/bench/app:$t >/dev/null; done`,
          ],
        ])
      : { seconds: NaN, note: 'regctl not installed' };
    rows.push(
      {
        name: `sync ${what}, distribution → empty berth`,
        unit: 's',
        berth: berth.seconds,
        peer: sk.seconds,
        peerName: 'skopeo sync',
        better: 'lower',
        target: 'faster than both',
        met: berth.seconds < sk.seconds && berth.seconds < rc.seconds,
        note: `berth ${berth.note ?? ''}; skopeo ${sk.note ?? ''}`,
      },
      {
        name: `sync ${what}, distribution → empty berth`,
        unit: 's',
        berth: berth.seconds,
        peer: rc.seconds,
        peerName: 'regctl image copy (per tag)',
        better: 'lower',
        note: rc.note,
      },
    );
    const again = await timed(process.execPath, [BERTH, 'sync', '-c', config]);
    rows.push({
      name: `re-sync ${what}, nothing changed`,
      unit: 's',
      berth: again.seconds,
      better: 'lower',
      note: again.note,
    });
  } finally {
    await src.stop();
    await rm(work, { recursive: true, force: true });
  }
  return rows;
}

export const syncBench: Bench = { name: 'sync', run: benchSync };

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rows = await benchSync({ quick: process.argv.includes('--quick'), rounds: 1, log: (m) => console.error(m) });
  for (const r of rows)
    console.log(
      `${r.name.padEnd(50)} berth ${r.berth.toFixed(2)} s${r.peerName ? `  ${r.peerName} ${r.peer?.toFixed(2)} s` : ''}  ${r.note ?? ''}`,
    );
}
