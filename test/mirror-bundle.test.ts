// Air-gapped bundles end to end (issue 21): `berth bundle create` writes images from one berth (with an SBOM
// referrer attached by oras) to a tar; skopeo reads the tar as an oci-archive; a second, incremental bundle holds
// only the blobs the first lacks; `berth bundle load` pushes both into another berth, where crane, regctl and skopeo
// find the same digests, the referrer, and every blob intact. A damaged bundle stores nothing.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile, open as openFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import tar from 'tar-stream';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { startBerth } from './support/berth.js';
import { startDistribution } from './support/distribution.js';
import { ok, requirePeer, run } from './support/peers.js';
import { cosignKeyPair } from './support/cosign.js';
import { makeLayeredLayout } from './support/oci-layouts.js';
import { berthCli } from './support/transfer-fixtures.js';

async function workDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp('/tmp/berth-bundle-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function tarEntries(file: string): Promise<string[]> {
  const names: string[] = [];
  const ex = tar.extract();
  const feed = pipeline(createReadStream(file), ex as unknown as NodeJS.WritableStream);
  for await (const e of ex) {
    names.push(e.header.name);
    e.resume();
  }
  await feed;
  return names;
}

async function bundle(...args: string[]) {
  const res = await berthCli(['bundle', ...args, '--json'], { timeoutMs: 120_000 });
  let doc: any;
  try {
    doc = JSON.parse(res.stdout);
  } catch {
    doc = undefined;
  }
  return { ...res, doc };
}

const digest = async (ref: string) => ok(await run('crane', ['digest', '--insecure', ref])).trim();

test('bundle create → incremental bundle → load: same digests, referrers, every blob checked', async (t) => {
  if (!requirePeer(t, 'crane', 'regctl', 'skopeo', 'oras')) return;
  const dir = await workDir(t);
  const src = await startBerth(t);
  const img = await makeLayeredLayout(join(dir, 'img'), { layers: 2, layerBytes: 1 << 20 });
  ok(await berthCli(['push', '-q', img.dir, `${src.host}/team/app:v1`]));
  ok(await berthCli(['push', '-q', img.dir, `${src.host}/base:1`]));
  await writeFile(join(dir, 'sbom.json'), '{"spdxVersion":"SPDX-2.3"}');
  ok(
    await run(
      'oras',
      [
        'attach',
        '--plain-http',
        '--artifact-type',
        'application/spdx+json',
        `${src.host}/team/app:v1`,
        'sbom.json:application/spdx+json',
      ],
      { cwd: dir },
    ),
  );
  const week1 = join(dir, 'week1.tar');
  const first = await bundle('create', week1, `${src.host}/team/app:v1`, `${src.host}/base:1`);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.doc.images, 2);
  assert.equal(first.doc.referrers, 1);
  // A real OCI archive: skopeo reads an image out of it by its ref.name.
  const inspected = JSON.parse(ok(await run('skopeo', ['inspect', `oci-archive:${week1}:team/app:v1`])));
  assert.equal(inspected.Digest, await digest(`${src.host}/team/app:v1`));

  // v2 = v1 + one layer: the incremental bundle carries the new layer, config and manifests, not v1's layers.
  await mkdir(join(dir, 'extra'));
  await writeFile(join(dir, 'extra', 'hello.txt'), 'hello\n');
  ok(
    await berthCli([
      'append',
      `${src.host}/team/app:v1`,
      '--dir',
      join(dir, 'extra'),
      '--tag',
      `${src.host}/team/app:v2`,
    ]),
  );
  const week2 = join(dir, 'week2.tar');
  const second = await bundle('create', week2, `${src.host}/team/app:v2`, '--since', week1);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.doc.blobs.skipped, 2, 'the two shared layers are left to week1');
  const week1Blobs = (await tarEntries(week1)).filter((n) => n.startsWith('blobs/'));
  const week2Blobs = (await tarEntries(week2)).filter((n) => n.startsWith('blobs/'));
  for (const l of img.layers) {
    const name = `blobs/sha256/${l.digest.slice(7)}`;
    assert.ok(week1Blobs.includes(name));
    assert.ok(!week2Blobs.includes(name), `${name} is not written again`);
  }

  const dst = await startBerth(t);
  // Out of order: week2 alone lacks v1's layers, and says what to do.
  const early = await bundle('load', week2, `${dst.host}/airgap`);
  assert.equal(early.code, 1);
  assert.match(early.stderr, /is not in this bundle \(it is incremental.*load the previous bundle first/);
  const ok1 = await bundle('load', week1, `${dst.host}/airgap`);
  assert.equal(ok1.code, 0, ok1.stderr);
  assert.equal(ok1.doc.images, 2);
  const ok2 = await bundle('load', week2, `${dst.host}/airgap`);
  assert.equal(ok2.code, 0, ok2.stderr);
  assert.equal(ok2.doc.blobs.skipped >= 2, true, 'v1 layers were already there');

  for (const [from, to] of [
    ['team/app:v1', 'airgap/team/app:v1'],
    ['team/app:v2', 'airgap/team/app:v2'],
    ['base:1', 'airgap/base:1'],
  ])
    assert.equal(await digest(`${dst.host}/${to}`), await digest(`${src.host}/${from}`), to);
  ok(await run('regctl', ['registry', 'set', '--tls', 'disabled', dst.host]));
  const v1 = await digest(`${dst.host}/airgap/team/app:v1`);
  const refs = ok(
    await run('regctl', ['artifact', 'list', `${dst.host}/airgap/team/app@${v1}`, '--format', '{{json .}}']),
  );
  assert.match(refs, /application\/spdx\+json/);
  const check = join(dir, 'check');
  ok(
    await run('skopeo', [
      'copy',
      '--src-tls-verify=false',
      `docker://${dst.host}/airgap/team/app:v2`,
      `oci:${check}:x`,
    ]),
  );
});

