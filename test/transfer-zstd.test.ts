// zstd is loaded only when a build uses it: with the zstd-napi addon unavailable (simulated by pointing
// BERTH_ZSTD_MODULE at a module that does not exist, which fails exactly as a missing addon does), a gzip build
// works and a zstd build fails with one message naming the fix — and writes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { berth, parseBuild } from './support/builder-fixtures.js';
import { makeClients } from './support/clients.js';
import { ok, requirePeer } from './support/peers.js';

const spec = (compression: string) => `apiVersion: berth/v1
kind: Image
compression: ${compression}
layers:
  - name: app
    files:
      - { inline: "hello\\n", dest: /etc/motd }
`;

test('without the zstd addon a gzip build works and a zstd build fails naming the fix, leaving no output', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-zstd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const env = { BERTH_ZSTD_MODULE: 'berth-test-absent-zstd-addon' };
  await writeFile(join(dir, 'gzip.yaml'), spec('gzip'));
  await writeFile(join(dir, 'zstd.yaml'), spec('zstd'));
  const common = ['--cache', join(dir, 'cache'), '--json'];

  const g = parseBuild(
    await berth(['build', '-f', join(dir, 'gzip.yaml'), '--oci-layout', `${join(dir, 'gz')}:v1`, ...common], { env }),
  );
  assert.match(g.digest, /^sha256:/);

  const z = await berth(['build', '-f', join(dir, 'zstd.yaml'), '--oci-layout', join(dir, 'zs'), ...common], { env });
  assert.notEqual(z.code, 0, 'the zstd build must fail');
  assert.match(z.stderr, /zstd needs the native addon berth-test-absent-zstd-addon, which cannot be loaded/);
  assert.match(z.stderr, /npm ci/);
  assert.match(z.stderr, /compression: gzip/);
  assert.doesNotMatch(z.stderr, /binding\.node|\n\s+at /, 'one line, no stack');
  assert.ok(!(await readdir(dir)).includes('zs'), 'nothing written for the failed build');

  // With the addon, the same zstd spec builds, and skopeo reads the zstd layer's media type.
  const zs = parseBuild(
    await berth(['build', '-f', join(dir, 'zstd.yaml'), '--oci-layout', `${join(dir, 'zs')}:v1`, ...common]),
  );
  if (!requirePeer(t, 'skopeo')) return;
  const clients = await makeClients(t);
  const raw = JSON.parse(ok(await clients.skopeo(['inspect', '--raw', `oci:${join(dir, 'zs')}:v1`])));
  assert.equal(raw.layers[0].mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  assert.notEqual(zs.digest, g.digest);
});
