// preset: node on real files: which lockfile packages reach the image, what the app layer holds, the errors that
// name the fix, and the config defaults the spec's `config:` overrides.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Context } from './context.js';
import { withConfig, scratch } from './image.js';
import { ignoreGlobs, nodeEntry, nodePreset, productionPackages } from './preset-node.js';
import { parseSpec } from './spec.js';

const SPEC = 'apiVersion: berth/v1\nkind: Image\npreset: node\n';

type Files = Record<string, string | object>;

async function project(t: { after(fn: () => Promise<void>): void }, files: Files): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-preset-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [p, c] of Object.entries(files)) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), typeof c === 'string' ? c : JSON.stringify(c));
  }
  return dir;
}

const pkg = (name: string, version: string) => ({
  [`${name}/package.json`]: { name, version },
  [`${name}/index.js`]: 'module.exports = 1;\n',
});

/** An installed project: express-like prod dep with a nested prod dep, an optional one, a dev one with a nested dep. */
const APP: Files = {
  'package.json': {
    name: 'svc',
    version: '1.0.0',
    main: 'server.js',
    dependencies: { web: '^1' },
    devDependencies: { lint: '^2' },
  },
  'package-lock.json': {
    name: 'svc',
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: 'svc', dependencies: { web: '^1' }, devDependencies: { lint: '^2' } },
      'node_modules/web': { version: '1.2.0', dependencies: { mime: '^3' } },
      'node_modules/web/node_modules/mime': { version: '3.0.0' },
      'node_modules/mime': { version: '1.0.0', dev: true },
      'node_modules/@s/peer': { version: '4.0.0', peer: true },
      'node_modules/fsevents': { version: '2.3.3', optional: true, os: ['darwin'] },
      'node_modules/colors': { version: '1.4.0', devOptional: true },
      'node_modules/lint': { version: '2.0.0', dev: true },
      'node_modules/lint/node_modules/ast': { version: '0.1.0', dev: true },
      'node_modules/bindings': { version: '1.0.0', dev: true, optional: true },
    },
  },
  'server.js': 'require("web");\n',
  'lib/util.js': '// util\n',
  'test/app.test.js': '// a test\n',
  ...pkg('node_modules/web', '1.2.0'),
  ...pkg('node_modules/web/node_modules/mime', '3.0.0'),
  ...pkg('node_modules/mime', '1.0.0'),
  ...pkg('node_modules/@s/peer', '4.0.0'),
  ...pkg('node_modules/colors', '1.4.0'),
  ...pkg('node_modules/lint', '2.0.0'),
  ...pkg('node_modules/lint/node_modules/ast', '0.1.0'),
  'node_modules/.package-lock.json': '{}',
  'node_modules/.bin/lint': '#!/bin/sh\n',
  '.git/HEAD': 'ref: refs/heads/main\n',
  '.npmrc': '//registry.npmjs.org/:_authToken=secret\n',
  'berth.yaml': SPEC,
};

async function preset(dir: string, spec = SPEC, exclude?: string[]) {
  return nodePreset(parseSpec(spec), await Context.open(dir), { exclude });
}

function paths(layer: { members: { path: string; type: string }[] }, type = 'file'): string[] {
  return layer.members.filter((m) => m.type === type).map((m) => m.path);
}

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.match(e.message, re);
    return true;
  });
}

test('production packages: dev (also dev+optional) dropped; nested, peer, optional and devOptional kept', () => {
  const lock = (APP['package-lock.json'] as { packages: Record<string, object> }).packages;
  const prod = productionPackages(lock, 'package-lock.json', (m) => new Error(m));
  assert.deepEqual(
    prod.map((p) => [p.path, p.name, p.optional]),
    [
      ['node_modules/@s/peer', '@s/peer', false],
      ['node_modules/colors', 'colors', true],
      ['node_modules/fsevents', 'fsevents', true],
      ['node_modules/web', 'web', false],
      ['node_modules/web/node_modules/mime', 'mime', false],
    ],
  );
});

