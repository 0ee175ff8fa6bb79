// Builder for ephemeral CI (issue 22). Every berth run here starts with an empty cache dir, as a CI runner does.
// - cold-runner rebuild of an unchanged context (a many-file tree in 3 layers) pushed to a local berth: with the
//   registry cache (`--registry-cache`: layers found by key, nothing built, nothing uploaded) vs without it (every
//   layer tarred and compressed again; the push then skips the existing blobs);
// - the same after a one-file change (one layer built with the cache; all three without);
// - one file changed in one large many-segment layer, cold runner, both with the registry cache: the unchanged
//   segments fetched from the previous blob by Range, only the changed one compressed, vs the whole layer built
//   again (what berth did before the record held segment maps; played here by a proxy that drops the Range header,
//   so every segment is built after the first refused part);
// - preset: go vs `ko build` on the same Go HTTP app (same scratch-like base from the local registry, one platform,
//   warm Go build cache, main.go edited before each round so both compile and link again), to an OCI layout.
// berth runs as `node bin/berth.js` (dist/, built by the runner). Medians of `rounds`.
// Run alone: `node --import tsx bench/cicache.ts`; or through the runner: `npm run bench -- --only cicache`.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startBerth, type Berth } from '../test/support/berth.js';
import { startCountingProxy } from '../test/support/counting-proxy.js';
import { findExecutable, run, type RunResult } from '../test/support/peers.js';
import { median, type Bench, type BenchContext, type Row } from './types.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

function _berth(args: string[], cwd: string, env: Record<string, string | undefined> = {}): Promise<RunResult> {
  return run(process.execPath, [BERTH, ...args], { cwd, timeoutMs: 900_000, env });
}

