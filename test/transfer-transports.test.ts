// Transports (client/transports.ts): one suite writes the same image to every medium — registry, oci:, oci-archive:,
// docker-archive: — and reads it back through the same interface; then real peers check the files: skopeo reads
// what berth wrote, berth reads what skopeo wrote, and docker loads and runs berth's docker-archive.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OciLayout } from '../client/layout.js';
import { Client } from '../client/remote.js';
import { openImage, parseImageRef, writeImage, TransportError } from '../client/transports.js';
import { startBerth } from './support/berth.js';
import { makeBusyboxLayout } from './support/oci-layouts.js';
import { makeClients } from './support/clients.js';
import { startDockerd } from './support/docker.js';
import { ok, requirePeer } from './support/peers.js';
import { berthCli } from './support/transfer-fixtures.js';
import { validateImage } from './support/validate-image.js';

test('parseImageRef: the transports as skopeo spells them, and errors that show the forms', () => {
  assert.deepEqual(parseImageRef('oci:./layout:1.0'), {
    transport: 'oci',
    path: './layout',
    name: '1.0',
    input: 'oci:./layout:1.0',
  });
  const d = `sha256:${'a'.repeat(64)}`;
  assert.equal(parseImageRef(`oci:/x/l@${d}`).name, d);
  assert.equal(parseImageRef('oci:/x/l').name, undefined);
  assert.equal(parseImageRef('oci-archive:img.tar:v1').name, 'v1');
  assert.equal(parseImageRef('docker-archive:x.tar:repo:1.0').name, 'repo:1.0');
  assert.equal(parseImageRef('docker-archive:x.tar').path, 'x.tar');
  assert.equal(parseImageRef('docker://localhost:5000/a/b:1').ref?.repository, 'a/b');
  assert.equal(parseImageRef('localhost:5000/a/b:1').transport, 'docker');
  assert.throws(() => parseImageRef('oci::v1'), TransportError);
  assert.throws(() => parseImageRef('oci:dir:bad tag'), /not a valid tag/);
  assert.throws(() => parseImageRef('docker:localhost/a'), /docker:\/\//);
  assert.throws(() => parseImageRef('Not A Ref'), /oci:DIR\[:TAG\|@DIGEST\]/);
});

test('every transport writes an image and reads back the same manifest, config and layers (shared suite)', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'berth-transports-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const img = await makeBusyboxLayout(join(work, 'src'), { tag: 'v1' });
  const reg = await startBerth(t);
  const client = new Client();
  const src = await OciLayout.open(img.dir);
  const targets = [
    `${reg.host}/suite/app:v1`,
    `oci:${join(work, 'oci')}:v1`,
    `oci-archive:${join(work, 'oci.tar')}:v1`,
    `docker-archive:${join(work, 'docker.tar')}:suite/app:v1`,
  ];
  for (const target of targets) {
    const where = parseImageRef(target);
    const written = await writeImage(src, 'v1', where, client);
    const back = await openImage(where, client);
    try {
      const m = await back.source.manifest(back.reference);
      // A docker-archive has no manifest of its own (one is synthesised with docker media types when read).
      if (where.transport !== 'docker-archive') assert.equal(m.digest, written.digest, `${target}: same digest`);
      const doc = JSON.parse(m.bytes.toString('utf8'));
      assert.equal(doc.config.digest, img.config.digest, `${target}: config`);
      assert.deepEqual(
        doc.layers.map((l: { digest: string }) => l.digest),
        [img.layer.digest],
        `${target}: layers`,
      );
      // Every blob reads back whole and verified (the streams check digest and size).
      for (const desc of [doc.config, ...doc.layers]) {
        let n = 0;
        for await (const c of await back.source.blob(desc, 0)) n += (c as Buffer).length;
        assert.equal(n, desc.size);
      }
      assert.equal(written.digest, img.manifest.digest, `${target}: wrote the source image`);
    } finally {
      await back.close();
    }
  }
});

