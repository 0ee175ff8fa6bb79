// Build benchmark (issue 4): a 20,000-file / 200 MB tree into 3 layers with berth (gzip, zstd), buildah
// (`from scratch` / `copy` / `commit` per layer with vfs storage and its own root, then `push oci:` so the output is
// the same compressed OCI layout) and umoci (`new` / `unpack` / copy / `repack` per layer), plus berth's warm
// rebuild after changing one file (only that file's layer is rebuilt).
// Run alone: `node --import tsx bench/build.ts [--files 20000] [--mib 200]`; or import benchBuild from the runner.
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findExecutable, run, type RunResult } from '../test/peers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

export interface BuildBenchResult {
  tool: string;
  seconds: number;
  ok: boolean;
  note?: string;
}

async function _timed(tool: string, steps: () => Promise<RunResult[] | RunResult>, note?: string): Promise<BuildBenchResult> {
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
    await writeFile(join(sub, `f${i}.txt`), randomBytes(Math.ceil(size / 2)).toString('hex').slice(0, size));
  }
}

function _spec(compression: string): string {
  const layer = (n: string) => `  - name: ${n}\n    files:\n      - { src: "${n}/**", dest: /data/${n}/ }\n`;
  return `apiVersion: berth/v1\nkind: Image\nplatforms: [linux/amd64]\ncompression: ${compression}\nlayers:\n${layer('a')}${layer('b')}${layer('c')}`;
}

function _berth(args: string[], cwd: string): Promise<RunResult> {
  return run(process.execPath, ['--import', TSX, join(ROOT, 'pkg-cli/main.ts'), ...args], { cwd, timeoutMs: 600_000 });
}

export async function benchBuild(opts: { files?: number; mib?: number } = {}): Promise<BuildBenchResult[]> {
  const files = opts.files ?? 20_000;
  const mib = opts.mib ?? 200;
  const work = await mkdtemp(join(tmpdir(), 'berth-bench-build-'));
  const results: BuildBenchResult[] = [];
  try {
    const ctx = join(work, 'ctx');
    await _makeTree(ctx, files, mib);
    await writeFile(join(ctx, 'gzip.yaml'), _spec('gzip'));
    await writeFile(join(ctx, 'zstd.yaml'), _spec('zstd'));

    const cache = join(work, 'cache');
    results.push(await _timed('berth build (gzip, cold cache)', () => _berth(['build', '-f', 'gzip.yaml', '--cache', cache, '--oci-layout', join(work, 'berth-gzip')], ctx)));
    results.push(await _timed('berth build (zstd, cold cache)', () => _berth(['build', '-f', 'zstd.yaml', '--cache', join(work, 'cache-zstd'), '--oci-layout', join(work, 'berth-zstd')], ctx)));
    await writeFile(join(ctx, 'b', 'd0', 'f1.txt'), 'changed\n');
    let rebuilt = '';
    results.push(await _timed('berth rebuild, one file changed (gzip, warm cache)', async () => {
      const r = await _berth(['build', '-f', 'gzip.yaml', '--cache', cache, '--oci-layout', join(work, 'berth-gzip')], ctx);
      rebuilt = r.stderr.split('\n').filter((l) => / layer /.test(l) && !/\(cached\)/.test(l)).map((l) => l.replace(/^.* layer (\S+):.*$/, '$1')).join(',');
      return r;
    }));
    results[results.length - 1].note = `layers rebuilt: ${rebuilt || 'none'}`;
    results.push(await _timed('berth no-op rebuild (warm cache)', () => _berth(['build', '-f', 'gzip.yaml', '--cache', cache], ctx)));
    await writeFile(join(ctx, 'b', 'd0', 'f1.txt'), 'changed again\n');

    if (findExecutable('buildah')) {
      const root = join(work, 'buildah');
      const b = (args: string[]) => run('buildah', ['--root', join(root, 'root'), '--runroot', join(root, 'run'), '--storage-driver', 'vfs', ...args], { cwd: ctx, timeoutMs: 900_000 });
      results.push(await _timed('buildah from/copy/commit ×3 + push oci: (gzip)', async () => {
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
      }));
    } else {
      results.push({ tool: 'buildah', seconds: NaN, ok: false, note: 'not installed' });
    }

    if (findExecutable('umoci')) {
      const layout = join(work, 'umoci');
      results.push(await _timed('umoci new/unpack/repack ×3 (gzip)', async () => {
        const out: RunResult[] = [];
        out.push(await run('umoci', ['init', '--layout', layout]));
        out.push(await run('umoci', ['new', '--image', `${layout}:t`]));
        for (const part of ['a', 'b', 'c']) {
          const bundle = join(work, `bundle-${part}`);
          out.push(await run('umoci', ['unpack', '--rootless', '--image', `${layout}:t`, bundle], { timeoutMs: 900_000 }));
          await mkdir(join(bundle, 'rootfs', 'data'), { recursive: true });
          await cp(join(ctx, part), join(bundle, 'rootfs', 'data', part), { recursive: true });
          out.push(await run('umoci', ['repack', '--image', `${layout}:t`, bundle], { timeoutMs: 900_000 }));
          await rm(bundle, { recursive: true, force: true });
        }
        return out;
      }));
    } else {
      results.push({ tool: 'umoci', seconds: NaN, ok: false, note: 'not installed' });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const res = await benchBuild({ files: arg('--files'), mib: arg('--mib') });
  for (const r of res) console.log(`${r.tool.padEnd(52)} ${Number.isNaN(r.seconds) ? '   -  ' : r.seconds.toFixed(2).padStart(7)} s  ${r.ok ? '' : 'FAILED '}${r.note ?? ''}`);
}
