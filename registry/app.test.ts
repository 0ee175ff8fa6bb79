// Fast, in-process checks of the HTTP surface on the memory driver (the e2e tests prove the same with real clients).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createApp, parseTarget } from './app.js';
import { parseRange } from './routes/blobs.js';
import { createStore } from '../storage/index.js';
import { MemoryDriver } from '../storage/memory.js';
import { type OciError, digestOf } from '../spec/index.js';

test('targets are parsed from the right, names validated', () => {
  assert.deepEqual(parseTarget('/v2/'), { route: 'base', name: undefined, reference: undefined });
  assert.deepEqual(parseTarget('/v2/a/manifests/b/manifests/latest'), {
    route: 'manifest',
    name: 'a/manifests/b',
    reference: 'latest',
  });
  assert.deepEqual(parseTarget('/v2/a/b/blobs/uploads/'), { route: 'uploads', name: 'a/b', reference: undefined });
  assert.deepEqual(parseTarget('/v2/a/b/blobs/uploads/xyz'), { route: 'upload', name: 'a/b', reference: 'xyz' });
  assert.deepEqual(parseTarget('/v2/x/tags/list'), { route: 'tags', name: 'x', reference: undefined });
  assert.equal(parseTarget('/v2/_catalog')?.route, 'catalog');
  assert.equal(parseTarget('/other'), undefined);
  assert.throws(
    () => parseTarget('/v2/A/tags/list'),
    (e: OciError) => e.code === 'NAME_INVALID',
  );
});

test('Range parsing: single ranges only, 416 for unsatisfiable', () => {
  assert.deepEqual(parseRange('bytes=0-0', 10), { start: 0, end: 0 });
  assert.deepEqual(parseRange('bytes=5-', 10), { start: 5, end: 9 });
  assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange('bytes=-30', 10), { start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=8-100', 10), { start: 8, end: 9 });
  assert.equal(parseRange(undefined, 10), undefined);
  assert.deepEqual(parseRange('Bytes=1-2', 10), { start: 1, end: 2 }, 'units are case-insensitive');
  for (const bad of ['bytes=10-', 'bytes=5-4', 'bytes=-0', 'bytes=x', 'bytes=-']) {
    assert.throws(
      () => parseRange(bad, 10),
      (e: OciError) => e.code === 'RANGE_INVALID',
      bad,
    );
  }
  // RFC 9110 §14.2: a unit the server does not understand is ignored (the full body), never a 416.
  for (const other of ['items=0-1', 'chunks=0-1', 'none', '']) assert.equal(parseRange(other, 10), undefined, other);
  assert.throws(
    () => parseRange('bytes=0-1,3-4', 10),
    (e: OciError & { status?: number }) => e.status === 400,
  );
});

test('in-process push and pull on the memory driver', async () => {
  const app = createApp({
    store: createStore(new MemoryDriver()),
    deleteEnabled: true,
    maxManifestBytes: 1 << 20,
    maxPageSize: 100,
  });
  const blob = Buffer.from('{}');
  const digest = digestOf(blob);
  const post = await app.request(`/v2/m/r/blobs/uploads/?digest=${digest}`, { method: 'POST', body: blob });
  assert.equal(post.status, 201);
  assert.equal(post.headers.get('docker-distribution-api-version'), 'registry/2.0');
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest, size: 2 },
    layers: [],
  });
  const put = await app.request('/v2/m/r/manifests/t', {
    method: 'PUT',
    body: manifest,
    headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(put.status, 201);
  const get = await app.request('/v2/m/r/manifests/t', {
    headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
  });
  assert.equal(get.status, 200);
  assert.equal(
    get.headers.get('content-type'),
    'application/vnd.oci.image.manifest.v1+json',
    'the stored type, whatever Accept says',
  );
  assert.equal(await get.text(), manifest);
  const blobGet = await app.request(`/v2/m/r/blobs/${digest}`);
  assert.equal(await blobGet.text(), '{}');
  const err = await app.request('/v2/m/r/manifests/nope');
  assert.equal(err.status, 404);
  assert.equal(err.headers.get('docker-distribution-api-version'), 'registry/2.0');
  assert.equal((await err.json()).errors[0].code, 'MANIFEST_UNKNOWN');
  const wrongMethod = await app.request('/v2/m/r/tags/list', { method: 'POST' });
  assert.equal(wrongMethod.status, 405);
  // Unknown endpoints are 404 (distribution's router), inside /v2 and out; 405 is only a known endpoint's wrong method.
  for (const path of [
    '/v2/m/r/nothing/here',
    '/v2/m/r/blobs/uploads/id/extra',
    '/v2/m/r/tags',
    '/v3/',
    '/v2/m/r/_manifests',
  ]) {
    const res = await app.request(path, { method: 'GET' });
    assert.equal(res.status, 404, path);
    assert.equal((await res.json()).errors[0].code, 'NOT_FOUND', path);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  }
});
