// Real clients round-trip images through `berth serve`: docker engine, containerd, skopeo, crane, oras, regctl.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { makeClients } from './support/clients.js';
import { startContainerd, startDockerd } from './support/docker.js';
import { makeBusyboxLayout, makeMultiArchLayout } from './support/oci-layouts.js';
import { ok, readJson, requirePeer } from './support/peers.js';
import { startBerth, type Berth } from './support/berth.js';
import { startS3Server, S3_PEER } from './support/s3-server.js';

async function workDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp('/tmp/berth-clients-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('real clients against berth serve', async (t) => {
  await roundTrips(t, await startBerth(t));
});

// Both ways a blob GET can go on S3: redirected to a presigned URL (clients fetch from the bucket), and proxied
// through berth (the relay of storage/http-relay.ts).
for (const blobGet of ['redirect', 'proxy'] as const) {
  test(`real clients against berth serve on S3 (SeaweedFS), blob GETs ${blobGet === 'redirect' ? 'redirected' : 'proxied'}`, async (t) => {
    if (!requirePeer(t, S3_PEER)) return;
    const s3 = await startS3Server();
    t.after(() => s3.stop());
    const config = `${[
      'storage:',
      `  s3: { bucket: ${s3.bucket}, endpoint: "${s3.endpoint}", region: ${s3.region}, forcePathStyle: true, accessKeyId: ${s3.accessKeyId}, secretAccessKey: ${s3.secretAccessKey}, blobGet: ${blobGet} }`,
    ].join('\n')}\n`;
    await roundTrips(t, await startBerth(t, { config }));
  });
}

