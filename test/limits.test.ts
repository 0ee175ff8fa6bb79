// Limits a hostile client or a full disk finds (issue 14 items 5, 8, 9): quotas count the bytes actually received,
// a full disk answers 507 and keeps nothing partial, bodies that stop arriving time out, open sessions are capped.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRegistry, loadConfig, createLogger, listen, type RunningServer } from '../registry/index.js';
import { MemoryDriver } from '../storage/memory.js';
import { startBerth } from './berth.js';
import { raw, sha256, type RawResponse } from './registry-client.js';

const silent = createLogger('silent', false);
const CHUNKED = { 'Transfer-Encoding': 'chunked', 'Content-Type': 'application/octet-stream' };

/** An in-process registry on the memory driver, served by listen() (the node server, as `berth serve` runs it). */
async function serve(t: TestContext, extra: Record<string, unknown>, driver = new MemoryDriver()) {
  const config = loadConfig({ env: {}, flags: { storage: { filesystem: { root: '/nonexistent' } }, ...extra } });
  const registry = createRegistry(config, driver, silent);
  const server: RunningServer = await listen(registry.app, '127.0.0.1:0', silent, undefined, config.http);
  t.after(() => server.close(1000));
  return { ...registry, driver, server, url: server.url };
}

function expectError(res: RawResponse, status: number, code: string, message?: RegExp): void {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status} ${res.body}`);
  const e = res.json().errors[0];
  assert.equal(e.code, code, res.body.toString());
  if (message) assert.match(e.message, message);
}

test('quota: chunked bodies (no Content-Length) are counted as they arrive; over the quota → DENIED, nothing stored', async (t) => {
  const { url, policies } = await serve(t, { quotas: [{ namespace: 'small', maxBytes: 100_000 }] });
  const big = randomBytes(300_000);
  const digest = sha256(big);
  const quota = /quota exceeded for namespace "small".*nothing of it was stored/;
  const absent = async () => assert.equal((await raw(url, 'HEAD', `/v2/small/a/blobs/${digest}`)).status, 404, 'nothing published');

  // Single-POST monolithic upload, chunked.
  expectError(await raw(url, 'POST', `/v2/small/a/blobs/uploads/?digest=${digest}`, { body: big, headers: CHUNKED }), 403, 'DENIED', quota);
  await absent();

  // POST with a first chunk, PATCH chunks, monolithic PUT into an empty session: each chunked.
  const start = await raw(url, 'POST', '/v2/small/a/blobs/uploads/', { body: big, headers: CHUNKED });
  expectError(start, 403, 'DENIED', quota);
  const session = async () => {
    const r = await raw(url, 'POST', '/v2/small/a/blobs/uploads/');
    assert.equal(r.status, 202);
    return r.header('location')!;
  };
  const patched = await session();
  expectError(await raw(url, 'PATCH', patched, { body: big, headers: CHUNKED }), 403, 'DENIED', quota);
  assert.equal((await raw(url, 'GET', patched)).header('range'), '0-0', 'the refused chunk left nothing in the session');
  // Chunks that each fit but add up past the quota: the session's stored bytes count.
  assert.equal((await raw(url, 'PATCH', patched, { body: big.subarray(0, 60_000), headers: CHUNKED })).status, 202);
  expectError(await raw(url, 'PATCH', patched, { body: big.subarray(60_000, 120_000), headers: CHUNKED }), 403, 'DENIED', quota);
  assert.equal((await raw(url, 'GET', patched)).header('range'), '0-59999');
  const put = await session();
  expectError(await raw(url, 'PUT', `${put}?digest=${digest}`, { body: big, headers: CHUNKED }), 403, 'DENIED', quota);
  await absent();
  assert.equal(await policies.usage('small'), 0);

  // Parallel bodies share what is left: two 60 KB chunked pushes into 100 KB can't both be stored.
  const a = randomBytes(60_000), b = randomBytes(60_000);
  const both = await Promise.all([a, b].map((d) => raw(url, 'POST', `/v2/small/p/blobs/uploads/?digest=${sha256(d)}`, { body: d, headers: CHUNKED })));
  assert.ok(both.some((r) => r.status === 403), `one of two parallel pushes is refused: ${both.map((r) => r.status)}`);
  assert.ok((await policies.usage('small')) <= 100_000);

  // Within the quota, chunked pushes work.
  const fits = randomBytes(30_000);
  assert.equal((await raw(url, 'POST', `/v2/small/b/blobs/uploads/?digest=${sha256(fits)}`, { body: fits, headers: CHUNKED })).status, 201);
});
