// berth's own image: staged by image/stage.mjs, built by `berth build` (image/berth.yaml), pushed to a berth
// registry, pulled and run by the docker engine as `berth serve` — then a smoke push and pull against it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBerth } from './support/berth.js';
import { startDockerd } from './support/docker.js';
import { freePort, ok, requirePeer, run, waitForHttp } from './support/peers.js';
import { raw, pushBlob, pushManifest, imageManifest, sha256 } from './support/registry-client.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('berth image: built by berth build, runs berth serve in docker, smoke push and pull', {
  timeout: 600_000,
}, async (t) => {
  if (!requirePeer(t, 'docker')) return;
  const stage = await mkdtemp('/tmp/berth-image-');
  t.after(() => rm(stage, { recursive: true, force: true }));
  ok(await run(process.execPath, [join(ROOT, 'image/stage.mjs'), join(stage, 'ctx')]));

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
        '--push',
        ref,
      ],
      { timeoutMs: 300_000 },
    ),
  );

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
});
