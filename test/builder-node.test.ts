// preset: node end to end: a five-line spec turns a real npm project into an image that the Docker engine runs
// and that answers HTTP on its port. No Docker Hub here, so the test first makes its own node base image from the
// host's node binary and the shared libraries it links (as `ldd` lists them), built and pushed by berth itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startBerth } from './support/berth.js';
import { berth, parseBuild, writeTree } from './support/builder-fixtures.js';
import { startDockerd } from './support/docker.js';
import { freePort, ok, requirePeer, run, waitForHttp } from './support/peers.js';

const ARCH = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch;

/** A context holding rootfs/ with node at /usr/local/bin/node plus every library and the loader it needs. */
async function nodeBaseContext(dir: string): Promise<void> {
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'usr/local/bin'), { recursive: true });
  await copyFile(process.execPath, join(rootfs, 'usr/local/bin/node'));
  // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and the loader's bare `/lib64/ld-linux-x86-64.so.2 (0x…)`.
  const libs = ok(await run('ldd', [process.execPath]))
    .split('\n')
    .map((l) => l.match(/(\/\S+) \(0x/)?.[1])
    .filter((p): p is string => !!p);
  assert.ok(
    libs.some((l) => /ld-linux|ld-musl/.test(l)),
    `ldd lists a dynamic loader: ${libs}`,
  );
  for (const lib of libs) {
    await mkdir(join(rootfs, dirname(lib)), { recursive: true });
    await copyFile(lib, join(rootfs, lib)); // follows the host's symlinks: the image gets plain files
  }
  await writeFile(
    join(dir, 'berth.yaml'),
    `apiVersion: berth/v1
kind: Image
platforms: [linux/${ARCH}]
layers:
  - name: node
    files:
      - { src: rootfs, dest: / }
config: { env: { PATH: /usr/local/bin:/usr/bin:/bin }, cmd: [node] }
`,
  );
}

// The sample service: one production dependency (a file: package npm links into node_modules, which itself
// depends on another), one devDependency that must not reach the image.
const APP = {
  'berth.yaml': '',
  'package.json': JSON.stringify({
    name: 'hello-svc',
    version: '1.0.0',
    main: 'server.js',
    scripts: { start: 'node server.js' },
    dependencies: { greet: 'file:vendor/greet' },
    devDependencies: { devtool: 'file:tools/devtool' },
  }),
  'server.js': `const http = require('node:http');
const greet = require('greet');
let devtool = 'absent';
try { require.resolve('devtool'); devtool = 'present'; } catch {}
const port = Number(process.env.PORT || 8080);
http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ greeting: greet('berth'), nodeEnv: process.env.NODE_ENV, cwd: process.cwd(), devtool, url: req.url }));
}).listen(port, '127.0.0.1', () => console.log('listening on ' + port));
`,
  'vendor/greet/package.json': JSON.stringify({
    name: 'greet',
    version: '1.0.0',
    main: 'index.js',
    dependencies: { punct: 'file:../punct' },
  }),
  'vendor/greet/index.js': "const punct = require('punct');\nmodule.exports = (who) => 'hello, ' + who + punct;\n",
  'vendor/punct/package.json': JSON.stringify({ name: 'punct', version: '2.0.0', main: 'index.js' }),
  'vendor/punct/index.js': "module.exports = '!';\n",
  'tools/devtool/package.json': JSON.stringify({ name: 'devtool', version: '0.1.0', main: 'index.js' }),
  'tools/devtool/index.js': 'module.exports = 1;\n',
  'test/server.test.js': '// a test that stays out of the image (.berthignore)\n',
  '.berthignore': 'test/\n',
};

const EXPECTED = { greeting: 'hello, berth!', nodeEnv: 'production', cwd: '/app', devtool: 'absent', url: '/ping' };

