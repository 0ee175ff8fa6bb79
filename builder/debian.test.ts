import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { accountMembers, debArch, debianInputs, debianLayer, type LockedDeb } from './debian.js';
import { BuildOptionError, parseSpec } from './spec.js';

const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

test("the README's packages.debian example is a valid spec", () => {
  const at = README.indexOf('### Debian packages as the base');
  const block = /```yaml\n([\s\S]*?)```/.exec(README.slice(at))![1];
  const { spec } = parseSpec(block);
  assert.deepEqual(spec.packages?.debian?.include, ['libc6', 'ca-certificates', 'tzdata', 'busybox']);
});

test('packages.debian and accounts: names, suites and fields are validated with the field named', () => {
  const base = (debian: string, extra = '') =>
    `apiVersion: berth/v1\nkind: Image\npackages:\n  debian:\n${debian}${extra}`;
  const ok = '    sources: [{ url: "http://deb.example/debian", suites: [bookworm] }]\n    include: [libc6]\n';
  parseSpec(base(ok));
  assert.throws(
    () => parseSpec(base(ok.replace('libc6', 'LibC6'))),
    /packages\.debian\.include\[0\]: "LibC6" has the wrong format/,
  );
  assert.throws(
    () => parseSpec(base(ok.replace('[bookworm]', '["../x"]'))),
    /packages\.debian\.sources\[0\]\.suites\[0\]/,
  );
  assert.throws(() => parseSpec(base(ok.replace('http://', 'file://'))), /packages\.debian\.sources\[0\]\.url/);
  assert.throws(() => parseSpec(base(ok, '    mirror: x\n')), /unknown field "mirror"/);
  const loaded = parseSpec(
    base(ok, 'accounts:\n  users: [{ name: app, uid: 1000, gid: 1000 }, { name: web, uid: 1000, gid: 1000 }]\n'),
  );
  assert.throws(
    () => accountMembers(loaded, loaded.spec.accounts),
    /accounts\.users\[1\]: id 1000 is already taken \(by app\)/,
  );
  const root = parseSpec(base(ok, 'accounts:\n  groups: [{ name: root, gid: 5 }]\n'));
  assert.throws(() => accountMembers(root, root.spec.accounts), /accounts\.groups\[0\]: name "root" is already taken/);
});

test('Debian architectures of OCI platforms; the lock inputs ignore URLs and list order', () => {
  assert.equal(debArch({ os: 'linux', architecture: 'arm64' }), 'arm64');
  assert.equal(debArch({ os: 'linux', architecture: 'arm', variant: 'v7' }), 'armhf');
  assert.equal(debArch({ os: 'windows', architecture: 'amd64' }), undefined);
  const a = debianInputs({ sources: [{ url: 'http://a/debian', suites: ['bookworm'] }], include: ['b', 'a'] });
  const b = debianInputs({
    sources: [{ url: 'http://snapshot/x', suites: ['bookworm'], components: ['main'] }],
    include: ['a', 'b'],
  });
  assert.equal(a, b);
  assert.notEqual(a, debianInputs({ sources: [{ url: 'http://a/debian', suites: ['trixie'] }], include: ['a', 'b'] }));
});

test('a lock that names a source the spec lacks is a lock error naming the spec field, not a CLI flag', async () => {
  const loaded = parseSpec(
    'apiVersion: berth/v1\nkind: Image\npackages:\n  debian:\n' +
      '    sources: [{ url: "http://deb.example/debian", suites: [bookworm] }]\n    include: [libc6]\n',
    'berth.yaml',
  );
  const locked = [
    {
      name: 'libc6',
      version: '2.36-9',
      architecture: 'amd64',
      sha256: '0'.repeat(64),
      size: 1,
      url: 'http://deb.example/debian/pool/main/g/glibc/libc6.deb',
      source: 1,
      filename: 'pool/main/g/glibc/libc6.deb',
    },
  ] as LockedDeb[];
  // The source check comes before any download: the repository is never used.
  const opts = { repo: undefined as never, staging: undefined as never, locked };
  await assert.rejects(debianLayer(loaded, { os: 'linux', architecture: 'amd64' }, opts), (e: unknown) => {
    assert.ok(e instanceof BuildOptionError, String(e));
    assert.equal(e.option, 'lock');
    assert.match(e.message, /^berth\.yaml:\d+ packages\.debian\.sources: berth\.lock pins libc6 to source 1, which/);
    assert.match(e.message, /re-pin the packages$/);
    assert.doesNotMatch(e.message, / --/, 'builder/ names no CLI flag');
    return true;
  });
});
