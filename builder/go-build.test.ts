// preset go's head start (go-build.ts, prestart.ts): a run started early is taken once by the same invocation, a
// different or repeated invocation runs go itself, and an untaken run never outlives the process. `go` here is a
// small script that counts its runs (what is tested is the hand-over, not Go; preset-go.test.ts builds with Go).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { goGcEnv, goInvocations, prestartGoBuilds, runGoBuild, type GoInvocation } from './go-build.js';
import { prestartBuild } from './prestart.js';
import { berth } from '../test/support/builder-fixtures.js';

const run = promisify(execFile);

/** A `go` that appends one line per run to runs.log and prints its arguments (or, `hang`, writes its pid and waits). */
async function fakeGo(t: TestContext, hang = false): Promise<{ dir: string; go: string; runs: () => Promise<number> }> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-go-build-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const go = join(dir, 'go');
  const body = hang ? `echo $$ > "${dir}/pid"\nexec sleep 30` : `echo run >> "${dir}/runs.log"\necho "$@"`;
  await writeFile(go, `#!/bin/sh\n${body}\n`);
  await chmod(go, 0o755);
  const runs = async () =>
    (await readFile(join(dir, 'runs.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
  return { dir, go, runs };
}

function invocation(dir: string): GoInvocation {
  return goInvocations({ main: './cmd/api' }, [{ os: 'linux', architecture: 'arm64' }], dir, join(dir, 'out'))[0];
}

test('goInvocations: static, trimmed, per platform, with an absolute output', () => {
  const [inv] = goInvocations(
    { main: 'cmd/api', tags: ['netgo'], ldflags: ['-X main.v=1'] },
    [{ os: 'linux', architecture: 'arm', variant: 'v7' }],
    '/ctx',
    'cache/go-build',
  );
  assert.deepEqual(inv.args.slice(0, 5), ['build', '-trimpath', '-buildvcs=false', '-tags', 'netgo']);
  assert.equal(inv.args[5], '-ldflags=-X main.v=1');
  assert.equal(inv.args.at(-1), './cmd/api');
  assert.ok(inv.out.startsWith('/') && inv.out.endsWith('/linux-arm-v7/app'), inv.out);
  const { GOGC, GOMEMLIMIT, ...platformEnv } = inv.env;
  assert.deepEqual(platformEnv, { CGO_ENABLED: '0', GOOS: 'linux', GOARCH: 'arm', GOARM: '7' });
  if (process.env.GOGC === undefined) assert.equal(GOGC, '400');
  if (process.env.GOMEMLIMIT === undefined) assert.match(GOMEMLIMIT, /^\d+MiB$/);
});

test("go runs with berth's GC tuning, and a GOGC or GOMEMLIMIT of the caller's own is kept", async (t) => {
  const { dir } = await fakeGo(t);
  const go = join(dir, 'go-env');
  await writeFile(go, '#!/bin/sh\necho "GOGC=$GOGC GOMEMLIMIT=$GOMEMLIMIT"\n');
  await chmod(go, 0o755);
  const gc = goGcEnv({});
  assert.equal(gc.GOGC, '400');
  // The go processes that may run at once (a compile per core, a link per platform) share half the memory.
  const mib = (e: Record<string, string>) => Number(e.GOMEMLIMIT.replace(/MiB$/, ''));
  const perCore = totalmem() / 2 / availableParallelism() / (1 << 20);
  assert.ok(mib(gc) >= 256 && Math.abs(mib(gc) - Math.max(256, Math.floor(perCore))) <= 1, gc.GOMEMLIMIT);
  const many = goGcEnv({}, availableParallelism() * 4);
  assert.ok(mib(many) === 256 || mib(many) < mib(gc), 'more platforms at once, a smaller share each');
  assert.deepEqual(goGcEnv({ GOGC: '100', GOMEMLIMIT: '1GiB' }), {}, "the caller's settings are left alone");
  const [inv] = goInvocations({}, [{ os: 'linux', architecture: 'amd64' }], dir, join(dir, 'out'));
  const { stdout } = await runGoBuild(go, { ...inv, env: { ...inv.env, ...goGcEnv({}) } });
  assert.equal(stdout.trim(), `GOGC=400 GOMEMLIMIT=${gc.GOMEMLIMIT}`);
});

test('a prestarted go build is taken once by the same invocation; a second build runs go again', async (t) => {
  const { dir, go, runs } = await fakeGo(t);
  const inv = invocation(dir);
  prestartGoBuilds(go, [inv]);
  const first = await runGoBuild(go, inv);
  assert.match(first.stdout, /^build -trimpath/);
  assert.equal(await runs(), 1, 'the head start was taken, not run again');
  await runGoBuild(go, inv);
  assert.equal(await runs(), 2, 'a head start is taken only once');
  // Another invocation (other flags, its own binary) never takes it, and leaves it be.
  const otherOut = join(dir, 'other', 'app');
  const other = {
    ...inv,
    out: otherOut,
    args: [...inv.args.slice(0, -3), '-o', otherOut, './cmd/other'],
  };
  prestartGoBuilds(go, [inv]);
  assert.match((await runGoBuild(go, other)).stdout, /cmd\/other/);
  await runGoBuild(go, inv); // takes the head start
  assert.equal(await runs(), 4, 'the other invocation ran go itself');
});

test('a prestarted go build that nobody takes is killed when the process exits', async (t) => {
  const { dir, go } = await fakeGo(t, true);
  const script = `import { prestartGoBuilds, goInvocations } from ${JSON.stringify(new URL('./go-build.ts', import.meta.url).href)};
prestartGoBuilds(${JSON.stringify(go)}, goInvocations({}, [{ os: 'linux', architecture: 'amd64' }], ${JSON.stringify(dir)}, ${JSON.stringify(join(dir, 'out'))}));
setTimeout(() => process.exit(3), 300);`;
  await assert.rejects(run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]), { code: 3 });
  const pid = Number((await readFile(join(dir, 'pid'), 'utf8')).trim());
  assert.ok(pid > 0);
  // Killed at once; gone as soon as init reaps it.
  const deadline = Date.now() + 5000;
  while (_alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(_alive(pid), false, 'the go run was left behind');
});

test('prestartBuild starts go only for preset go with go.mod, and never throws', async (t) => {
  const { dir, go, runs } = await fakeGo(t);
  await writeFile(join(dir, 'berth.yaml'), 'apiVersion: berth/v1\nkind: Image\npreset: go\ngo: { main: ./cmd/api }\n');
  await prestartBuild({ file: join(dir, 'berth.yaml'), cacheDir: join(dir, 'cache'), go });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await runs(), 0, 'no go.mod: no head start');
  await writeFile(join(dir, 'go.mod'), 'module example.com/x\n');
  await prestartBuild({ file: join(dir, 'berth.yaml'), cacheDir: false, go });
  await prestartBuild({ file: join(dir, 'berth.yaml'), cacheDir: join(dir, 'cache'), checkReproducible: true, go });
  await prestartBuild({ file: join(dir, 'missing.yaml'), go });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await runs(), 0, 'a throwaway cache, a reproducibility check or no spec: no head start');
  await prestartBuild({ file: join(dir, 'berth.yaml'), cacheDir: join(dir, 'cache'), go });
  const [inv] = goInvocations(
    { main: './cmd/api' },
    [{ os: 'linux', architecture: 'amd64' }],
    dir,
    join(dir, 'cache', 'go-build'),
  );
  const { stdout } = await runGoBuild(go, inv);
  assert.ok(stdout.includes(inv.out), stdout);
  assert.equal(await runs(), 1, 'the pipeline took the head start');
});