async function _seconds(f: () => Promise<RunResult>): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await f();
  if (r.code !== 0) throw new Error(`${r.command}: ${r.stderr.slice(-800)}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function _tree(dir: string, files: number, mib: number): Promise<void> {
  const size = Math.floor((mib * 1024 * 1024) / files);
  for (let i = 0; i < files; i++) {
    const sub = join(dir, ['a', 'b', 'c'][i % 3], `d${Math.floor(i / 300)}`);
    if (i % 300 < 3) await mkdir(sub, { recursive: true });
    await writeFile(
      join(sub, `f${i}.txt`),
      randomBytes(Math.ceil(size / 2))
        .toString('hex')
        .slice(0, size),
    );
  }
  const layer = (n: string) => `  - name: ${n}\n    files:\n      - { src: "${n}/**", dest: /data/${n}/ }\n`;
  await writeFile(
    join(dir, 'berth.yaml'),
    `apiVersion: berth/v1\nkind: Image\nplatforms: [linux/amd64]\nlayers:\n${layer('a')}${layer('b')}${layer('c')}`,
  );
}

async function _registryCacheRows(ctx: BenchContext, work: string, reg: Berth): Promise<Row[]> {
  const files = ctx.quick ? 3000 : 12_000;
  const mib = ctx.quick ? 30 : 120;
  const dir = join(work, 'tree');
  await _tree(dir, files, mib);
  const proxy = await startCountingProxy(reg.url);
  try {
    const ref = `${proxy.host}/bench/ci:main`;
    const cold = async (extra: string[]) => {
      const cache = await mkdtemp(join(work, 'cold-'));
      try {
        return await _seconds(() =>
          _berth(['build', '-f', join(dir, 'berth.yaml'), '--cache', cache, '--no-sbom', '--push', ref, ...extra], dir),
        );
      } finally {
        await rm(cache, { recursive: true, force: true });
      }
    };
    ctx.log(`cicache: ${files} files / ${mib} MiB, first build`);
    await cold(['--registry-cache']);
    const rows: Row[] = [];
    for (const change of [false, true]) {
      const withCache: number[] = [];
      const without: number[] = [];
      let writes = 0;
      for (let i = 0; i < ctx.rounds; i++) {
        // Without first: its push leaves the registry as the with-cache run expects it (the image + its cache).
        if (change) await writeFile(join(dir, 'b/d0/f1.txt'), `changed ${i} ${Date.now()}\n`);
        without.push(await cold([]));
        await cold(['--registry-cache']); // records the cache for this content
        if (change) await writeFile(join(dir, 'b/d0/f1.txt'), `changed again ${i} ${Date.now()}\n`);
        proxy.counts.clear();
        withCache.push(await cold(['--registry-cache']));
        writes = [...proxy.counts].filter(([k]) => !/^(GET|HEAD) /.test(k)).reduce((n, [, v]) => n + v, 0);
      }
      rows.push({
        name: `cold runner, ${change ? 'one file changed' : 'unchanged context'}: build + push (${files} files, ${mib} MiB)`,
        unit: 's',
        berth: median(withCache),
        peer: median(without),
        peerName: 'berth without registry cache',
        better: 'lower',
        note: change
          ? `registry cache: one layer built (its unchanged segments fetched by Range) and uploaded (${writes} write requests)`
          : `registry cache: ${writes} write requests (HEAD/GET only)`,
      });
    }
    return rows;
  } finally {
    await proxy.stop();
  }
}

/** One file of a single large layer changes between cold builds: segments fetched by Range vs all built. */
async function _segmentRows(ctx: BenchContext, work: string, reg: Berth): Promise<Row[]> {
  const files = ctx.quick ? 600 : 2400;
  const mib = ctx.quick ? 30 : 120;
  const dir = join(work, 'one-layer');
  await mkdir(join(dir, 'data'), { recursive: true });
  const size = Math.floor((mib * 1024 * 1024) / files);
  const content = () =>
    randomBytes(Math.ceil(size / 2))
      .toString('hex')
      .slice(0, size);
  for (let i = 0; i < files; i++) await writeFile(join(dir, 'data', `f${i}.txt`), content());
  await writeFile(
    join(dir, 'berth.yaml'),
    'apiVersion: berth/v1\nkind: Image\nplatforms: [linux/amd64]\nlayers:\n  - name: data\n    files:\n      - { src: "data/**", dest: /data/ }\n',
  );
  const proxy = await startCountingProxy(reg.url);
  const ref = `${proxy.host}/bench/segments:main`;
  const cold = async () => {
    const cache = await mkdtemp(join(work, 'cold-'));
    const args = ['build', '-f', join(dir, 'berth.yaml'), '--cache', cache, '--no-sbom', '--json', '--push', ref];
    try {
      let out = '';
      const seconds = await _seconds(async () => {
        const r = await _berth([...args, '--registry-cache'], dir);
        out = r.stdout;
        return r;
      });
      const layer = JSON.parse(out.trim().split('\n').pop()!).images[0].layers[0];
      return { seconds, segments: layer.segments as { total: number; compressed: number; fetched: number } };
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  };
  try {
    ctx.log(`cicache: one layer of ${files} files / ${mib} MiB, first build`);
    await cold();
    const ranged: number[] = [];
    const rebuilt: number[] = [];
    let seen = { ranged: '', rebuilt: '' };
    const describe = (s: { total: number; compressed: number; fetched: number }) =>
      `${s.compressed}/${s.total} compressed, ${s.fetched} by Range`;
    for (let i = 0; i < ctx.rounds; i++) {
      // Each build records the cache for its content; the next one changes one more file (the same size).
      await writeFile(join(dir, 'data', `f${(i * 97) % files}.txt`), content());
      const a = await cold();
      ranged.push(a.seconds);
      await writeFile(join(dir, 'data', `f${(i * 97 + 31) % files}.txt`), content());
      proxy.ignoreRange = true;
      const b = await cold().finally(() => (proxy.ignoreRange = false));
      rebuilt.push(b.seconds);
      seen = { ranged: describe(a.segments), rebuilt: describe(b.segments) };
    }
    return [
      {
        name: `cold runner, one file changed in one ${mib} MiB layer: build + push, segments by Range vs layer rebuilt`,
        unit: 's',
        berth: median(ranged),
        peer: median(rebuilt),
        peerName: 'whole layer rebuilt (Range ignored: the behaviour before segment maps)',
        better: 'lower',
        note: `segment reuse: ${seen.ranged}; rebuilt: ${seen.rebuilt}`,
      },
    ];
  } finally {
    await proxy.stop();
  }
}

const GO_MAIN = (n: number) => `package main

import (
	"fmt"
	"net/http"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello ${n}") })
	http.ListenAndServe(":8080", nil)
}
`;

async function _goRows(ctx: BenchContext, work: string, reg: Berth): Promise<Row[]> {
  const ko = findExecutable('ko');
  if (!findExecutable('go'))
    return [{ name: 'preset: go vs ko build', unit: 's', berth: NaN, note: 'go not installed' }];
  const dir = join(work, 'goapp');
  await mkdir(join(dir, 'cmd/hello'), { recursive: true });
  await writeFile(join(dir, 'go.mod'), 'module example.com/hello\n\ngo 1.21\n');
  await writeFile(join(dir, 'cmd/hello/main.go'), GO_MAIN(0));
  // The same small base for both (no Docker Hub here): one file, pushed to the local registry.
  const baseDir = join(work, 'gobase');
  await mkdir(baseDir, { recursive: true });
  await writeFile(
    join(baseDir, 'berth.yaml'),
    'apiVersion: berth/v1\nkind: Image\nlayers:\n  - name: etc\n    files:\n      - { inline: "nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\\n", dest: /etc/passwd }\n',
  );
  const base = `${reg.host}/bench/static:v1`;
  const b = await _berth(['build', '-f', join(baseDir, 'berth.yaml'), '--push', base], baseDir);
  if (b.code !== 0) throw new Error(b.stderr);
  await writeFile(
    join(dir, 'berth.yaml'),
    `apiVersion: berth/v1\nkind: Image\nbase: ${base}\npreset: go\nplatforms: [linux/amd64]\ngo: { main: ./cmd/hello }\n`,
  );
  const cache = join(work, 'go-cache');
  // ko takes the layout path for a repository name: lower case only (mkdtemp's suffix is not).
  const koOut = join(tmpdir(), `berth-bench-ko-out-${process.pid}`);
  const berthBuild = () =>
    _berth(['build', '-f', join(dir, 'berth.yaml'), '--cache', cache, '--oci-layout', join(work, 'go-out-berth')], dir);
  const koBuild = () =>
    run(ko!, ['build', '--push=false', '--oci-layout-path', koOut, '--platform', 'linux/amd64', './cmd/hello'], {
      cwd: dir,
      timeoutMs: 600_000,
      env: { KO_DOCKER_REPO: `${reg.host}/bench/ko`, KO_DEFAULTBASEIMAGE: base },
    });
  // Warm Go's build cache (std for linux/amd64) for both, untimed.
  await _seconds(berthBuild);
  if (ko) await _seconds(koBuild).finally(() => rm(koOut, { recursive: true, force: true }));
  const berthTimes: number[] = [];
  const koTimes: number[] = [];
  try {
    for (let i = 1; i <= ctx.rounds; i++) {
      await writeFile(join(dir, 'cmd/hello/main.go'), GO_MAIN(i * 2));
      berthTimes.push(await _seconds(berthBuild));
      if (ko) {
        await writeFile(join(dir, 'cmd/hello/main.go'), GO_MAIN(i * 2 + 1));
        koTimes.push(await _seconds(koBuild));
      }
    }
  } finally {
    await rm(koOut, { recursive: true, force: true });
  }
  return [
    {
      name: 'preset: go vs ko build, after editing main.go (1 platform, OCI layout)',
      unit: 's',
      berth: median(berthTimes),
      ...(ko ? { peer: median(koTimes), peerName: 'ko v0.18.1' } : {}),
      better: 'lower',
      target: 'faster than ko',
      met: ko ? median(berthTimes) < median(koTimes) : undefined,
      note: ko ? undefined : 'ko not installed (.ci/install-ko.sh)',
    },
  ];
}

export const cicacheBench: Bench = {
  name: 'cicache',
  async run(ctx) {
    const work = await mkdtemp(join(tmpdir(), 'berth-bench-cicache-'));
    const reg = await startBerth(undefined);
    try {
      return [
        ...(await _registryCacheRows(ctx, work, reg)),
        ...(await _segmentRows(ctx, work, reg)),
        ...(await _goRows(ctx, work, reg)),
      ];
    } finally {
      await reg.stop();
      await rm(work, { recursive: true, force: true });
    }
  },
};

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await cicacheBench.run({ quick: process.argv.includes('--quick'), rounds: 3, log: console.error });
  console.log(JSON.stringify(rows, null, 2));
}