test('a damaged bundle is refused before anything is pushed', async (t) => {
  if (!requirePeer(t, 'crane')) return;
  const dir = await workDir(t);
  const src = await startBerth(t);
  const img = await makeLayeredLayout(join(dir, 'img'), { layers: 1, layerBytes: 256 * 1024 });
  ok(await berthCli(['push', '-q', img.dir, `${src.host}/app:v1`]));
  const out = join(dir, 'bundle');
  const made = await bundle('create', out, `${src.host}/app:v1`);
  assert.equal(made.code, 0, made.stderr);
  assert.equal((await bundle('verify', out)).code, 0);
  // Flip one byte of the layer.
  const layer = join(out, 'blobs', 'sha256', img.layers[0].digest.slice(7));
  const fh = await openFile(layer, 'r+');
  await fh.write(Buffer.from([0x42]), 0, 1, 1000);
  await fh.close();
  const dst = await startBerth(t);
  const res = await bundle('load', out, dst.host);
  assert.equal(res.code, 7, res.stderr);
  assert.match(res.stderr, new RegExp(`blob ${img.layers[0].digest} in the bundle does not match its digest`));
  const catalog = ok(await run('crane', ['catalog', '--insecure', dst.host])).trim();
  assert.equal(catalog, '', 'nothing was pushed');
  assert.equal((await bundle('verify', out)).code, 7);
  // Existing output is never overwritten.
  const again = await bundle('create', out, `${src.host}/app:v1`);
  assert.match(again.stderr, /exists already/);
  assert.deepEqual(await readdir(join(out, 'blobs', 'sha256')).then((l) => l.length > 0), true);
});

test('a bundle by sync rule carries cosign signatures that still verify after the load', async (t) => {
  if (!requirePeer(t, 'distribution', 'cosign', 'crane')) return;
  const dir = await workDir(t);
  const up = await startDistribution({ logLevel: 'warn' });
  t.after(() => up.stop());
  const img = await makeLayeredLayout(join(dir, 'img'), { layers: 1, layerBytes: 128 * 1024 });
  for (const tag of ['1.0.0', '1.1.0', '2.0.0'])
    ok(await berthCli(['push', '-q', img.dir, `${up.host}/team/app:${tag}`]));
  const digest = await (async () =>
    ok(await run('crane', ['digest', '--insecure', `${up.host}/team/app:1.1.0`])).trim())();
  const cosign = await cosignKeyPair(dir);
  await cosign.sign(`${up.host}/team/app@${digest}`);
  const config = join(dir, 'berth.yaml');
  await writeFile(
    config,
    JSON.stringify({
      storage: { filesystem: { root: join(dir, 'unused') } },
      sync: [
        {
          name: 'app',
          url: up.url,
          allowPrivateNetworks: true,
          repositories: ['team/app'],
          prefix: 'mirror',
          tags: { semver: '1.x' },
        },
      ],
    }),
  );
  const out = join(dir, 'rule.tar');
  const made = await bundle('create', out, '-c', config, '--rule', 'app');
  assert.equal(made.code, 0, made.stderr);
  assert.equal(made.doc.images, 3, '1.0.0, 1.1.0 and the signature tag');
  const dst = await startBerth(t);
  const loaded = await bundle('load', out, dst.host);
  assert.equal(loaded.code, 0, loaded.stderr);
  const tags = ok(await run('crane', ['ls', '--insecure', `${dst.host}/mirror/team/app`]))
    .trim()
    .split('\n')
    .sort();
  assert.deepEqual(tags, ['1.0.0', '1.1.0', `sha256-${digest.slice(7)}.sig`]);
  await cosign.verify(`${dst.host}/mirror/team/app@${digest}`);
});
