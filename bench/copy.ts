// Copy benchmark (issue 3): a 1 GiB, 10-layer image registry → registry with berth, `skopeo copy` and
// `crane copy` in the same run, plus berth's no-op re-copy (everything already there). Two distribution 2.8.2
// instances are source and destination so no tool copies within one registry (no mounts).
// Run alone: `node --import tsx bench/copy.ts [--mib 1024] [--layers 10]`; or import benchCopy from the runner.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { Digester, digestOf } from '../spec/digest.js';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST } from '../spec/media-types.js';
import { startDistribution, type Distribution } from '../test/support/distribution.js';
import { findExecutable, run } from '../test/support/peers.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

export interface CopyBenchResult {
  tool: string;
  seconds: number;
  ok: boolean;
  note?: string;
}

/** Writes an OCI layout holding one image of `layers` random (incompressible) layers totalling `mib` MiB. */
export async function makeImage(dir: string, mib: number, layers: number) {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const per = Math.floor((mib * 1024 * 1024) / layers);
  const descs = [];
  for (let i = 0; i < layers; i++) {
    const tmp = join(dir, `layer-${i}.tmp`);
    const out = createWriteStream(tmp);
    const d = new Digester();
    for (let left = per; left > 0; ) {
      const chunk = randomBytes(Math.min(left, 4 << 20));
      d.update(chunk);
      left -= chunk.length;
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    const digest = d.digest();
    await rename(tmp, join(dir, 'blobs', 'sha256', digest.slice(7)));
    descs.push({ mediaType: OCI_LAYER_GZIP, digest, size: per });
  }
  const blob = async (bytes: Buffer) => {
    const digest = digestOf(bytes);
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
    return { digest, size: bytes.length };
  };
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: descs.map((d) => d.digest) },
    }),
  );
  const cfg = await blob(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, ...cfg },
      layers: descs,
    }),
  );
  const m = await blob(manifest);
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, ...m, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
    }),
  );
  return m.digest;
}

const TIME = '/usr/bin/time';