async function roundTrips(t: TestContext, berth: Berth): Promise<void> {
  if (!requirePeer(t, 'skopeo', 'busybox')) return;
  const clients = await makeClients(t);
  const dir = await workDir(t);
  const image = await makeBusyboxLayout(join(dir, 'busybox'), { tag: 'v1' });
  const ref = `${berth.host}/team/busybox:v1`;
  ok(await clients.skopeo(['copy', image.ref, `docker://${ref}`, '--dest-tls-verify=false']));

  await t.test('docker engine: pull, run, tag, push', async (t) => {
    if (!requirePeer(t, 'docker')) return;
    const engine = await startDockerd({ insecureRegistries: [berth.host] });
    t.after(engine.stop);
    ok(await engine.docker(['pull', ref]));
    assert.equal(ok(await engine.docker(['run', '--rm', '--network', 'none', ref])).trim(), 'hello-from-berth');
    const pushed = `${berth.host}/team/pushed-by-docker:v2`;
    ok(await engine.docker(['tag', ref, pushed]));
    const out = ok(await engine.docker(['push', pushed]));
    const digest = /digest: (sha256:[a-f0-9]{64})/.exec(out)?.[1];
    assert.ok(digest, out);
    ok(await engine.docker(['rmi', pushed, ref]));
    ok(await engine.docker(['pull', pushed]));
    assert.equal(ok(await engine.docker(['run', '--rm', '--network', 'none', pushed])).trim(), 'hello-from-berth');
    const head = await fetch(`${berth.url}/v2/team/pushed-by-docker/manifests/v2`, { method: 'HEAD' });
    assert.equal(head.headers.get('docker-content-digest'), digest);
  });

  await t.test('containerd: ctr pull + unpack, push', async (t) => {
    if (!requirePeer(t, 'containerd')) return;
    const containerd = await startContainerd();
    t.after(containerd.stop);
    ok(await containerd.ctr(['images', 'pull', '--plain-http', ref]));
    const snapshots = join(containerd.dir, 'root', 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    assert.ok(
      readdirSync(snapshots).some((id) => existsSync(join(snapshots, id, 'fs', 'bin', 'busybox'))),
      'unpacked',
    );
    const pushed = `${berth.host}/team/pushed-by-ctr:v1`;
    ok(await containerd.ctr(['images', 'tag', ref, pushed]));
    ok(await containerd.ctr(['images', 'push', '--plain-http', pushed]));
    const res = await fetch(`${berth.url}/v2/team/pushed-by-ctr/manifests/v1`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), image.manifest.digest);
  });

  await t.test('skopeo: oci-layout → berth → oci-layout with --all keeps every digest', async () => {
    const multi = await makeMultiArchLayout(join(dir, 'multi'), { tag: 'm1' });
    const remote = `docker://${berth.host}/team/multi:m1`;
    ok(await clients.skopeo(['copy', '--all', multi.ref, remote, '--dest-tls-verify=false']));
    const pushed = ok(
      await clients.skopeo(['inspect', '--format', '{{.Digest}}', '--tls-verify=false', remote]),
    ).trim();
    assert.equal(pushed, multi.index.digest);
    const back = join(dir, 'back');
    ok(await clients.skopeo(['copy', '--all', '--src-tls-verify=false', remote, `oci:${back}:m1`]));
    const index = await readJson<{ manifests: Array<{ digest: string }> }>(join(back, 'index.json'));
    assert.equal(index.manifests[0].digest, multi.index.digest);
    const nested = await readJson<{ manifests: Array<{ digest: string }> }>(
      join(back, 'blobs', 'sha256', multi.index.digest.slice(7)),
    );
    assert.deepEqual(nested.manifests.map((m) => m.digest).sort(), multi.images.map((i) => i.digest).sort());
  });

  await t.test('crane: push, pull, copy, ls, catalog, delete', async (t) => {
    if (!requirePeer(t, 'crane')) return;
    const tarball = join(dir, 'crane.tar');
    ok(await clients.crane(['pull', '--insecure', ref, tarball]));
    ok(await clients.crane(['push', '--insecure', tarball, `${berth.host}/crane/pushed:t1`]));
    ok(await clients.crane(['copy', '--insecure', ref, `${berth.host}/crane/copied:c1`]));
    assert.equal(
      ok(await clients.crane(['digest', '--insecure', `${berth.host}/crane/copied:c1`])).trim(),
      image.manifest.digest,
    );
    ok(await clients.crane(['tag', '--insecure', `${berth.host}/crane/copied:c1`, 'c2']));
    assert.deepEqual(
      ok(await clients.crane(['ls', '--insecure', `${berth.host}/crane/copied`]))
        .trim()
        .split('\n'),
      ['c1', 'c2'],
    );
    const catalog = ok(await clients.crane(['catalog', '--insecure', berth.host]))
      .trim()
      .split('\n');
    for (const repo of ['crane/copied', 'crane/pushed', 'team/busybox'])
      assert.ok(catalog.includes(repo), `${repo} in ${catalog}`);
    ok(await clients.crane(['delete', '--insecure', `${berth.host}/crane/copied@${image.manifest.digest}`]));
    const gone = await clients.crane(['manifest', '--insecure', `${berth.host}/crane/copied:c1`]);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /MANIFEST_UNKNOWN/);
  });

  await t.test('oras: push/pull an artifact, attach and discover referrers', async (t) => {
    if (!requirePeer(t, 'oras')) return;
    const file = join(dir, 'hello.txt');
    await writeFile(file, 'artifact payload\n');
    const art = `${berth.host}/oras/artifact:v1`;
    ok(
      await clients.oras(
        ['push', '--plain-http', '--artifact-type', 'application/vnd.berth.test', art, `hello.txt:text/plain`],
        { cwd: dir },
      ),
    );
    const out = join(dir, 'pulled');
    ok(await clients.oras(['pull', '--plain-http', '-o', out, art]));
    assert.equal(await readFile(join(out, 'hello.txt'), 'utf8'), 'artifact payload\n');
    await writeFile(join(dir, 'sig.txt'), 'signature\n');
    ok(
      await clients.oras(
        ['attach', '--plain-http', '--artifact-type', 'application/vnd.berth.signature', ref, 'sig.txt:text/plain'],
        { cwd: dir },
      ),
    );
    const discovered = JSON.parse(ok(await clients.oras(['discover', '--plain-http', '--format', 'json', ref])));
    const referrers = discovered.referrers ?? discovered.manifests ?? [];
    assert.equal(referrers.length, 1, JSON.stringify(discovered));
    assert.equal(referrers[0].artifactType, 'application/vnd.berth.signature');
  });

  await t.test('regctl: image copy, tag ls, referrers', async (t) => {
    if (!requirePeer(t, 'regctl')) return;
    ok(await clients.regctl(['registry', 'set', '--tls', 'disabled', berth.host]));
    ok(await clients.regctl(['image', 'copy', ref, `${berth.host}/regctl/copy:r1`]));
    assert.equal(ok(await clients.regctl(['tag', 'ls', `${berth.host}/regctl/copy`])).trim(), 'r1');
    assert.equal(
      ok(await clients.regctl(['image', 'digest', `${berth.host}/regctl/copy:r1`])).trim(),
      image.manifest.digest,
    );
    ok(
      await clients.regctl(
        [
          'artifact',
          'put',
          '--subject',
          `${berth.host}/regctl/copy:r1`,
          '--artifact-type',
          'application/vnd.berth.sbom',
          `${berth.host}/regctl/copy`,
        ],
        { input: 'sbom-data' },
      ),
    );
    const list = JSON.parse(
      ok(await clients.regctl(['artifact', 'list', '--format', 'body', `${berth.host}/regctl/copy:r1`])),
    );
    assert.equal(list.manifests.length, 1, JSON.stringify(list));
    assert.equal(list.manifests[0].artifactType, 'application/vnd.berth.sbom');
  });
}
