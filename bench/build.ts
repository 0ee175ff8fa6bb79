// Build benchmark (issue 4): a 20,000-file / 200 MB tree into 3 layers with berth (gzip, zstd), buildah
// (`from scratch` / `copy` / `commit` per layer with vfs storage and its own root, then `push oci:` so the output is
// the same compressed OCI layout) and umoci (`new` / `unpack` / copy / `repack` per layer), plus berth's warm
// rebuild after changing one file (only that file's layer is rebuilt), to an OCI layout and pushed to a local berth.
// berth runs as `node bin/berth.js` (dist/, built by the runner), as a user runs it. Cold builds and the warm
// rebuild are medians of several rounds; buildah and umoci run once (they take far longer).
// Run alone: `node --import tsx bench/build.ts [--files 20000] [--mib 200]`; or use buildBench from the runner.
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findExecutable, run, type RunResult } from '../test/support/peers.js';
import { startBerth } from '../test/support/berth.js';
import { median, type Bench, type Row } from './types.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

export interface BuildBenchResult {
  tool: string;
  seconds: number;
  ok: boolean;
  note?: string;
}

async function _timed(
  tool: string,
  steps: () => Promise<RunResult[] | RunResult>,
  note?: string,
): Promise<BuildBenchResult> {
  const t0 = process.hrtime.bigint();
  const results = [await steps()].flat();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const failed = results.find((r) => r.code !== 0);
  return { tool, seconds, ok: !failed, note: failed ? `${failed.command}: ${failed.stderr.slice(0, 300)}` : note };
}

/** Writes `files` files of hex text (compresses ~2:1, like source and assets) totalling ~`mib` MiB in a/, b/, c/. */
async function _makeTree(dir: string, files: number, mib: number): Promise<void> {
  const size = Math.floor((mib * 1024 * 1024) / files);
  for (let i = 0; i < files; i++) {
    const part = ['a', 'b', 'c'][i % 3];
    const sub = join(dir, part, `d${Math.floor(i / 300)}`);
    if (i % 300 < 3) await mkdir(sub, { recursive: true });
    await writeFile(
      join(sub, `f${i}.txt`),
      randomBytes(Math.ceil(size / 2))
        .toString('hex')
        .slice(0, size),
    );
  }
}

function _spec(compression: string): string {
  const layer = (n: string) => `  - name: ${n}\n    files:\n      - { src: "${n}/**", dest: /data/${n}/ }\n`;
  return `apiVersion: berth/v1\nkind: Image\nplatforms: [linux/amd64]\ncompression: ${compression}\nlayers:\n${layer('a')}${layer('b')}${layer('c')}`;
}

function _berth(args: string[], cwd: string): Promise<RunResult> {
  return run(process.execPath, [BERTH, ...args], { cwd, timeoutMs: 600_000 });
}

