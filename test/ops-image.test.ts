// berth's own image: staged by image/stage.mjs (Node.js from the npm registry, no host binary), built by `berth
// build` (image/berth.yaml: a Debian-package base pinned by image/berth.lock, amd64 + arm64) twice to prove it
// reproducible, with an SBOM per platform that lists the pinned packages, pushed to a berth registry, pulled and
// run by the docker engine as `berth serve` — then a smoke push and pull against it; containerd pulls it per
// platform.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBerth } from './support/berth.js';
import { startContainerd, startDockerd } from './support/docker.js';
import { freePort, ok, requirePeer, run, waitForHttp } from './support/peers.js';
import { raw, pushBlob, pushManifest, imageManifest, sha256 } from './support/registry-client.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('berth image: Debian packages + npm node, reproducible, runs berth serve in docker, smoke push and pull, containerd pulls both platforms', {
  timeout: 900_000,
}, async (t) => {
  if (!requirePeer(t, 'docker', 'containerd', 'gpgv', 'xz')) return;
  const stage = await mkdtemp('/tmp/berth-image-');
  t.after(() => rm(stage, { recursive: true, force: true }));
  ok(await run(process.execPath, [join(ROOT, 'image/stage.mjs'), join(stage, 'ctx')], { timeoutMs: 300_000 }));

  const registry = await startBerth(t);
  const ref = `${registry.host}/berth/berth:test`;
  ok(
    await run(
      process.execPath,
      [
        join(ROOT, 'bin/berth.js'),
        'build',
        '-f',
        join(ROOT, 'image/berth.yaml'),
        '--context',
        join(stage, 'ctx'),
        '--cache',
        join(stage, 'cache'),
        '--check-reproducible',
        '--push',
        ref,
      ],
      { timeoutMs: 600_000 },
    ),
  );
  const index = JSON.parse(
    (
      await raw(registry.url, 'GET', '/v2/berth/berth/manifests/test', {
        headers: { Accept: 'application/vnd.oci.image.index.v1+json' },
      })
    ).body.toString(),
  );
  assert.deepEqual(
    index.manifests.map((m: any) => `${m.platform.os}/${m.platform.architecture}`),
    ['linux/amd64', 'linux/arm64'],
  );

  // Each platform image carries its SPDX SBOM as a referrer: every Debian package image/berth.lock pins for that
  // architecture, by the purl scanners match, and the npm registry's node binary among the files.
  const lock = JSON.parse(await readFile(join(ROOT, 'image/berth.lock'), 'utf8'));
  const get = async (path: string, accept = 'application/vnd.oci.image.manifest.v1+json') =>
    JSON.parse(
      (await raw(registry.url, 'GET', `/v2/berth/berth/${path}`, { headers: { Accept: accept } })).body.toString(),
    );
  for (const m of index.manifests) {
    const arch = m.platform.architecture;
    const referrers = await get(`referrers/${m.digest}`, 'application/vnd.oci.image.index.v1+json');
    const sboms = referrers.manifests.filter((r: any) => r.artifactType === 'application/spdx+json');
    assert.equal(sboms.length, 1, `${arch}: one SBOM`);
    const doc = await get(`blobs/${(await get(`manifests/${sboms[0].digest}`)).layers[0].digest}`);
    const purls = doc.packages.flatMap((p: any) => (p.externalRefs ?? []).map((r: any) => r.referenceLocator));
    assert.ok(lock.debian.architectures[arch].length >= 5);
    for (const p of lock.debian.architectures[arch])
      assert.ok(
        purls.includes(
          `pkg:deb/debian/${encodeURIComponent(p.name)}@${encodeURIComponent(p.version)}?arch=${p.architecture}&distro=debian-12`,
        ),
        `${arch} SBOM lists ${p.name} ${p.version}`,
      );
    assert.ok(
      doc.files.some((f: any) => f.fileName === './usr/local/bin/node'),
      `${arch} SBOM lists /usr/local/bin/node`,
    );
  }

  const dockerd = await startDockerd({ insecureRegistries: [registry.host] });
  t.after(() => dockerd.stop());
  ok(await dockerd.docker(['pull', ref], { timeoutMs: 300_000 }));
  const inspect = JSON.parse(ok(await dockerd.docker(['image', 'inspect', ref])))[0];
  assert.equal(inspect.Config.User, '65532:65532', 'runs as non-root');
  assert.deepEqual(inspect.Config.Entrypoint, ['/usr/local/bin/node', '/app/bin/berth.js']);

  // The engine has no bridge here: host networking, on a loopback port of our choosing.
  const port = await freePort();
  const name = `berth-smoke-${port}`;
  ok(
    await dockerd.docker([
      'run',
      '-d',
      '--name',
      name,
      '--network',
      'host',
      '--read-only',
      '--tmpfs',
      '/var/lib/berth:uid=65532,gid=65532',
      ref,
      'serve',
      '--addr',
      `127.0.0.1:${port}`,
      '--root',
      '/var/lib/berth',
    ]),
  );
  t.after(async () => {
    await dockerd.docker(['rm', '-f', name]).catch(() => {});
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/readyz`, { timeoutMs: 30_000 });
  } catch (e) {
    const logs = await dockerd.docker(['logs', name]);
    throw new Error(`${(e as Error).message}\n${logs.stdout}${logs.stderr}`);
  }
  const version = ok(await dockerd.docker(['exec', name, '/usr/local/bin/node', '/app/bin/berth.js', 'version']));
  assert.match(version, /\d+\.\d+\.\d+/);
  assert.match(ok(await dockerd.docker(['run', '--rm', '--network', 'none', ref, '--version'])), /\d+\.\d+\.\d+/);
  // The runtime is the npm registry's node on Debian's glibc, recorded where scanners look.
  assert.equal(ok(await dockerd.docker(['exec', name, '/usr/local/bin/node', '--version'])).trim(), 'v24.22.3');
  const status = ok(
    await dockerd.docker([
      'exec',
      name,
      '/usr/local/bin/node',
      '-p',
      "require('fs').readdirSync('/var/lib/dpkg/status.d').join(' ')",
    ]),
  );
  for (const p of ['libc6', 'libstdc++6', 'ca-certificates', 'tzdata'])
    assert.ok(status.split(/\s+/).includes(p), `${p} in status.d`);

  // Smoke: push an image to the containerised registry and pull it back.
  const layer = Buffer.from('hello from berth in a container\n');
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  await pushBlob(url, 'smoke/app', layer);
  await pushBlob(url, 'smoke/app', config);
  const manifest = imageManifest({ digest: sha256(config), size: config.length }, [
    { digest: sha256(layer), size: layer.length },
  ]);
  assert.equal((await pushManifest(url, 'smoke/app', 'v1', manifest)).status, 201);
  const got = await raw(url, 'GET', '/v2/smoke/app/manifests/v1', {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(got.status, 200);
  assert.equal(sha256(got.body), sha256(manifest));
  const blob = await raw(url, 'GET', `/v2/smoke/app/blobs/${sha256(layer)}`);
  assert.equal(blob.body.toString(), layer.toString());
  assert.equal((await raw(url, 'GET', '/healthz')).status, 200);
  assert.match((await raw(url, 'GET', '/metrics')).body.toString(), /berth_http_requests_total/);
  assert.equal((await raw(url, 'GET', '/v2/')).status, 200);

  // containerd pulls and unpacks each platform's image.
  const ctrd = await startContainerd();
  t.after(() => ctrd.stop());
  for (const platform of ['linux/amd64', 'linux/arm64']) {
    ok(await ctrd.ctr(['images', 'pull', '--plain-http', '--platform', platform, ref], { timeoutMs: 300_000 }));
  }
  ok(await ctrd.ctr(['images', 'check']));
});