test('a link entry takes its dev flag from its target, where npm records it', () => {
  const prod = productionPackages(
    {
      '': {},
      'node_modules/greet': { resolved: 'vendor/greet', link: true },
      'node_modules/tool': { resolved: 'tools/tool', link: true },
      'vendor/greet': { version: '1.0.0' },
      'tools/tool': { version: '0.1.0', dev: true },
    },
    'package-lock.json',
    (m) => new Error(m),
  );
  assert.deepEqual(
    prod.map((p) => [p.path, p.linkTo]),
    [
      ['node_modules/greet', 'vendor/greet'],
      ['vendor/greet', undefined],
    ],
  );
});

test('dependencies layer: installed production packages only, nested ones included, dev deps and .bin left out', async (t) => {
  const dir = await project(t, APP);
  const { layers } = await preset(dir);
  assert.deepEqual(
    layers.map((l) => l.name),
    ['dependencies', 'app'],
  );
  assert.deepEqual(paths(layers[0]), [
    'app/node_modules/@s/peer/index.js',
    'app/node_modules/@s/peer/package.json',
    'app/node_modules/colors/index.js',
    'app/node_modules/colors/package.json',
    'app/node_modules/web/index.js',
    'app/node_modules/web/node_modules/mime/index.js',
    'app/node_modules/web/node_modules/mime/package.json',
    'app/node_modules/web/package.json',
  ]);
  assert.equal(layers[0].origins.get('app/node_modules/web/index.js'), 'node_modules/web/index.js');
});

test('app layer: everything but node_modules, VCS, .npmrc and berth files by default; .berthignore adds to that', async (t) => {
  const dir = await project(t, {
    ...APP,
    '.berthignore': '# tests stay out\ntest/\n*.log\n',
    'debug.log': 'x',
    'lib/x.log': 'y',
  });
  const { layers } = await preset(dir);
  assert.deepEqual(paths(layers[1]), ['app/lib/util.js', 'app/package-lock.json', 'app/package.json', 'app/server.js']);
  assert.deepEqual(paths(layers[1], 'directory'), ['app', 'app/lib']);
});

test('app layer: package.json `files` is honoured, with main, package.json and the lockfile always in', async (t) => {
  const manifest = { ...(APP['package.json'] as object), files: ['lib/', 'server.js'], main: 'server.js' };
  const dir = await project(t, {
    ...APP,
    'package.json': manifest,
    'extra.txt': 'not listed\n',
    'lib/node_modules/x.js': 'pruned\n',
  });
  const { layers } = await preset(dir);
  assert.deepEqual(paths(layers[1]), ['app/lib/util.js', 'app/package-lock.json', 'app/package.json', 'app/server.js']);
  const missing = await project(t, { ...APP, 'package.json': { ...manifest, files: ['dist'] } });
  await rejects(preset(missing), /^berth\.yaml:3 preset: package\.json files\[0\] 'dist' matches no file/);
});

test('the spec file and a cache dir inside the context stay out of the app layer; link targets go to dependencies', async (t) => {
  const dir = await project(t, {
    ...APP,
    'package.json': {
      name: 'svc',
      main: 'server.js',
      dependencies: { greet: 'file:vendor/greet' },
      devDependencies: { tool: 'file:tools/tool' },
    },
    'package-lock.json': {
      lockfileVersion: 3,
      packages: {
        '': {},
        'node_modules/greet': { resolved: 'vendor/greet', link: true },
        'node_modules/tool': { resolved: 'tools/tool', link: true },
        'vendor/greet': { version: '1.0.0' },
        'tools/tool': { version: '0.1.0', dev: true },
      },
    },
    ...pkg('vendor/greet', '1.0.0'),
    ...pkg('tools/tool', '0.1.0'),
    'app.yaml': SPEC,
    '.cache/blobs/x': 'cache',
  });
  await symlink('../vendor/greet', join(dir, 'node_modules/greet'));
  await symlink('../tools/tool', join(dir, 'node_modules/tool'));
  await mkdir(join(dir, 'empty'));
  const { layers } = await preset(dir, SPEC, [join(dir, 'app.yaml'), join(dir, '.cache')]);
  assert.deepEqual(paths(layers[0], 'symlink'), ['app/node_modules/greet']);
  assert.equal(layers[0].members.find((m) => m.path === 'app/node_modules/greet')!.linkname, '../vendor/greet');
  assert.deepEqual(paths(layers[0]), ['app/vendor/greet/index.js', 'app/vendor/greet/package.json']);
  assert.deepEqual(paths(layers[1]), [
    'app/lib/util.js',
    'app/package-lock.json',
    'app/package.json',
    'app/server.js',
    'app/test/app.test.js',
  ]);
  // tools/ held only the dev package: it goes; an empty directory of the app's own stays.
  assert.deepEqual(paths(layers[1], 'directory'), ['app', 'app/empty', 'app/lib', 'app/test']);
});