test('skopeo reads what berth wrote (oci:, oci-archive:, docker-archive:) and berth reads what skopeo wrote', async (t) => {
  if (!requirePeer(t, 'skopeo')) return;
  const work = await mkdtemp(join(tmpdir(), 'berth-transports-peers-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const img = await makeBusyboxLayout(join(work, 'src'), { tag: 'v1' });
  const clients = await makeClients(t);
  const layers = (raw: string) => JSON.parse(raw).layers.map((l: { digest: string }) => l.digest);

  // berth → skopeo
  ok(await berthCli(['copy', `oci:${img.dir}:v1`, `oci:${join(work, 'l')}:1.0`]));
  ok(await berthCli(['copy', `oci:${img.dir}:v1`, `oci-archive:${join(work, 'l.tar')}:1.0`]));
  ok(await berthCli(['copy', `oci:${join(work, 'l')}:1.0`, `docker-archive:${join(work, 'd.tar')}:repo/app:1.0`]));
  const copied = await validateImage(`oci:${join(work, 'l')}:1.0`, { platform: 'linux/amd64', layers: 1 });
  assert.equal(copied.digest, img.manifest.digest);
  assert.deepEqual(copied.layers, [{ ...img.layer, diffId: img.diffId }]);
  const fromOci = ok(await clients.skopeo(['inspect', '--raw', `oci:${join(work, 'l')}:1.0`]));
  assert.deepEqual(layers(fromOci), [img.layer.digest]);
  const fromArchive = ok(await clients.skopeo(['inspect', '--raw', `oci-archive:${join(work, 'l.tar')}:1.0`]));
  assert.equal(fromArchive.trim(), fromOci.trim(), 'the oci-archive holds the same manifest bytes');
  const docker = JSON.parse(ok(await clients.skopeo(['inspect', `docker-archive:${join(work, 'd.tar')}`])));
  assert.deepEqual(docker.RepoTags ?? [], []);
  assert.equal(docker.Layers.length, 1);
  const dockerConfig = JSON.parse(
    ok(await clients.skopeo(['inspect', '--config', `docker-archive:${join(work, 'd.tar')}`])),
  );
  assert.deepEqual(dockerConfig.rootfs.diff_ids, [img.diffId]);

  // `berth inspect oci:./layout:1.0` and `berth digest` on each medium.
  const inspected = JSON.parse(ok(await berthCli(['inspect', '--json', `oci:${join(work, 'l')}:1.0`])));
  assert.equal(inspected.digest, img.manifest.digest);
  assert.equal(ok(await berthCli(['digest', `oci-archive:${join(work, 'l.tar')}:1.0`])).trim(), img.manifest.digest);

  // skopeo → berth
  ok(await clients.skopeo(['copy', img.ref, `oci-archive:${join(work, 's.tar')}:s1`]));
  ok(await clients.skopeo(['copy', img.ref, `docker-archive:${join(work, 's-docker.tar')}:skopeo/app:s1`]));
  const a = JSON.parse(ok(await berthCli(['inspect', '--json', `oci-archive:${join(work, 's.tar')}:s1`])));
  assert.deepEqual(
    a.layers.map((l: { digest: string }) => l.digest),
    [img.layer.digest],
  );
  const cfg = JSON.parse(
    ok(await berthCli(['inspect', '--config', '--json', `docker-archive:${join(work, 's-docker.tar')}:skopeo/app:s1`])),
  );
  assert.deepEqual(cfg.rootfs.diff_ids, [img.diffId]);

  // Bad input: a clear message naming the medium.
  const missing = await berthCli(['inspect', `oci:${join(work, 'nope')}:1.0`]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /is not an OCI layout/);
});

test('pull writes to a transport DEST and push reads a transport SOURCE: registry → oci-archive → registry keeps the digest', async (t) => {
  if (!requirePeer(t, 'skopeo', 'crane')) return;
  const work = await mkdtemp(join(tmpdir(), 'berth-transports-pullpush-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const img = await makeBusyboxLayout(join(work, 'src'), { tag: 'v1' });
  const clients = await makeClients(t);
  const reg = await startBerth(t);
  ok(await berthCli(['push', `oci:${img.dir}:v1`, `${reg.host}/pp/app:v1`]));
  const archive = join(work, 'app.tar');
  const pulled = ok(await berthCli(['pull', `${reg.host}/pp/app:v1`, `oci-archive:${archive}:v1`]));
  assert.match(pulled, new RegExp(`pulled ${reg.host}/pp/app:v1@${img.manifest.digest} into ${archive}`));
  const seen = JSON.parse(ok(await clients.skopeo(['inspect', `oci-archive:${archive}:v1`])));
  assert.equal(seen.Digest, img.manifest.digest);
  // …and back: the archive pushed to another repository under the same digest, as crane sees it.
  const pushed = ok(await berthCli(['push', `oci-archive:${archive}:v1`, `${reg.host}/pp/back:v1`]));
  assert.match(pushed, new RegExp(`pushed ${reg.host}/pp/back:v1@${img.manifest.digest}`));
  assert.equal(ok(await clients.crane(['digest', '--insecure', `${reg.host}/pp/back:v1`])).trim(), img.manifest.digest);
  // A docker-archive DEST, and the usage errors: a registry DEST, two destinations.
  ok(await berthCli(['pull', `${reg.host}/pp/app:v1`, `docker-archive:${join(work, 'd.tar')}:pp/app:v1`]));
  const d = JSON.parse(ok(await clients.skopeo(['inspect', `docker-archive:${join(work, 'd.tar')}`])));
  assert.equal(d.Layers.length, 1);
  const toRegistry = await berthCli(['pull', `${reg.host}/pp/app:v1`, `docker://${reg.host}/pp/x:v1`]);
  assert.equal(toRegistry.code, 2);
  assert.match(toRegistry.stderr, /is a registry; pull writes oci:DIR/);
  const two = await berthCli(['pull', `${reg.host}/pp/app:v1`, `oci:${join(work, 'o')}`, '--oci-layout', work]);
  assert.equal(two.code, 2);
  assert.match(two.stderr, /exactly one of/);
});

test('docker loads and runs the docker-archive berth copy wrote from an OCI layout', async (t) => {
  if (!requirePeer(t, 'docker', 'busybox')) return;
  const work = await mkdtemp(join(tmpdir(), 'berth-transports-docker-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const img = await makeBusyboxLayout(join(work, 'src'), { tag: 'v1' });
  ok(await berthCli(['copy', `oci:${img.dir}:v1`, `docker-archive:${join(work, 'x.tar')}:berth-transports/app:1.0`]));
  const dockerd = await startDockerd({ insecureRegistries: [] });
  t.after(() => dockerd.stop());
  ok(await dockerd.docker(['load', '-i', join(work, 'x.tar')]));
  assert.equal(
    ok(await dockerd.docker(['run', '--rm', '--network', 'none', 'berth-transports/app:1.0'])).trim(),
    'hello-from-berth',
  );
});
