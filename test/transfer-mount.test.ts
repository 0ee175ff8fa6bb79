// `build --push` mounts the base image's layers from the base's repository when the destination registry is the
// same one (distribution-spec end-11, as `copy` does): counted at a proxy in front of berth, the base layer's
// bytes are never uploaded again, and the pushed image is complete.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth } from './support/berth.js';
import { startCountingProxy } from './support/counting-proxy.js';
import { ok } from './support/peers.js';
import { berthCli, makeBigLayout } from './support/transfer-fixtures.js';

const BASE_SIZE = 24 << 20;

test('build --push mounts base layers from the base repository instead of uploading them', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'berth-mount-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const base = await makeBigLayout(join(work, 'base'), BASE_SIZE);
  const reg = await startBerth(t);
  const proxy = await startCountingProxy(reg.url);
  t.after(() => proxy.stop());
  ok(await berthCli(['push', `${base.dir}:${base.tag}`, `${proxy.host}/team/base:v1`]));

  await writeFile(
    join(work, 'berth.yaml'),
    `apiVersion: berth/v1
kind: Image
base: ${proxy.host}/team/base:v1
layers:
  - name: app
    files:
      - { inline: "app\\n", dest: /srv/app.txt }
`,
  );
  proxy.bytesUp.clear();
  proxy.counts.clear();
  const built = JSON.parse(
    ok(
      await berthCli([
        'build',
        '-f',
        join(work, 'berth.yaml'),
        '--cache',
        join(work, 'cache'),
        '--no-sbom',
        '--push',
        `${proxy.host}/team/app:v1`,
        '--json',
      ]),
    )
      .trim()
      .split('\n')
      .pop()!,
  );
  assert.deepEqual(built.outputs[0].blobs.mounted, 1, JSON.stringify(built.outputs[0]));
  const uploaded = proxy.bytesIn('PATCH', '/team/app/') + proxy.bytesIn('PUT', '/team/app/blobs');
  assert.ok(uploaded < 1 << 20, `only the new layer and config are uploaded, not the base layer (${uploaded} bytes)`);
  assert.equal(proxy.bytesOut('GET', `/blobs/${base.layer.digest}`), 0, 'nor is the base layer downloaded');
  assert.ok(proxy.count('POST', '/team/app/blobs/uploads') >= 1);

  // The pushed image has the base layer (the registry refuses a manifest with a missing blob, and reads it back).
  const inspect = JSON.parse(ok(await berthCli(['inspect', '--json', `${reg.host}/team/app:v1`])));
  assert.equal(inspect.layers[0].digest, base.layer.digest);
  assert.equal(inspect.layers.length, 2);
});