/** Runs one tool; with GNU time installed the note carries its CPU (user + sys) and peak RSS. */
async function timed(
  tool: string,
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CopyBenchResult> {
  const measure = findExecutable(TIME);
  const argv = measure ? ['-f', 'BENCH-TIME %U %S %M', cmd, ...args] : args;
  const t0 = process.hrtime.bigint();
  const r = await run(measure ?? cmd, argv, { env: { CI: 'true', ...env }, timeoutMs: 900_000 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const m = /BENCH-TIME (\S+) (\S+) (\d+)/.exec(r.stderr);
  const usage = m
    ? `cpu ${(Number(m[1]) + Number(m[2])).toFixed(2)} s (user ${m[1]}), max RSS ${Math.round(Number(m[3]) / 1024)} MB`
    : undefined;
  const err = r.stderr
    .replace(/BENCH-TIME.*\n?/, '')
    .trim()
    .split('\n')
    .pop();
  return { tool, seconds, ok: r.code === 0, note: r.code === 0 ? usage : err };
}

export async function benchCopy(
  opts: { mib?: number; layers?: number; rounds?: number } = {},
): Promise<CopyBenchResult[]> {
  const mib = opts.mib ?? 1024;
  const rounds = opts.rounds ?? 3;
  const layers = opts.layers ?? 10;
  const work = await mkdtemp('/tmp/berth-bench-copy-');
  let src: Distribution | undefined;
  let dst: Distribution | undefined;
  const results: CopyBenchResult[] = [];
  try {
    [src, dst] = await Promise.all([startDistribution(), startDistribution()]);
    await makeImage(join(work, 'layout'), mib, layers);
    const seed = await timed('seed (berth push layout)', process.execPath, [
      BERTH,
      'push',
      join(work, 'layout:v1'),
      `${src.host}/bench/img:v1`,
    ]);
    if (!seed.ok) throw new Error(`seeding failed: ${seed.note}`);
    const from = `${src.host}/bench/img:v1`;
    const home = join(work, 'home');
    await mkdir(join(home, '.config', 'containers'), { recursive: true });
    await writeFile(
      join(home, '.config', 'containers', 'policy.json'),
      JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }),
    );
    const skopeo = findExecutable('skopeo');
    const crane = findExecutable('crane');
    // Rounds rotate the order of the tools (whoever runs right after a 1 GiB write pays for its write-back), each
    // run starts after `sync`, and the median is reported.
    const samples = new Map<string, CopyBenchResult[]>();
    const add = (r: CopyBenchResult) => samples.set(r.tool, [...(samples.get(r.tool) ?? []), r]);
    // Each measurement gets a fresh destination and skopeo a fresh blob-info cache, so nothing is mounted or skipped.
    const fresh = async (fn: (to: string) => Promise<CopyBenchResult>) => {
      const d = await startDistribution();
      try {
        await run('sync', []);
        add(await fn(`${d.host}/bench/img:v1`));
      } finally {
        await d.stop();
      }
    };
    const tools: (() => Promise<void>)[] = [
      () => fresh((to) => timed('berth copy', process.execPath, [BERTH, 'copy', from, to])),
    ];
    if (skopeo) {
      tools.push(async () => {
        await rm(join(home, '.local'), { recursive: true, force: true });
        await fresh((to) =>
          timed(
            'skopeo copy',
            skopeo,
            ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${from}`, `docker://${to}`],
            { HOME: home },
          ),
        );
      });
    }
    if (crane) tools.push(() => fresh((to) => timed('crane copy', crane, ['copy', '--insecure', from, to])));
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < tools.length; i++) await tools[(round + i) % tools.length]();
    }
    // The no-op re-copy needs a destination that already has everything.
    await run(process.execPath, [BERTH, 'copy', from, `${dst.host}/berth0/img:v1`], { env: { CI: 'true' } });
    for (const [tool, list] of samples) {
      const sorted = list.map((r) => r.seconds).sort((a, b) => a - b);
      const median = list.find((r) => r.seconds === sorted[Math.floor(sorted.length / 2)])!;
      results.push({
        tool: `${tool} (median of ${list.length})`,
        seconds: median.seconds,
        ok: list.every((r) => r.ok),
        note: list.find((r) => !r.ok)?.note ?? median.note,
      });
    }
    if (!skopeo) results.push({ tool: 'skopeo copy', seconds: NaN, ok: false, note: 'not installed' });
    if (!crane) results.push({ tool: 'crane copy', seconds: NaN, ok: false, note: 'not installed' });
    results.push(
      await timed('berth copy (no-op re-copy, whole CLI run)', process.execPath, [
        BERTH,
        'copy',
        from,
        `${dst.host}/berth0/img:v1`,
      ]),
    );
    const noop = await run(process.execPath, [BERTH, 'copy', '--json', from, `${dst.host}/berth0/img:v1`], {
      env: { CI: 'true' },
    });
    if (noop.code === 0)
      results.push({
        tool: 'berth copy (no-op, in-process copy time)',
        seconds: JSON.parse(noop.stdout).seconds,
        ok: JSON.parse(noop.stdout).skipped === true,
      });
  } finally {
    await Promise.all([src?.stop(), dst?.stop()]);
    await rm(work, { recursive: true, force: true });
  }
  return results;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const mib = arg('--mib') ?? 1024;
  const layers = arg('--layers') ?? 10;
  const results = await benchCopy({ mib, layers, rounds: arg('--rounds') });
  console.log(`copy of a ${mib} MiB, ${layers}-layer image, distribution → distribution`);
  for (const r of results)
    console.log(
      `${r.tool.padEnd(45)} ${Number.isNaN(r.seconds) ? '   -   ' : `${r.seconds.toFixed(2).padStart(7)} s`} ${r.ok ? (r.note ?? '') : `FAILED ${r.note ?? ''}`}`,
    );
}
