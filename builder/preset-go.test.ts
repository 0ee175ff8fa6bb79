// preset: go with the host's Go toolchain: the layer it makes per platform, the config defaults the spec's
// `config:` overrides, and the errors that name the fix. (The image running under docker: test/builder-go.test.ts.)
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Context } from './context.js';
import { goEnv } from './go-build.js';
import { goPreset } from './preset-go.js';
import { parseSpec } from './spec.js';
import { findExecutable, requirePeer } from '../test/support/peers.js';

const MAIN = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n';

async function project(t: TestContext, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-preset-go-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [p, c] of Object.entries(files)) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), c);
  }
  return dir;
}

async function preset(dir: string, yaml: string) {
  const loaded = parseSpec(`apiVersion: berth/v1\nkind: Image\npreset: go\n${yaml}`);
  return goPreset(loaded, await Context.open(dir), {
    outDir: join(dir, '..', `${join(dir).split('/').pop()}-out`),
    platforms: [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ],
  });
}

test('goEnv maps platforms to GOOS/GOARCH/GOARM', () => {
  assert.deepEqual(goEnv({ os: 'linux', architecture: 'arm64' }), { GOOS: 'linux', GOARCH: 'arm64' });
  assert.deepEqual(goEnv({ os: 'linux', architecture: 'arm', variant: 'v6' }), {
    GOOS: 'linux',
    GOARCH: 'arm',
    GOARM: '6',
  });
  assert.equal(goEnv({ os: 'linux', architecture: 'arm', variant: 'v9' }), undefined);
});

test('preset go builds a static binary per platform into /app and sets the defaults', async (t) => {
  if (!requirePeer(t, 'go')) return;
  const dir = await project(t, { 'go.mod': 'module example.com/svc\n\ngo 1.21\n', 'cmd/api/main.go': MAIN });
  const p = await preset(dir, 'go: { main: cmd/api }\n');
  assert.deepEqual(p.config, { entrypoint: ['/app/api'], workdir: '/app', user: '65532:65532' });
  // The name comes from go.mod's module path, however it is written.
  const quoted = await project(t, {
    'go.mod': 'module "example.com/quoted/svc" // the service\n\ngo 1.21\n',
    'main.go': MAIN,
  });
  assert.deepEqual((await preset(quoted, '')).config.entrypoint, ['/app/svc']);
  const [layer] = await p.layers({ os: 'linux', architecture: 'arm64' });
  assert.equal(layer.name, 'app');
  assert.deepEqual(
    layer.gzip,
    { level: 1, memLevel: 9, memberBytes: 2 << 20 },
    "ko's gzip level (gzip.BestSpeed), zlib's larger hash table, in parallel members",
  );
  assert.deepEqual(
    layer.members.map((m) => [m.path, m.type, m.mode.toString(8)]),
    [
      ['app', 'directory', '755'],
      ['app/api', 'file', '755'],
    ],
  );
  const abs = (layer.members[1].source as { abs: string }).abs;
  const { execFileSync } = await import('node:child_process');
  const info = execFileSync(findExecutable('go')!, ['version', '-m', abs], { encoding: 'utf8' });
  assert.match(info, /GOARCH=arm64/);
  assert.match(info, /CGO_ENABLED=0/);
  assert.match(info, /-trimpath=true/);
});

test('preset go names what is wrong and how to fix it', async (t) => {
  if (!requirePeer(t, 'go')) return;
  const none = await project(t, { 'main.go': MAIN });
  await assert.rejects(
    preset(none, ''),
    /preset: preset go needs go\.mod at the root of the build context .*go mod init/,
  );
  // MAIN's mistakes show when its layer is asked for (go build runs alone; go list only explains a failure).
  const amd64 = { os: 'linux', architecture: 'amd64' };
  const lib = await project(t, { 'go.mod': 'module example.com/lib\n\ngo 1.21\n', 'lib.go': 'package lib\n' });
  await assert.rejects(
    (await preset(lib, '')).layers(amd64),
    /go\.main: \. is package lib, not a main package; set go\.main/,
  );
  await assert.rejects(
    (await preset(lib, 'go: { main: nothing/here }\n')).layers(amd64),
    /go\.main: go list failed:\n/,
  );
  const broken = await project(t, {
    'go.mod': 'module example.com/b\n\ngo 1.21\n',
    'main.go': 'package main\nfunc main() { x }\n',
  });
  const p = await preset(broken, '');
  await assert.rejects(
    p.layers({ os: 'linux', architecture: 'amd64' }),
    /go build failed for linux\/amd64:\n.*undefined: x/s,
  );
  assert.throws(() => parseSpec('apiVersion: berth/v1\nkind: Image\npreset: go\ngo: { main: ../other }\n'), /go\.main/);
  const layered = await project(t, { 'go.mod': 'module example.com/c\n\ngo 1.21\n', 'main.go': MAIN });
  await assert.rejects(
    preset(layered, 'layers:\n  - name: app\n    files: [{ inline: x, dest: /x }]\n'),
    /layers\[0\]\.name: "app" is the layer preset: go makes/,
  );
});