test('errors name the fix: no lockfile, lockfile v1, stale lockfile, a missing or stale installed package', async (t) => {
  const { 'package-lock.json': lock, ...noLock } = APP;
  await rejects(
    preset(await project(t, noLock)),
    /^berth\.yaml:3 preset: preset node needs package-lock\.json \(or npm-shrinkwrap\.json\) .*run npm install/,
  );
  await rejects(
    preset(await project(t, { ...APP, 'package-lock.json': { lockfileVersion: 1, dependencies: {} } })),
    /lockfileVersion 1; preset node reads v2 or v3/,
  );
  const manifest = APP['package.json'] as { dependencies: object };
  await rejects(
    preset(
      await project(t, {
        ...APP,
        'package.json': { ...manifest, dependencies: { ...manifest.dependencies, left: '^1' } },
      }),
    ),
    /package-lock\.json does not match package\.json \(no entry for dependency 'left'\); run npm install/,
  );
  const notInstalled = await project(t, APP);
  await rm(join(notInstalled, 'node_modules/web/node_modules/mime'), { recursive: true });
  await rejects(
    preset(notInstalled),
    /production dependency 'mime' is not installed \(no node_modules\/web\/node_modules\/mime\); run npm ci --omit=dev \(or npm ci\)/,
  );
  await rejects(
    preset(await project(t, { ...APP, ...pkg('node_modules/web', '1.1.0') })),
    /'web' is installed at 1\.1\.0 but the lockfile pins 1\.2\.0/,
  );
  // A shrinkwrap wins over package-lock.json, as in npm.
  await rejects(
    preset(await project(t, { ...APP, 'npm-shrinkwrap.json': '{' })),
    /npm-shrinkwrap\.json is not valid JSON/,
  );
});

test('a file: dependency outside the context and a missing entry script are errors', async (t) => {
  const dir = await project(t, {
    ...APP,
    'package-lock.json': {
      lockfileVersion: 3,
      packages: {
        '': {},
        'node_modules/web': { resolved: '../web', link: true },
        '../web': { version: '1.0.0' },
      },
    },
  });
  await rejects(
    preset(dir),
    /production dependency 'web' is in \.\.\/web, outside the build context; install it as a copy/,
  );
  const noEntry = await project(t, {
    ...APP,
    'package.json': { ...(APP['package.json'] as object), main: 'dist/main.js' },
  });
  await rejects(preset(noEntry), /the entrypoint dist\/main\.js .* is not in the app layer/);
  // An explicit entrypoint needs no entry script.
  await preset(noEntry, `${SPEC}config: { entrypoint: [node, /app/server.js] }\n`);
  await rejects(
    preset(dir, `${SPEC}layers:\n  - name: app\n    files: [{ inline: x, dest: /x }]\n`),
    /^berth\.yaml:5 layers\[0\]\.name: "app" is a layer preset: node makes/,
  );
});

