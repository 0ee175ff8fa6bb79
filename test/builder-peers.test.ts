// The builder against real peers: umoci unpacks exactly what the spec asked for, skopeo reads the layout and the
// index, the Docker engine loads the docker-archive and runs it, distribution 2.8.2 takes the push, docker and
// containerd pull it from there, and a second image built on it as `base:` runs too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmod,
  copyFile,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeClients } from './support/clients.js';
import { startDistribution } from './support/distribution.js';
import { startContainerd, startDockerd } from './support/docker.js';
import { ok, requirePeer, run, findExecutable } from './support/peers.js';
import { berth, parseBuild, writeTree } from './support/builder-fixtures.js';
import { startBerth } from './support/berth.js';
import { validateImage } from './support/validate-image.js';

const SPEC = `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
layers:
  - name: busybox
    files:
      - { src: busybox, dest: /bin/busybox, mode: "0755" }
      - { symlink: busybox, dest: /bin/sh }
  - name: app
    properties: { uid: 1000, gid: 1000, mode: "0640" }
    files:
      - { inline: "hello from berth build\\n", dest: /srv/hello.txt }
      - { src: "site/**", dest: /srv/site/ }
      - { directory: /data, mode: "0700", uid: 65532, gid: 65532 }
      - { symlink: /srv/hello.txt, dest: /hello }
config: { entrypoint: [/bin/sh, -c], cmd: ["cat /hello; id -u"], user: "1000:1000", workdir: /srv }
`;
const EXPECTED = 'hello from berth build\n1000\n';

async function context(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-bb-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await copyFile('/bin/busybox', join(dir, 'busybox'));
  await writeTree(dir, { 'site/index.html': '<p>hi</p>\n', 'site/img/logo.svg': '<svg/>\n' });
  await writeFile(join(dir, 'berth.yaml'), SPEC);
  return dir;
}

test('umoci unpacks exactly the files, modes, owners and symlinks asked for; skopeo reads layout and index', async (t) => {
  if (!requirePeer(t, 'busybox', 'umoci', 'skopeo')) return;
  const dir = await context(t);
  const out = join(dir, 'out');
  const r = parseBuild(
    await berth([
      'build',
      '-f',
      join(dir, 'berth.yaml'),
      '--cache',
      join(dir, '.cache'),
      '--oci-layout',
      `${out}:v1`,
      '--json',
    ]),
  );
  assert.equal(r.mediaType, 'application/vnd.oci.image.index.v1+json');
  const built = await validateImage(`oci:${out}:v1`, { layers: 2 });
  assert.equal(built.digest, r.digest);
  assert.deepEqual(
    built.images?.map((i) => i.platform),
    ['linux/amd64', 'linux/arm64'],
  );
  const clients = await makeClients(t);
  const raw = JSON.parse(ok(await clients.skopeo(['inspect', '--raw', `oci:${out}:v1`])));
  assert.deepEqual(
    raw.manifests.map((m: any) => `${m.platform.os}/${m.platform.architecture}`),
    ['linux/amd64', 'linux/arm64'],
  );
  const info = JSON.parse(ok(await clients.skopeo(['inspect', '--override-arch', 'amd64', `oci:${out}:v1`])));
  assert.ok([r.digest, r.images[0].digest].includes(info.Digest), `skopeo digest ${info.Digest}`);
  assert.equal(info.Created, '1970-01-01T00:00:00Z');
  assert.equal(info.Layers.length, 2);

  // umoci reads one image manifest: put the amd64 one under its own tag.
  const single = join(dir, 'single');
  ok(
    await berth([
      'build',
      '-f',
      join(dir, 'berth.yaml'),
      '--cache',
      join(dir, '.cache'),
      '--platform',
      'linux/amd64',
      '--oci-layout',
      `${single}:amd64`,
    ]),
  );
  const bundle = join(dir, 'bundle');
  ok(await run('umoci', ['unpack', '--rootless', '--image', `${single}:amd64`, bundle]));
  const fs = join(bundle, 'rootfs');
  const mode = async (p: string) => (await lstat(join(fs, p))).mode & 0o7777;
  assert.equal(await mode('bin/busybox'), 0o755);
  assert.equal(await readlink(join(fs, 'bin/sh')), 'busybox');
  assert.equal(await readlink(join(fs, 'hello')), '/srv/hello.txt');
  assert.equal(await readFile(join(fs, 'srv/hello.txt'), 'utf8'), 'hello from berth build\n');
  assert.equal(await mode('srv/hello.txt'), 0o640);
  assert.equal(await mode('srv/site/img/logo.svg'), 0o640);
  assert.equal(await mode('data'), 0o700);
  assert.equal(await mode('srv'), 0o755);
  const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
  assert.deepEqual(config.process.args, ['/bin/sh', '-c', 'cat /hello; id -u']);
  // Owners: a rootful unpack keeps them (the rootless one maps all to the caller).
  if (process.getuid?.() === 0) {
    const b2 = join(dir, 'bundle-root');
    ok(await run('umoci', ['unpack', '--image', `${single}:amd64`, b2]));
    const own = async (p: string) => {
      const s = await lstat(join(b2, 'rootfs', p));
      return `${s.uid}:${s.gid}`;
    };
    assert.equal(await own('srv/hello.txt'), '1000:1000');
    assert.equal(await own('srv/site/index.html'), '1000:1000');
    assert.equal(await own('data'), '65532:65532');
    assert.equal(await own('srv'), '0:0'); // implied parent: fixed metadata
    assert.equal(await own('bin/busybox'), '0:0');
  }
});

