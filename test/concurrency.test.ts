// 32 clients push the same blob (by every upload path) and the same tag at once: no error other than a clean
// retryable one, and a consistent final state.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { startBerth } from './support/berth.js';
import { raw, sha256, imageManifest, pushManifest } from './support/registry-client.js';

const CLIENTS = 32;

test(`${CLIENTS} clients push the same blob and the same tag concurrently`, async (t) => {
  const berth = await startBerth(t);
  const base = berth.url;
  const blob = randomBytes(4 * 1024 * 1024);
  const digest = sha256(blob);
  const half = blob.length / 2;

  const pushOne = async (i: number): Promise<number> => {
    const name = i % 2 ? 'same/repo' : 'same/other';
    switch (i % 3) {
      case 0: // single POST
        return (await raw(base, 'POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, { body: blob })).status;
      case 1: {
        // POST + monolithic PUT
        const loc = (await raw(base, 'POST', `/v2/${name}/blobs/uploads/`)).header('location')!;
        return (await raw(base, 'PUT', `${loc}?digest=${digest}`, { body: blob })).status;
      }
      default: {
        // chunked
        const loc = (await raw(base, 'POST', `/v2/${name}/blobs/uploads/`)).header('location')!;
        await raw(base, 'PATCH', loc, { body: blob.subarray(0, half), headers: { 'Content-Range': `0-${half - 1}` } });
        return (
          await raw(base, 'PUT', `${loc}?digest=${digest}`, {
            body: blob.subarray(half),
            headers: { 'Content-Range': `${half}-${blob.length - 1}` },
          })
        ).status;
      }
    }
  };
  const blobStatuses = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => pushOne(i)));
  assert.deepEqual(blobStatuses, Array(CLIENTS).fill(201));
  for (const name of ['same/repo', 'same/other']) {
    const got = await raw(base, 'GET', `/v2/${name}/blobs/${digest}`);
    assert.equal(got.status, 200);
    assert.equal(sha256(got.body), digest);
  }

  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const configDigest = sha256(config);
  assert.equal(
    (await raw(base, 'POST', `/v2/same/repo/blobs/uploads/?digest=${configDigest}`, { body: config })).status,
    201,
  );
  const manifests = Array.from({ length: CLIENTS }, (_, i) =>
    imageManifest({ digest: configDigest, size: config.length }, [{ digest, size: blob.length }], {
      annotations: { client: String(i) },
    }),
  );
  const results = await Promise.all(manifests.map((m) => pushManifest(base, 'same/repo', 'latest', m)));
  assert.deepEqual(
    results.map((r) => r.status),
    Array(CLIENTS).fill(201),
  );
  const final = await raw(base, 'GET', '/v2/same/repo/manifests/latest');
  assert.equal(final.status, 200);
  const winner = final.header('docker-content-digest');
  assert.ok(
    results.some((r) => r.header('docker-content-digest') === winner),
    'the tag points at one of the pushed manifests',
  );
  assert.equal(sha256(final.body), winner);
  // Every pushed manifest stays addressable by digest.
  for (const r of results)
    assert.equal((await raw(base, 'HEAD', `/v2/same/repo/manifests/${r.header('docker-content-digest')}`)).status, 200);
  assert.deepEqual((await raw(base, 'GET', '/v2/same/repo/tags/list')).json().tags, ['latest']);
});
