// The SBOM of `berth build --push`, seen by real clients: berth's referrers API, `oras discover` and
// `regctl artifact list` show an application/spdx+json referrer on each platform image; `oras pull` and
// `regctl artifact get` give SPDX 2.3 JSON whose files are exactly the layer's. distribution 2.8.2 has no referrers
// API: the client keeps the `sha256-<hex>` fallback tag index and oras/regctl find the SBOM through it.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { startBerth } from './support/berth.js';
import { berth, parseBuild, writeTree, type BuildJson } from './support/builder-fixtures.js';
import { makeClients, type Clients } from './support/clients.js';
import { startDistribution } from './support/distribution.js';
import { ok, requirePeer } from './support/peers.js';

const SPDX = 'application/spdx+json';
const SPEC = `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
layers:
  - name: deps
    files:
      - { src: "node_modules/**", dest: /app/node_modules/ }
  - name: app
    files:
      - { src: "dist/{arch}/server.js", dest: /app/server.js }
      - { inline: "hello\\n", dest: /etc/motd }
      - { symlink: /app/server.js, dest: /server }
`;
const LOCK = {
  name: 'svc',
  lockfileVersion: 3,
  packages: {
    '': { name: 'svc', dependencies: { ms: '2.1.3' } },
    'node_modules/ms': {
      version: '2.1.3',
      resolved: 'https://registry.npmjs.org/ms/-/ms-2.1.3.tgz',
      integrity: 'sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==',
    },
    'node_modules/mocha': { version: '10.0.0', dev: true },
  },
};

type SbomBuild = Omit<BuildJson, 'images'> & { images: (BuildJson['images'][number] & { sbom?: string })[] };

async function context(t: TestContext, extraSpec = ''): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-sbom-e2e-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeTree(dir, {
    'node_modules/ms/package.json': '{"name":"ms","version":"2.1.3"}\n',
    'node_modules/ms/index.js': 'module.exports = () => 0;\n',
    'dist/amd64/server.js': 'console.log("amd64")\n',
    'dist/arm64/server.js': 'console.log("arm64")\n',
    'package-lock.json': JSON.stringify(LOCK),
    'berth.yaml': SPEC + extraSpec,
  });
  return dir;
}

async function buildPush(dir: string, ref: string, extra: string[] = []): Promise<SbomBuild> {
  return parseBuild(
    await berth([
      'build',
      '-f',
      join(dir, 'berth.yaml'),
      '--cache',
      join(dir, '.cache'),
      '--push',
      ref,
      '--json',
      ...extra,
    ]),
  ) as SbomBuild;
}