test('A preset: node sample app image runs in docker and answers on its port', async (t) => {
  if (!requirePeer(t, 'docker', 'npm', 'ldd')) return;
  const work = await mkdtemp(join(tmpdir(), 'berth-node-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const cache = join(work, 'cache');
  const reg = await startBerth(t);
  const dockerd = await startDockerd({ insecureRegistries: [reg.host] });
  t.after(() => dockerd.stop());

  const baseDir = join(work, 'base');
  await nodeBaseContext(baseDir);
  const baseRef = `${reg.host}/library/node:20`;
  parseBuild(
    await berth(['build', '-f', join(baseDir, 'berth.yaml'), '--cache', cache, '--push', baseRef, '--json'], {
      timeoutMs: 300_000,
    }),
  );

  // The spec from the README, pointed at this test's registry.
  const app = join(work, 'app');
  await writeTree(app, {
    ...APP,
    'berth.yaml': `apiVersion: berth/v1\nkind: Image\nbase: ${baseRef}\npreset: node\nplatforms: [linux/${ARCH}]\nconfig: { exposedPorts: [8080] }\n`,
  });
  // A real npm install (offline: every dependency is a local file: package); dev dependencies land on disk too.
  ok(await run('npm', ['install', '--offline', '--no-audit', '--no-fund'], { cwd: app }));
  const ref = `${reg.host}/team/hello-svc:v1`;
  const built = parseBuild(
    await berth(
      ['build', '-f', join(app, 'berth.yaml'), '--cache', cache, '--check-reproducible', '--push', ref, '--json'],
      { timeoutMs: 300_000 },
    ),
  );
  assert.deepEqual(
    built.images[0].layers.map((l) => l.name),
    ['dependencies', 'app'],
  );

  ok(await dockerd.docker(['pull', ref]));
  const inspect = JSON.parse(ok(await dockerd.docker(['image', 'inspect', ref])))[0];
  assert.equal(inspect.RootFS.Layers.length, 3, 'the base layer, then dependencies and app');
  assert.deepEqual(inspect.Config.Entrypoint, ['node', '/app/server.js']);
  assert.equal(inspect.Config.WorkingDir, '/app');
  assert.deepEqual(Object.keys(inspect.Config.ExposedPorts), ['8080/tcp']);
  assert.ok(
    inspect.Config.Env.includes('NODE_ENV=production') && inspect.Config.Env.some((e: string) => e.startsWith('PATH=')),
    String(inspect.Config.Env),
  );

  // From outside: the container shares the host's network namespace (this dockerd has no bridge), and the test
  // connects to it over loopback on a port picked free for the run.
  const port = await freePort();
  const name = `berth-node-${process.pid}`;
  t.after(async () => {
    await dockerd.docker(['rm', '-f', name]);
  });
  ok(await dockerd.docker(['run', '-d', '--name', name, '--network', 'host', '-e', `PORT=${port}`, ref]));
  await waitForHttp(`http://127.0.0.1:${port}/ping`, { timeoutMs: 30_000 }).catch(async (e) => {
    throw new Error(`${(e as Error).message}\ncontainer logs:\n${(await dockerd.docker(['logs', name])).stdout}`);
  });
  const res = await fetch(`http://127.0.0.1:${port}/ping`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), EXPECTED);

  // On the port the spec declares: a container with no network at all, asked from inside by the image's own node.
  const isolated = `${name}-none`;
  t.after(async () => {
    await dockerd.docker(['rm', '-f', isolated]);
  });
  ok(await dockerd.docker(['run', '-d', '--name', isolated, '--network', 'none', ref]));
  const probe = "fetch('http://127.0.0.1:8080/ping').then((r) => r.text()).then((b) => process.stdout.write(b))";
  let answer = '';
  for (let i = 0; i < 50 && !answer; i++) {
    const r = await dockerd.docker(['exec', isolated, 'node', '-e', probe]);
    if (r.code === 0) answer = r.stdout;
    else await new Promise((done) => setTimeout(done, 200));
  }
  assert.deepEqual(JSON.parse(answer || '{}'), EXPECTED);

  // The image holds the production dependency (as npm's symlink and its target) and nothing of the dev one.
  const ls = ok(
    await dockerd.docker([
      'run',
      '--rm',
      '--network',
      'none',
      '--entrypoint',
      'node',
      ref,
      '-e',
      "const fs = require('fs'); console.log(JSON.stringify([fs.readlinkSync('/app/node_modules/greet'), fs.readdirSync('/app/node_modules'), fs.readdirSync('/app'), fs.existsSync('/app/tools'), fs.existsSync('/app/test')]))",
    ]),
  );
  assert.deepEqual(JSON.parse(ls), [
    '../vendor/greet',
    ['greet', 'punct'],
    ['node_modules', 'package-lock.json', 'package.json', 'server.js', 'vendor'],
    false,
    false,
  ]);
});
