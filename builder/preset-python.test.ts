// preset: python's lock readers and checks, on lock documents as uv and poetry write them (parsed from TOML by
// python's tomllib in the preset; given as objects here). The image itself: test/builder-python.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePeer } from '../test/support/peers.js';
import { Context } from './context.js';
import { checkRequirements, poetryPackages, pythonPreset, uvPackages, wheelPlatforms } from './preset-python.js';
import { parseSpec } from './spec.js';

const H = (c: string) => `sha256:${c.repeat(64)}`;
const fail = (m: string) => new Error(m);

test('uv.lock: the packages reachable from the project, not its dev groups, pinned with every file hash', () => {
  const doc = {
    version: 1,
    package: [
      {
        name: 'svc',
        version: '0.1.0',
        source: { editable: '.' },
        dependencies: [{ name: 'flask' }, { name: 'colorama', marker: "sys_platform == 'win32'" }],
        'dev-dependencies': { dev: [{ name: 'pytest' }] },
      },
      {
        name: 'flask',
        version: '3.0.0',
        source: { registry: 'https://pypi.org/simple' },
        dependencies: [{ name: 'Werkzeug' }],
        sdist: { url: 'x', hash: H('a') },
        wheels: [{ url: 'y', hash: H('b') }],
      },
      { name: 'werkzeug', version: '3.0.1', source: { registry: 'r' }, wheels: [{ url: 'z', hash: H('c') }] },
      { name: 'colorama', version: '0.4.6', source: { registry: 'r' }, wheels: [{ url: 'w', hash: H('d') }] },
      { name: 'pytest', version: '8.0.0', source: { registry: 'r' }, wheels: [{ url: 'v', hash: H('e') }] },
    ],
  };
  assert.deepEqual(uvPackages(doc, 'uv.lock', fail), [
    { name: 'colorama', version: '0.4.6', hashes: [H('d')], marker: "sys_platform == 'win32'" },
    { name: 'flask', version: '3.0.0', hashes: [H('b'), H('a')], marker: undefined },
    { name: 'werkzeug', version: '3.0.1', hashes: [H('c')], marker: undefined },
  ]);
  assert.throws(() => uvPackages({ package: [] }, 'uv.lock', fail), /uv\.lock has no entry for the project itself/);
  const gitDep = structuredClone(doc);
  gitDep.package[2] = { name: 'werkzeug', version: '3.0.1', source: { git: 'https://example/x' } } as any;
  assert.throws(() => uvPackages(gitDep, 'uv.lock', fail), /'werkzeug' 3\.0\.1 has no file hashes/);
});

test('poetry.lock: the main group (or category) only; non-registry sources refused', () => {
  const doc = {
    package: [
      { name: 'requests', version: '2.31.0', groups: ['main'], files: [{ file: 'a.whl', hash: H('1') }] },
      { name: 'black', version: '24.1.0', groups: ['dev'], files: [{ file: 'b.whl', hash: H('2') }] },
      {
        name: 'idna',
        version: '3.6',
        category: 'main',
        markers: 'python_version >= "3.8"',
        files: [{ file: 'c', hash: H('3') }],
      },
    ],
  };
  assert.deepEqual(
    poetryPackages(doc, 'poetry.lock', fail).map((p) => [p.name, p.version, p.hashes.length, p.marker]),
    [
      ['requests', '2.31.0', 1, undefined],
      ['idna', '3.6', 1, 'python_version >= "3.8"'],
    ],
  );
  const git = {
    package: [{ name: 'x', version: '1', groups: ['main'], source: { type: 'git', url: 'u' }, files: [] }],
  };
  assert.throws(() => poetryPackages(git, 'poetry.lock', fail), /'x' comes from a git source/);
});

test('requirements.txt must pin with == and carry hashes', () => {
  const good = `# generated\nsix==1.16.0 \\\n    --hash=${H('a').replace('sha256:', 'sha256:')}\nfoo[bar]==1.0 --hash=${H('b')} ; python_version > "3"\n`;
  checkRequirements(good, 'requirements.txt', fail);
  assert.throws(() => checkRequirements('six>=1\n', 'requirements.txt', fail), /'six>=1' is not pinned with ==/);
  assert.throws(
    () => checkRequirements('six==1.16.0\n', 'requirements.txt', fail),
    /'six==1\.16\.0' has no --hash; generate/,
  );
  assert.throws(() => checkRequirements('-e .\n', 'requirements.txt', fail), /'-e' is not supported here/);
});

test('wheel platform tags: manylinux of the CPU; none for other systems', () => {
  assert.ok(wheelPlatforms({ os: 'linux', architecture: 'arm64' })!.includes('manylinux2014_aarch64'));
  assert.ok(wheelPlatforms({ os: 'linux', architecture: 'amd64' })!.includes('manylinux1_x86_64'));
  assert.equal(wheelPlatforms({ os: 'windows', architecture: 'amd64' }), undefined);
});

test('a real uv.lock and poetry.lock (TOML read by python3) become a hashed requirements file', async (t) => {
  if (!requirePeer(t, 'python3')) return;
  const dir = await mkdtemp(join(tmpdir(), 'berth-preset-py-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'main.py'), 'print("hi")\n');
  await writeFile(
    join(dir, 'uv.lock'),
    `version = 1
requires-python = ">=3.11"

[[package]]
name = "six"
version = "1.16.0"
source = { registry = "https://pypi.org/simple" }
wheels = [
    { url = "https://files/six-1.16.0-py2.py3-none-any.whl", hash = "${H('a')}", size = 11053 },
]

[[package]]
name = "svc"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "six" }]
`,
  );
  const spec = 'apiVersion: berth/v1\nkind: Image\npreset: python\n';
  const out = join(dir, '..', `${dir.split('/').pop()}-out`);
  t.after(() => rm(out, { recursive: true, force: true }));
  const p = await pythonPreset(parseSpec(spec), await Context.open(dir), { outDir: out });
  assert.equal(await readFile(join(out, 'requirements.txt'), 'utf8'), `six==1.16.0 --hash=${H('a')}\n`);
  assert.deepEqual(p.config.entrypoint, ['python3', '/app/main.py']);

  await rm(join(dir, 'uv.lock'));
  await writeFile(
    join(dir, 'poetry.lock'),
    `[[package]]\nname = "six"\nversion = "1.16.0"\ngroups = ["main"]\nfiles = [{file = "six.whl", hash = "${H('b')}"}]\n`,
  );
  await pythonPreset(parseSpec(spec), await Context.open(dir), { outDir: out });
  assert.equal(await readFile(join(out, 'requirements.txt'), 'utf8'), `six==1.16.0 --hash=${H('b')}\n`);

  await writeFile(join(dir, 'poetry.lock'), '[[package]\nname=');
  await assert.rejects(
    pythonPreset(parseSpec(spec), await Context.open(dir), { outDir: out }),
    /poetry\.lock is not valid TOML/,
  );
  await rm(join(dir, 'poetry.lock'));
  await assert.rejects(
    pythonPreset(parseSpec(spec), await Context.open(dir), { outDir: out }),
    /preset python installs from a lock: uv\.lock, poetry\.lock, or requirements\.txt with hashes/,
  );
});