/** sha256 of every regular file in the image's layers, as SPDX names them (`./path`). */
async function layerFiles(registryUrl: string, repo: string, image: string): Promise<Map<string, string>> {
  const manifest = await (
    await fetch(`${registryUrl}/v2/${repo}/manifests/${image}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    })
  ).json();
  const out = new Map<string, string>();
  for (const l of manifest.layers) {
    const blob = Buffer.from(await (await fetch(`${registryUrl}/v2/${repo}/blobs/${l.digest}`)).arrayBuffer());
    const ex = tar.extract();
    const done = (async () => {
      for await (const e of ex) {
        const h = createHash('sha256');
        for await (const c of e) h.update(c as Buffer);
        if (e.header.type === 'file') out.set(`./${e.header.name}`, h.digest('hex'));
      }
    })();
    Readable.from([gunzipSync(blob)]).pipe(ex as any);
    await done;
  }
  return out;
}

function assertSbom(doc: any, image: string, files: Map<string, string>): void {
  assert.equal(doc.spdxVersion, 'SPDX-2.3');
  assert.equal(doc.creationInfo.created, '1970-01-01T00:00:00Z');
  assert.equal(doc.packages[0].versionInfo, image);
  const listed = new Map<string, string>(
    doc.files.map((f: any) => [f.fileName, f.checksums.find((c: any) => c.algorithm === 'SHA256').checksumValue]),
  );
  assert.deepEqual(listed, files, 'the SBOM lists exactly the layer files with their sha256');
  assert.deepEqual(
    doc.packages.filter((p: any) => p.SPDXID.startsWith('SPDXRef-npm-')).map((p: any) => `${p.name}@${p.versionInfo}`),
    ['ms@2.1.3'],
  );
}

async function discover(clients: Clients, ref: string): Promise<any[]> {
  const d = JSON.parse(ok(await clients.oras(['discover', '--plain-http', '--format', 'json', ref])));
  return d.referrers ?? d.manifests ?? [];
}

test('berth build --push to berth: the referrers API, oras and regctl show and fetch the SPDX SBOM', async (t) => {
  if (!requirePeer(t, 'oras', 'regctl')) return;
  const reg = await startBerth(t);
  t.after(() => reg.stop());
  const dir = await context(t);
  const clients = await makeClients(t);
  ok(await clients.regctl(['registry', 'set', '--tls', 'disabled', reg.host]));
  const r = await buildPush(dir, `${reg.host}/sbom/app:v1`);
  assert.equal(r.images.length, 2);
  for (const img of r.images) {
    assert.ok(img.sbom, `${img.platform} has an SBOM`);
    const index = await (await fetch(`${reg.url}/v2/sbom/app/referrers/${img.digest}`)).json();
    assert.deepEqual(
      index.manifests.map((m: any) => [m.digest, m.artifactType]),
      [[img.sbom, SPDX]],
      'referrers API',
    );
    const ref = `${reg.host}/sbom/app@${img.digest}`;
    assert.deepEqual(
      (await discover(clients, ref)).map((m: any) => [m.digest, m.artifactType]),
      [[img.sbom, SPDX]],
      'oras discover',
    );
    const list = JSON.parse(ok(await clients.regctl(['artifact', 'list', '--format', 'body', ref])));
    assert.deepEqual(
      list.manifests.map((m: any) => [m.digest, m.artifactType]),
      [[img.sbom, SPDX]],
      'regctl artifact list',
    );

    const files = await layerFiles(reg.url, 'sbom/app', img.digest);
    assert.equal(files.size, 4);
    const viaRegctl = JSON.parse(ok(await clients.regctl(['artifact', 'get', `${reg.host}/sbom/app@${img.sbom}`])));
    assertSbom(viaRegctl, img.digest, files);
    const out = join(dir, `pulled-${img.platform.replace('/', '-')}`);
    ok(await clients.oras(['pull', '--plain-http', '-o', out, `${reg.host}/sbom/app@${img.sbom}`]));
    const names = await readdir(out);
    assert.deepEqual(names, [`sbom-${img.platform.replace('/', '-')}.spdx.json`]);
    assert.deepEqual(
      JSON.parse(await readFile(join(out, names[0]), 'utf8')),
      viaRegctl,
      'oras pull gives the same document',
    );
  }

  // A rebuild pushes the same SBOM bytes (reproducible) and nothing twice.
  const again = await buildPush(dir, `${reg.host}/sbom/app:v1`);
  assert.deepEqual(
    again.images.map((i) => i.sbom),
    r.images.map((i) => i.sbom),
  );
  const index = await (await fetch(`${reg.url}/v2/sbom/app/referrers/${r.images[0].digest}`)).json();
  assert.equal(index.manifests.length, 1);

  // --no-sbom and `sbom: false` attach nothing.
  const none = await buildPush(dir, `${reg.host}/sbom/none:v1`, ['--no-sbom']);
  assert.ok(none.images.every((i) => !i.sbom));
  assert.deepEqual(
    (await (await fetch(`${reg.url}/v2/sbom/none/referrers/${none.images[0].digest}`)).json()).manifests,
    [],
  );
  await writeFile(join(dir, 'berth.yaml'), `${SPEC}sbom: false\n`);
  const off = await buildPush(dir, `${reg.host}/sbom/off:v1`);
  assert.deepEqual(
    (await (await fetch(`${reg.url}/v2/sbom/off/referrers/${off.images[1].digest}`)).json()).manifests,
    [],
  );
});

test('berth build --push to distribution 2.8.2: the SBOM is found through the referrers fallback tag', async (t) => {
  if (!requirePeer(t, 'distribution', 'oras', 'regctl')) return;
  const reg = await startDistribution();
  t.after(() => reg.stop());
  const dir = await context(t);
  const clients = await makeClients(t);
  ok(await clients.regctl(['registry', 'set', '--tls', 'disabled', reg.host]));
  const r = await buildPush(dir, `${reg.host}/sbom/app:v1`);
  const tags = (await (await fetch(`${reg.url}/v2/sbom/app/tags/list`)).json()).tags.sort();
  assert.deepEqual(
    tags,
    [...r.images.map((i) => i.digest.replace(':', '-')), 'v1'].sort(),
    'one fallback tag per image',
  );
  for (const img of r.images) {
    const ref = `${reg.host}/sbom/app@${img.digest}`;
    assert.deepEqual(
      (await discover(clients, ref)).map((m: any) => [m.digest, m.artifactType]),
      [[img.sbom, SPDX]],
      'oras discover',
    );
    const list = JSON.parse(ok(await clients.regctl(['artifact', 'list', '--format', 'body', ref])));
    assert.deepEqual(
      list.manifests.map((m: any) => [m.digest, m.artifactType]),
      [[img.sbom, SPDX]],
      'regctl artifact list',
    );
    const doc = JSON.parse(ok(await clients.regctl(['artifact', 'get', `${reg.host}/sbom/app@${img.sbom}`])));
    assertSbom(doc, img.digest, await layerFiles(reg.url, 'sbom/app', img.digest));
  }
});