function _alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("berth build runs go once per platform: the pipeline takes the CLI's head start; --check-reproducible runs its own", async (t) => {
  const { dir, runs } = await fakeGo(t);
  // This go also writes its -o file, so the preset has a "binary" to put in the layer.
  await writeFile(
    join(dir, 'go'),
    `#!/bin/sh\necho run >> "${dir}/runs.log"\nwhile [ "$1" != "-o" ]; do shift; done\necho binary > "$2"\n`,
  );
  await writeFile(join(dir, 'go.mod'), 'module example.com/x\n');
  await writeFile(
    join(dir, 'berth.yaml'),
    'apiVersion: berth/v1\nkind: Image\npreset: go\nplatforms: [linux/amd64, linux/arm64]\n',
  );
  const env = { ...process.env, PATH: `${dir}:${process.env.PATH}` };
  const args = ['build', '-f', join(dir, 'berth.yaml'), '--cache', join(dir, 'cache'), '--no-sbom'];
  const built = await berth([...args, '--oci-layout', join(dir, 'out')], { env, cwd: tmpdir() });
  assert.equal(built.code, 0, built.stderr);
  assert.equal(await runs(), 2, 'one go build per platform, not a head start and a second run');
  const checked = await berth([...args, '--check-reproducible'], { env, cwd: tmpdir() });
  assert.equal(checked.code, 0, checked.stderr);
  // Three builds (two in throwaway caches, then the one whose result is kept), two platforms each.
  assert.equal(await runs(), 2 + 6, 'each build of --check-reproducible runs go itself, once per platform');
});

test('a head start that guessed another invocation for the same binary is stopped before go runs again', async (t) => {
  const hung = await fakeGo(t, true);
  const { dir, go, runs } = await fakeGo(t);
  const inv = invocation(dir);
  // The same -o, other arguments (say the head start misread --context): it must not write that file alongside.
  prestartGoBuilds(hung.go, [{ ...inv, args: [...inv.args.slice(0, -1), './cmd/guessed'] }]);
  const deadline = Date.now() + 5000;
  while (!(await readFile(join(hung.dir, 'pid'), 'utf8').catch(() => '')) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  const pid = Number((await readFile(join(hung.dir, 'pid'), 'utf8')).trim());
  assert.ok(_alive(pid), 'the guessed run is under way');
  const { stdout } = await runGoBuild(go, inv);
  assert.equal(_alive(pid), false, 'the guessed run was stopped first');
  assert.match(stdout, /cmd\/api/);
  assert.equal(await runs(), 1);
});
