import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareVersions, parseDepends, parseStanzas, satisfies } from './deb-control.js';
import { type DebCandidate, resolve, ResolveError, universe } from './deb-resolve.js';

test('dpkg version order: epochs, ~ before everything, letters before other signs, numbers numerically', () => {
  const ordered = [
    '1.0~rc1',
    '1.0',
    '1.0-1',
    '1.0-1+b1',
    '1.0a',
    '1.0+dfsg',
    '1.2',
    '1.10',
    '2:0.1',
    '2:0.1-1~deb12u1',
    '2:0.1-1',
  ];
  for (let i = 0; i + 1 < ordered.length; i++) {
    assert.ok(compareVersions(ordered[i], ordered[i + 1]) < 0, `${ordered[i]} < ${ordered[i + 1]}`);
    assert.ok(compareVersions(ordered[i + 1], ordered[i]) > 0);
  }
  assert.equal(compareVersions('1.0-1', '1.0-1'), 0);
  assert.equal(compareVersions('0:1.0', '1.0'), 0);
  assert.equal(compareVersions('1.01', '1.1'), 0);
  assert.ok(satisfies('2.36-9+deb12u4', '>=', '2.36'));
  assert.ok(!satisfies('2.36-9', '>>', '2.36-9'));
  assert.ok(satisfies('3.0.11-1~deb12u2', '<<', '3.0.11-1'));
});

test('dependency fields: alternatives, versions, arch qualifiers, continuation lines', () => {
  assert.deepEqual(parseDepends('libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0,\n perl:any, libfoo (<< 2)'), [
    [{ name: 'libc6', relation: '>=', version: '2.34', archQualifier: undefined }],
    [
      { name: 'debconf', relation: '>=', version: '0.5', archQualifier: undefined },
      { name: 'debconf-2.0', relation: undefined, version: undefined, archQualifier: undefined },
    ],
    [{ name: 'perl', relation: undefined, version: undefined, archQualifier: 'any' }],
    [{ name: 'libfoo', relation: '<<', version: '2', archQualifier: undefined }],
  ]);
  assert.throws(() => parseDepends('libc6 (>= 2.34'), /cannot parse dependency/);
  const [s] = parseStanzas('Package: a\nDescription: one\n two\n .\n');
  assert.equal(s.get('Description'), 'one\ntwo\n.');
});

const pkg = (name: string, version: string, deps: Partial<DebCandidate> = {}): DebCandidate => ({
  name,
  version,
  architecture: 'amd64',
  filename: `pool/${name}_${version}.deb`,
  size: 1,
  sha256: '0'.repeat(64),
  source: { url: 'http://x' },
  ...deps,
});

test('resolve: highest version, Pre-Depends, first satisfiable alternative, virtual packages, exclude, clear errors', () => {
  const u = universe([
    pkg('libc6', '2.31'),
    pkg('libc6', '2.36-9'),
    pkg('app', '1', { depends: 'libc6 (>= 2.34), mta | mail-transport-agent', preDepends: 'init-system-helpers' }),
    pkg('init-system-helpers', '1.65'),
    pkg('postfix', '3.7', { provides: 'mail-transport-agent' }),
    pkg('exim4', '4.96', { provides: 'mail-transport-agent' }),
    pkg('tool', '1', { depends: 'awk' }),
    pkg('mawk', '1.3', { provides: 'awk' }),
    pkg('needs-new', '1', { depends: 'libc6 (>= 3)' }),
    pkg('cfg', '1', { depends: 'debconf (>= 0.5) | debconf-2.0' }),
  ]);
  const names = (list: DebCandidate[]) => list.map((p) => `${p.name}=${p.version}`);
  // mta does not exist: the virtual mail-transport-agent's lowest-named provider is taken.
  assert.deepEqual(names(resolve(u, ['app'])), ['app=1', 'exim4=4.96', 'init-system-helpers=1.65', 'libc6=2.36-9']);
  // A provider chosen already satisfies the virtual dependency.
  assert.deepEqual(names(resolve(u, ['postfix', 'app'])).includes('exim4=4.96'), false);
  assert.deepEqual(names(resolve(u, ['tool'])), ['mawk=1.3', 'tool=1']);
  assert.deepEqual(names(resolve(u, ['cfg'], ['debconf'])), ['cfg=1']);
  assert.throws(
    () => resolve(u, ['needs-new']),
    (e: Error) => {
      assert.ok(e instanceof ResolveError);
      assert.match(
        e.message,
        /needs-new 1 depends on "libc6 \(>= 3\)", which no package in the sources satisfies; the sources have libc6 2\.36-9/,
      );
      return true;
    },
  );
  assert.throws(() => resolve(u, ['cfg']), /depends on "debconf \(>= 0\.5\) \| debconf-2\.0"/);
  assert.throws(() => resolve(u, ['awk']), /"awk" is a virtual package; include one of its providers: mawk/);
  assert.throws(() => resolve(u, ['nope']), /no package "nope"/);
});