export async function benchBuild(
  opts: { files?: number; mib?: number; rounds?: number } = {},
): Promise<BuildBenchResult[]> {
  const files = opts.files ?? 20_000;
  const mib = opts.mib ?? 200;
  const rounds = Math.max(1, opts.rounds ?? 3);
  const work = await mkdtemp(join(tmpdir(), 'berth-bench-build-'));
  const results: BuildBenchResult[] = [];
  // The median of `rounds` timed runs; `prepare` runs untimed before each.
  const medianOf = async (tool: string, once: () => Promise<RunResult>, prepare?: () => Promise<void>) => {
    const runs: BuildBenchResult[] = [];
    for (let i = 0; i < rounds; i++) {
      await prepare?.();
      runs.push(await _timed(tool, once));
    }
    const bad = runs.find((r) => !r.ok);
    return (
      bad ?? {
        tool,
        ok: true,
        seconds: median(runs.map((r) => r.seconds)),
        note: `median of ${rounds}: ${runs.map((r) => r.seconds.toFixed(2)).join(', ')} s`,
      }
    );
  };
  try {
    const ctx = join(work, 'ctx');
    await _makeTree(ctx, files, mib);
    await writeFile(join(ctx, 'gzip.yaml'), _spec('gzip'));
    await writeFile(join(ctx, 'zstd.yaml'), _spec('zstd'));

    const cache = join(work, 'cache');
    // A cold build: no cache, no earlier output.
    const cold = (c: 'gzip' | 'zstd') =>
      medianOf(
        `berth build (${c}, cold cache)`,
        () =>
          _berth(
            ['build', '-f', `${c}.yaml`, '--cache', join(work, `cold-${c}`), '--oci-layout', join(work, `berth-${c}`)],
            ctx,
          ),
        async () => {
          await rm(join(work, `cold-${c}`), { recursive: true, force: true });
          await rm(join(work, `berth-${c}`), { recursive: true, force: true });
        },
      );
    results.push(await cold('gzip'));
    results.push(await cold('zstd'));
    // Warm the cache the rebuilds use.
    await _berth(['build', '-f', 'gzip.yaml', '--cache', cache, '--oci-layout', join(work, 'berth-gzip')], ctx);
    let rebuilt = '';
    let edit = 0;
    const warm = await medianOf(
      'berth rebuild, one file changed (gzip, warm cache)',
      async () => {
        const r = await _berth(
          ['build', '-f', 'gzip.yaml', '--cache', cache, '--oci-layout', join(work, 'berth-gzip')],
          ctx,
        );
        rebuilt = r.stderr
          .split('\n')
          .filter((l) => / layer /.test(l) && !/\(cached\)/.test(l))
          .map((l) => l.replace(/^.* layer (\S+):.*$/, '$1'))
          .join(',');
        return r;
      },
      () => writeFile(join(ctx, 'b', 'd0', 'f1.txt'), `changed ${++edit}\n`),
    );
    warm.note = `layers rebuilt: ${rebuilt || 'none'}; ${warm.note ?? ''}`;
    results.push(warm);
    results.push(
      await medianOf('berth no-op rebuild (warm cache)', () =>
        _berth(['build', '-f', 'gzip.yaml', '--cache', cache, '--oci-layout', join(work, 'berth-gzip')], ctx),
      ),
    );
    // The same one-file rebuild pushed to a local `berth serve` (filesystem storage): the unchanged layers are
    // found by HEAD, only the changed one (with the new config, manifest and SBOM) is uploaded.
    const registry = await startBerth(undefined, { root: join(work, 'registry') });
    try {
      const ref = `${registry.host}/bench/app:latest`;
      const push = () => _berth(['build', '-f', 'gzip.yaml', '--cache', cache, '--push', ref], ctx);
      const first = await push(); // untimed: the first push uploads every layer
      if (first.code !== 0) throw new Error(`berth build --push: ${first.stderr}`);
      results.push(
        await medianOf('berth rebuild + push, one file changed (gzip, warm cache)', push, () =>
          writeFile(join(ctx, 'b', 'd0', 'f1.txt'), `changed ${++edit}\n`),
        ),
      );
    } finally {
      await registry.stop();
    }
    await writeFile(join(ctx, 'b', 'd0', 'f1.txt'), 'changed again\n');

    if (findExecutable('buildah')) {
      const root = join(work, 'buildah');
      const b = (args: string[]) =>
        run(
          'buildah',
          ['--root', join(root, 'root'), '--runroot', join(root, 'run'), '--storage-driver', 'vfs', ...args],
          { cwd: ctx, timeoutMs: 900_000 },
        );
      results.push(
        await _timed('buildah from/copy/commit ×3 + push oci: (gzip)', async () => {
          const out: RunResult[] = [];
          let from = 'scratch';
          for (const part of ['a', 'b', 'c']) {
            const c = await b(['from', from]);
            out.push(c);
            if (c.code !== 0) return out;
            const id = c.stdout.trim();
            out.push(await b(['copy', id, part, `/data/${part}/`]));
            from = `bench-${part}`;
            out.push(await b(['commit', '--quiet', id, from]));
            out.push(await b(['rm', id]));
          }
          out.push(await b(['push', '--quiet', from, `oci:${join(work, 'buildah-out')}:latest`]));
          return out;
        }),
      );
    } else {
      results.push({ tool: 'buildah', seconds: NaN, ok: false, note: 'not installed' });
    }

    if (findExecutable('umoci')) {
      const layout = join(work, 'umoci');
      results.push(
        await _timed('umoci new/unpack/repack ×3 (gzip)', async () => {
          const out: RunResult[] = [];
          out.push(await run('umoci', ['init', '--layout', layout]));
          out.push(await run('umoci', ['new', '--image', `${layout}:t`]));
          for (const part of ['a', 'b', 'c']) {
            const bundle = join(work, `bundle-${part}`);
            out.push(
              await run('umoci', ['unpack', '--rootless', '--image', `${layout}:t`, bundle], { timeoutMs: 900_000 }),
            );
            await mkdir(join(bundle, 'rootfs', 'data'), { recursive: true });
            await cp(join(ctx, part), join(bundle, 'rootfs', 'data', part), { recursive: true });
            out.push(await run('umoci', ['repack', '--image', `${layout}:t`, bundle], { timeoutMs: 900_000 }));
            await rm(bundle, { recursive: true, force: true });
          }
          return out;
        }),
      );
    } else {
      results.push({ tool: 'umoci', seconds: NaN, ok: false, note: 'not installed' });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return results;
}

/**
 * Writes `files` files totalling ~`mib` MiB under app/: every third is random bytes (incompressible), the others hex
 * text (~2:1): issue 18's builder case, one layer near the compressor's limit.
 */
async function _makeMixedTree(dir: string, files: number, mib: number): Promise<void> {
  const size = Math.floor((mib * 1024 * 1024) / files);
  for (let i = 0; i < files; i++) {
    const sub = join(dir, 'app', `d${Math.floor(i / 300)}`);
    if (i % 300 === 0) await mkdir(sub, { recursive: true });
    const data =
      i % 3 === 2
        ? randomBytes(size)
        : randomBytes(Math.ceil(size / 2))
            .toString('hex')
            .slice(0, size);
    await writeFile(join(sub, `f${i}.bin`), data);
  }
}

/** A command run under GNU time: its result and the CPU seconds (user + sys) it and its children used. */
async function _cpuRun(cmd: string, args: string[], cwd: string): Promise<RunResult & { cpu: number }> {
  const out = join(cwd, '..', `time-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const r = await run('/usr/bin/time', ['-q', '-f', '%U %S', '-o', out, cmd, ...args], { cwd, timeoutMs: 900_000 });
  const [user, sys] = (await readFile(out, 'utf8').catch(() => 'NaN NaN')).trim().split(/\s+/).map(Number);
  await rm(out, { force: true });
  return { ...r, cpu: user + sys };
}

/**
 * One layer, cold cache: berth gzip against buildah (from scratch / copy / commit / push oci:, the same compressed
 * OCI layout) and berth zstd against the compressor alone, `tar cf - app | zstd -3`, on the same tree. Medians of
 * `rounds`, the tools interleaved so a busy machine slows them alike; CPU seconds (user + sys) beside wall time.
 */
export async function benchOneLayer(
  opts: { files?: number; mib?: number; rounds?: number } = {},
): Promise<(BuildBenchResult & { cpu?: number })[]> {
  const files = opts.files ?? 20_000;
  const mib = opts.mib ?? 192;
  const rounds = Math.max(1, opts.rounds ?? 3);
  const work = await mkdtemp(join(tmpdir(), 'berth-bench-layer-'));
  const spec = (c: string) =>
    `apiVersion: berth/v1\nkind: Image\nplatforms: [linux/amd64]\ncompression: ${c}\nlayers:\n` +
    '  - name: app\n    files:\n      - { src: "app/**", dest: /app/ }\n';
  try {
    const ctx = join(work, 'ctx');
    await _makeMixedTree(ctx, files, mib);
    await writeFile(join(ctx, 'gzip.yaml'), spec('gzip'));
    await writeFile(join(ctx, 'zstd.yaml'), spec('zstd'));
    const store = [
      ...['--root', join(work, 'buildah', 'root'), '--runroot', join(work, 'buildah', 'run')],
      ...['--storage-driver', 'vfs'],
    ];
    const berth = (c: string) => [
      [
        process.execPath,
        BERTH,
        'build',
        '-f',
        `${c}.yaml`,
        '--cache',
        join(work, 'cache'),
        '--oci-layout',
        join(work, 'out'),
      ],
    ];
    // buildah's steps, the container id read from the first one's output.
    const buildah = async (): Promise<(RunResult & { cpu: number })[]> => {
      const from = await _cpuRun('buildah', [...store, 'from', 'scratch'], ctx);
      if (from.code !== 0) return [from];
      const id = from.stdout.trim();
      const steps = [
        ['copy', id, 'app', '/app/'],
        ['commit', '--quiet', id, 'bench-layer'],
        ['push', '--quiet', 'bench-layer', `oci:${join(work, 'buildah-out')}:latest`],
      ];
      const out = [from];
      for (const step of steps) out.push(await _cpuRun('buildah', [...store, ...step], ctx));
      return out;
    };
    const sequence = (argvs: string[][]) => async () => {
      const out: (RunResult & { cpu: number })[] = [];
      for (const [cmd, ...args] of argvs) out.push(await _cpuRun(cmd, args, ctx));
      return out;
    };
    const tools: [string, () => Promise<(RunResult & { cpu: number })[]>, boolean][] = [
      ['berth build, one layer (gzip, cold cache)', sequence(berth('gzip')), true],
      ['berth build, one layer (zstd, cold cache)', sequence(berth('zstd')), true],
      [
        'tar cf - app | zstd -3',
        sequence([['sh', '-c', `tar cf - app | zstd -3 -q -o ${join(work, 't.zst')}`]]),
        !!findExecutable('zstd'),
      ],
      ['buildah from/copy/commit + push oci: (gzip)', buildah, !!findExecutable('buildah')],
    ];
    const runs = new Map<string, (BuildBenchResult & { cpu: number })[]>();
    for (let i = 0; i < rounds; i++)
      for (const [tool, once, available] of tools) {
        if (!available) continue;
        await Promise.all(
          ['cache', 'out', 'buildah', 'buildah-out', 't.zst'].map((d) =>
            rm(join(work, d), { recursive: true, force: true }),
          ),
        );
        let cpu = 0;
        const r = await _timed(tool, async () => {
          const steps = await once();
          cpu = steps.reduce((n, s) => n + s.cpu, 0);
          return steps;
        });
        runs.set(tool, [...(runs.get(tool) ?? []), { ...r, cpu }]);
      }
    return tools.map(([tool, , available]) => {
      if (!available) return { tool, seconds: NaN, ok: false, note: 'not installed' };
      const rs = runs.get(tool) ?? [];
      const bad = rs.find((r) => !r.ok);
      if (bad) return bad;
      const cpu = median(rs.map((r) => r.cpu));
      return {
        tool,
        ok: true,
        seconds: median(rs.map((r) => r.seconds)),
        cpu,
        note: `median of ${rounds}: ${rs.map((r) => r.seconds.toFixed(2)).join(', ')} s; ${cpu.toFixed(2)} CPU-s`,
      };
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** `npm run bench` rows: berth against buildah and umoci in the same run, ratio > 1 = berth faster. */
export const buildBench: Bench = {
  name: 'build',
  async run(ctx) {
    const res = await benchBuild(ctx.quick ? { files: 5_000, mib: 50, rounds: ctx.rounds } : { rounds: ctx.rounds });
    ctx.log("one layer near the compressor's limit (berth vs buildah, berth zstd vs tar | zstd -3)…");
    const one = await benchOneLayer(ctx.quick ? { files: 5_000, mib: 48, rounds: ctx.rounds } : { rounds: ctx.rounds });
    const find = (prefix: string) => res.find((r) => r.tool.startsWith(prefix));
    const secs = (r?: BuildBenchResult) => (r?.ok ? r.seconds : NaN);
    const gzip = find('berth build (gzip');
    const zstd = find('berth build (zstd');
    const buildah = find('buildah');
    const umoci = find('umoci');
    const size = ctx.quick ? '5,000 files / 50 MB' : '20,000 files / 200 MB';
    const vs = (
      name: string,
      b: BuildBenchResult | undefined,
      peer: BuildBenchResult | undefined,
      peerName: string,
      target?: string,
    ): Row => ({
      name,
      unit: 's',
      berth: secs(b),
      peer: secs(peer),
      peerName,
      better: 'lower',
      target,
      note: [b?.note, peer && !peer.ok ? `${peerName} FAILED ${peer.note ?? ''}` : undefined]
        .filter(Boolean)
        .join('; '),
    });
    const rows: Row[] = [
      vs(`build ${size} → 3 layers, gzip`, gzip, buildah, 'buildah (vfs, gzip)', '≥ 3×'),
      vs(`build ${size} → 3 layers, zstd`, zstd, buildah, 'buildah (vfs, gzip)', '≥ 3×'),
      vs(`build ${size} → 3 layers, gzip`, gzip, umoci, 'umoci (gzip)'),
    ];
    for (const r of rows) {
      const x = r.peer && r.berth ? r.peer / r.berth : NaN;
      if (r.target && Number.isFinite(x)) r.met = x >= 3;
    }
    const oneSize = ctx.quick ? '5,000 files / 48 MB' : '20,000 files / 192 MB';
    const pick = (prefix: string) => one.find((r) => r.tool.startsWith(prefix));
    const oneRows: [string, string, string, string, number][] = [
      [
        `one layer ${oneSize} (⅓ incompressible), gzip`,
        'berth build, one layer (gzip',
        'buildah',
        'buildah (vfs, gzip)',
        3,
      ],
      [
        `one layer ${oneSize} (⅓ incompressible), zstd`,
        'berth build, one layer (zstd',
        'tar cf -',
        'tar | zstd -3',
        1 / 1.5,
      ],
    ];
    for (const [name, mine, theirs, peerName, atLeast] of oneRows) {
      const row = vs(name, pick(mine), pick(theirs), peerName, atLeast >= 1 ? `≥ ${atLeast}×` : '≤ 1.5× slower');
      const x = row.peer && row.berth ? row.peer / row.berth : NaN;
      if (Number.isFinite(x)) row.met = x >= atLeast;
      const cpu = (r?: { cpu?: number }) => (r?.cpu === undefined ? '?' : r.cpu.toFixed(2));
      row.note = `CPU-s berth ${cpu(pick(mine))} vs ${cpu(pick(theirs))}; ${row.note}`;
      rows.push(row);
    }
    const warm = find('berth rebuild');
    rows.push({
      name: 'rebuild, one file changed (warm cache)',
      unit: 's',
      berth: secs(warm),
      better: 'lower',
      target: '< 1 s',
      met: secs(warm) < 1,
      note: warm?.note,
    });
    const noop = find('berth no-op');
    rows.push({
      name: 'rebuild, nothing changed (warm cache)',
      unit: 's',
      berth: secs(noop),
      better: 'lower',
      note: noop?.note,
    });
    const pushed = find('berth rebuild + push');
    rows.push({
      name: 'rebuild + push to local berth serve, one file changed',
      unit: 's',
      berth: secs(pushed),
      better: 'lower',
      target: '< 1 s',
      met: secs(pushed) < 1,
      note: pushed?.note,
    });
    return rows;
  },
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const res = await benchBuild({ files: arg('--files'), mib: arg('--mib') });
  for (const r of res)
    console.log(
      `${r.tool.padEnd(52)} ${Number.isNaN(r.seconds) ? '   -  ' : r.seconds.toFixed(2).padStart(7)} s  ${r.ok ? '' : 'FAILED '}${r.note ?? ''}`,
    );
}