test('a tar: entry (made by GNU tar, gzip and zstd) unpacks with umoci to the archive tree under dest', async (t) => {
  if (!requirePeer(t, 'umoci', 'tar', 'zstd')) return;
  const dir = await mkdtemp(join(tmpdir(), 'berth-tar-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const tree = join(dir, 'tree');
  await writeTree(tree, { 'bin/hello': '#!/bin/sh\necho hi\n', 'etc/app.conf': 'k=v\n', 'var/empty/.keep': '' });
  await chmod(join(tree, 'bin/hello'), 0o750);
  await chmod(join(tree, 'etc/app.conf'), 0o600);
  await chmod(join(tree, 'var/empty'), 0o700);
  await symlink('hello', join(tree, 'bin/hi'));
  await link(join(tree, 'bin/hello'), join(tree, 'bin/hello2'));
  await mkdir(join(dir, 'vendor'));
  ok(await run('tar', ['-czf', join(dir, 'vendor/rootfs.tgz'), '--owner=4242', '--group=4242', '-C', tree, '.']));
  ok(await run('tar', ['--zstd', '-cf', join(dir, 'vendor/rootfs.tar.zst'), '-C', tree, '.']));
  const spec = (archive: string) =>
    `apiVersion: berth/v1\nkind: Image\nlayers:\n  - name: vendor\n    properties: { uid: 1000, gid: 1000 }\n    files:\n      - { tar: ${archive}, dest: /opt/vendor }\n`;
  await writeFile(join(dir, 'gz.yaml'), spec('vendor/rootfs.tgz'));
  await writeFile(join(dir, 'zst.yaml'), spec('vendor/rootfs.tar.zst'));
  const layout = join(dir, 'out');
  const gz = parseBuild(
    await berth([
      'build',
      '-f',
      join(dir, 'gz.yaml'),
      '--cache',
      join(dir, '.cache'),
      '--oci-layout',
      `${layout}:gz`,
      '--json',
    ]),
  );
  const zst = parseBuild(
    await berth([
      'build',
      '-f',
      join(dir, 'zst.yaml'),
      '--cache',
      join(dir, '.cache'),
      '--oci-layout',
      `${layout}:zst`,
      '--json',
    ]),
  );
  assert.equal(zst.digest, gz.digest, 'the same tree from a gzip and a zstd archive is the same image');

  const bundle = join(dir, 'bundle');
  ok(await run('umoci', ['unpack', '--rootless', '--image', `${layout}:gz`, bundle]));
  const fs = join(bundle, 'rootfs/opt/vendor');
  const mode = async (p: string) => (await lstat(join(fs, p))).mode & 0o7777;
  assert.equal(await readFile(join(fs, 'bin/hello'), 'utf8'), '#!/bin/sh\necho hi\n');
  assert.equal(await mode('bin/hello'), 0o750);
  assert.equal(await mode('etc/app.conf'), 0o600);
  assert.equal(await mode('var/empty'), 0o700);
  assert.equal(await readlink(join(fs, 'bin/hi')), 'hello');
  // The hard link arrives as a copy of its target.
  assert.equal(await readFile(join(fs, 'bin/hello2'), 'utf8'), '#!/bin/sh\necho hi\n');
  assert.equal(await mode('bin/hello2'), 0o750);
  assert.ok((await lstat(join(fs, 'var/empty/.keep'))).isFile());
  if (process.getuid?.() === 0) {
    const b2 = join(dir, 'bundle-root');
    ok(await run('umoci', ['unpack', '--image', `${layout}:gz`, b2]));
    const own = async (p: string) => {
      const s = await lstat(join(b2, 'rootfs', p));
      return `${s.uid}:${s.gid}`;
    };
    assert.equal(await own('opt/vendor/bin/hello'), '1000:1000', "the spec's owner, not the archive's 4242");
    assert.equal(await own('opt/vendor/var/empty'), '1000:1000');
    assert.equal(await own('opt'), '0:0');
  }
});

test('docker loads the docker-archive and runs it; distribution takes the push; docker and containerd pull it; a base: build runs', async (t) => {
  if (!requirePeer(t, 'busybox', 'docker', 'distribution', 'containerd')) return;
  const dir = await context(t);
  const reg = await startDistribution();
  t.after(() => reg.stop());
  const dockerd = await startDockerd({ insecureRegistries: [reg.host] });
  t.after(() => dockerd.stop());

  const archive = join(dir, 'img.tar');
  ok(
    await berth([
      'build',
      '-f',
      join(dir, 'berth.yaml'),
      '--cache',
      join(dir, '.cache'),
      '--platform',
      'linux/amd64',
      '--docker-archive',
      archive,
      '--tag',
      'berth-test/app:v1',
    ]),
  );
  ok(await dockerd.docker(['load', '-i', archive]));
  assert.equal(ok(await dockerd.docker(['run', '--rm', '--network', 'none', 'berth-test/app:v1'])), EXPECTED);

  const ref = `${reg.host}/team/app:v1`;
  const pushed = await berth([
    'build',
    '-f',
    join(dir, 'berth.yaml'),
    '--cache',
    join(dir, '.cache'),
    '--push',
    ref,
    '--json',
  ]);
  const r = parseBuild(pushed);
  assert.ok(
    r.images[0].layers.every((l) => l.cached),
    'the second build reuses cached layers',
  );
  // Pushing the same build again uploads nothing.
  const again = parseBuild(
    await berth(['build', '-f', join(dir, 'berth.yaml'), '--cache', join(dir, '.cache'), '--push', ref, '--json']),
  );
  assert.equal(again.digest, r.digest);

  ok(await dockerd.docker(['pull', ref]));
  assert.equal(ok(await dockerd.docker(['run', '--rm', '--network', 'none', ref])), EXPECTED);

  const ctrd = await startContainerd();
  t.after(() => ctrd.stop());
  ok(await ctrd.ctr(['images', 'pull', '--plain-http', '--platform', 'linux/amd64', ref]));
  const list = ok(await ctrd.ctr(['images', 'ls']));
  assert.match(list, new RegExp(r.digest.replace(':', ':')));
  ok(await ctrd.ctr(['images', 'check']));

  // An image built on the pushed one: base layers are appended to, never unpacked; it is pushed with them.
  const child = await mkdtemp(join(tmpdir(), 'berth-child-'));
  t.after(() => rm(child, { recursive: true, force: true }));
  await writeFile(
    join(child, 'berth.yaml'),
    `apiVersion: berth/v1
kind: Image
base: ${ref}
platforms: [linux/amd64]
layers:
  - name: extra
    files:
      - { inline: "child layer\\n", dest: /srv/child.txt }
config: { cmd: ["cat /hello /srv/child.txt"] }
`,
  );
  const cref = `${reg.host}/team/child:v1`;
  const c = parseBuild(
    await berth(['build', '-f', join(child, 'berth.yaml'), '--cache', join(child, '.cache'), '--push', cref, '--json']),
  );
  assert.equal(c.images[0].layers.length, 1);
  ok(await dockerd.docker(['pull', cref]));
  assert.equal(
    ok(await dockerd.docker(['run', '--rm', '--network', 'none', cref])),
    'hello from berth build\nchild layer\n',
  );
  const inspect = JSON.parse(ok(await dockerd.docker(['image', 'inspect', cref])))[0];
  assert.equal(inspect.RootFS.Layers.length, 3);
  assert.ok(findExecutable('docker') !== undefined);
});

test('the multi-platform busybox image pushed to berth serve: skopeo reads the index, docker pulls and runs it, containerd pulls and unpacks it', async (t) => {
  if (!requirePeer(t, 'busybox', 'docker', 'containerd', 'skopeo')) return;
  const dir = await context(t);
  const reg = await startBerth(t);
  const dockerd = await startDockerd({ insecureRegistries: [reg.host] });
  t.after(() => dockerd.stop());
  const ref = `${reg.host}/team/busybox-app:v1`;
  const r = parseBuild(
    await berth(['build', '-f', join(dir, 'berth.yaml'), '--cache', join(dir, '.cache'), '--push', ref, '--json']),
  );
  assert.equal(r.mediaType, 'application/vnd.oci.image.index.v1+json');

  const clients = await makeClients(t);
  const raw = JSON.parse(ok(await clients.skopeo(['inspect', '--tls-verify=false', '--raw', `docker://${ref}`])));
  assert.deepEqual(
    raw.manifests.map((m: any) => `${m.platform.os}/${m.platform.architecture}`),
    ['linux/amd64', 'linux/arm64'],
  );

  ok(await dockerd.docker(['pull', ref]));
  assert.equal(ok(await dockerd.docker(['run', '--rm', '--network', 'none', ref])), EXPECTED);
  const inspect = JSON.parse(ok(await dockerd.docker(['image', 'inspect', ref])))[0];
  assert.equal(inspect.RootFS.Layers.length, 2, 'two layers: busybox and app');

  const ctrd = await startContainerd();
  t.after(() => ctrd.stop());
  ok(await ctrd.ctr(['images', 'pull', '--plain-http', '--platform', 'linux/amd64', ref]));
  ok(await ctrd.ctr(['images', 'check']));
  // Unpacked by containerd's own snapshotter: the files are really there.
  const mounts = await mkdtemp(join(tmpdir(), 'berth-ctr-mount-'));
  ok(await ctrd.ctr(['images', 'mount', '--platform', 'linux/amd64', ref, mounts]));
  try {
    assert.equal(await readFile(join(mounts, 'srv/hello.txt'), 'utf8'), 'hello from berth build\n');
    assert.equal(await readlink(join(mounts, 'bin/sh')), 'busybox');
  } finally {
    await ctrd.ctr(['images', 'unmount', mounts]);
    await rm(mounts, { recursive: true, force: true });
  }
});

test('berth.lock pins base: by digest until --update-lock', async (t) => {
  if (!requirePeer(t, 'distribution')) return;
  const reg = await startDistribution();
  t.after(() => reg.stop());
  const dir = await mkdtemp(join(tmpdir(), 'berth-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const baseSpec = (text: string) =>
    `apiVersion: berth/v1\nkind: Image\nlayers:\n  - name: l\n    files:\n      - { inline: "${text}", dest: /v.txt }\n`;
  const pushBase = async (text: string) => {
    await writeFile(join(dir, 'base.yaml'), baseSpec(text));
    return parseBuild(
      await berth([
        'build',
        '-f',
        join(dir, 'base.yaml'),
        '--cache',
        join(dir, '.cache'),
        '--push',
        `${reg.host}/base:latest`,
        '--json',
      ]),
    ).digest;
  };
  const v1 = await pushBase('one');
  await writeFile(join(dir, 'berth.yaml'), `apiVersion: berth/v1\nkind: Image\nbase: ${reg.host}/base:latest\n`);
  const child = (extra: string[] = []) =>
    berth([
      'build',
      '-f',
      join(dir, 'berth.yaml'),
      '--cache',
      join(dir, '.cache'),
      '--oci-layout',
      join(dir, 'out'),
      '--json',
      ...extra,
    ]);
  ok(await child(['--lock']));
  const lock = JSON.parse(await readFile(join(dir, 'berth.lock'), 'utf8'));
  assert.deepEqual(lock.base, { ref: `${reg.host}/base:latest`, digest: v1 });
  const first = parseBuild(await child());
  const v2 = await pushBase('two');
  assert.notEqual(v2, v1);
  assert.equal(parseBuild(await child()).digest, first.digest, 'the locked base is used although the tag moved');
  const updated = parseBuild(await child(['--update-lock']));
  assert.notEqual(updated.digest, first.digest);
  assert.equal(JSON.parse(await readFile(join(dir, 'berth.lock'), 'utf8')).base.digest, v2);
});