test('config defaults: /app, NODE_ENV, node <entry>; the spec overrides; base user and env kept', async (t) => {
  assert.equal(nodeEntry({ scripts: { start: 'node ./dist/server.js' }, main: 'index.js' }), 'dist/server.js');
  assert.equal(nodeEntry({ scripts: { start: 'node --inspect x.js' }, main: 'lib/main.js' }), 'lib/main.js');
  assert.equal(nodeEntry({}), 'index.js');
  const dir = await project(t, APP);
  const { config } = await preset(dir);
  assert.deepEqual(config, {
    workdir: '/app',
    env: { NODE_ENV: 'production' },
    entrypoint: ['node', '/app/server.js'],
  });

  let base = scratch({ os: 'linux', architecture: 'amd64' }, 0);
  base = withConfig(base, { env: { PATH: '/usr/local/bin:/bin' }, user: 'node', cmd: ['node'] });
  const spec = parseSpec(`${SPEC}config: { env: { NODE_ENV: staging, PORT: "8080" }, cmd: ["--port", "8080"] }\n`).spec;
  const img = withConfig(withConfig(base, config), spec.config);
  assert.deepEqual(img.config.config, {
    Env: ['PATH=/usr/local/bin:/bin', 'NODE_ENV=staging', 'PORT=8080'],
    User: 'node',
    Entrypoint: ['node', '/app/server.js'],
    Cmd: ['--port', '8080'],
    WorkingDir: '/app',
  });
  const own = withConfig(withConfig(base, config), { entrypoint: ['/app/run.sh'] });
  assert.deepEqual((own.config.config as { Entrypoint: string[] }).Entrypoint, ['/app/run.sh']);
  assert.equal((own.config.config as { Cmd?: string[] }).Cmd, undefined);
});

test('ignoreGlobs: bare names match at any depth, a slash anchors; everything below a match goes', () => {
  assert.deepEqual(ignoreGlobs(['node_modules', '/berth.yaml', 'test/', 'a/b']), [
    'node_modules',
    '**/node_modules',
    'node_modules/**',
    '**/node_modules/**',
    'berth.yaml',
    'berth.yaml/**',
    'test',
    '**/test',
    'test/**',
    '**/test/**',
    'a/b',
    'a/b/**',
  ]);
});

test('a real npm install (file: links and --install-links copies) gives the same production set', async (t) => {
  const npm = join(process.execPath, '..', 'npm');
  for (const installLinks of [false, true]) {
    const dir = await project(t, {
      'package.json': {
        name: 'svc',
        version: '1.0.0',
        main: 'server.js',
        dependencies: { greet: 'file:vendor/greet' },
        devDependencies: { tool: 'file:tools/tool' },
      },
      'server.js': 'require("greet");\n',
      'vendor/greet/package.json': { name: 'greet', version: '1.0.0', dependencies: { dep: 'file:../dep' } },
      'vendor/greet/index.js': 'module.exports = 1;\n',
      'vendor/dep/package.json': { name: 'dep', version: '2.0.0' },
      'tools/tool/package.json': { name: 'tool', version: '0.1.0' },
    });
    execFileSync(npm, ['install', '--offline', '--no-audit', '--no-fund', `--install-links=${installLinks}`], {
      cwd: dir,
      stdio: 'pipe',
    });
    const { layers } = await preset(dir);
    const all = layers[0].members.filter((m) => m.type !== 'directory').map((m) => m.path);
    assert.ok(!all.some((p) => p.includes('tool')), `no dev dependency in ${all}`);
    if (installLinks) {
      assert.deepEqual(all, [
        'app/node_modules/dep/package.json',
        'app/node_modules/greet/index.js',
        'app/node_modules/greet/package.json',
      ]);
    } else {
      assert.deepEqual(all, [
        'app/node_modules/dep',
        'app/node_modules/greet',
        'app/vendor/dep/package.json',
        'app/vendor/greet/index.js',
        'app/vendor/greet/package.json',
      ]);
    }
    assert.ok(
      !paths(layers[1]).some((p) => p.startsWith('app/vendor/') || p.startsWith('app/tools/')),
      'package dirs are not app files',
    );
  }
});
