// Pull-through cache fills against an upstream that misbehaves mid-body (a tiny node server under the test's
// control). An upstream that stops sending after the headers must not hang the fill: before the fill had its own
// stall timeout, every client of the blob — and every later one, since they join the running fill — waited for the
// HTTP client's body timeout (5 minutes).
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, createRegistry, listen, loadConfig } from '../registry/index.js';
import { FsDriver } from '../storage/fs.js';
import { paths } from '../storage/index.js';
import { sha256 } from './support/registry-client.js';

/** Serves one blob; while `stallAfter` is set it sends that many bytes and then nothing, never ending. */
async function faultyUpstream(t: TestContext, blob: Buffer) {
  const digest = sha256(blob);
  const state = { stallAfter: undefined as number | undefined, gets: 0 };
  const server = createServer((req, res) => {
    if (!req.url?.endsWith(`/blobs/${digest}`)) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}');
      return;
    }
    res.writeHead(200, { 'content-length': String(blob.length), 'docker-content-digest': digest });
    if (req.method === 'HEAD') return void res.end();
    state.gets++;
    if (state.stallAfter === undefined) return void res.end(blob);
    res.write(blob.subarray(0, state.stallAfter)); // …and then silence, connection open
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, digest, state };
}

/** GETs a blob and reports how the response ended: complete (all bytes) or cut. */
function pull(
  base: string,
  path: string,
): Promise<{ status?: number; length: number; complete: boolean; body: Buffer }> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const req = request({ host: url.hostname, port: url.port, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => {});
      res.on('close', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode, length: body.length, complete: res.complete, body });
      });
    });
    req.on('error', () => resolve({ length: 0, complete: false, body: Buffer.alloc(0) }));
    req.end();
  });
}

/** Fails loudly instead of hanging the suite. */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** A mirror of `upstream` on fs storage; `appendDelayMs` slows every storage append down. */
async function mirror(t: TestContext, upstream: string, timeout: string, appendDelayMs = 0) {
  const root = await mkdtemp('/tmp/berth-proxy-fill-');
  const driver = new (class extends FsDriver {
    override async append(path: string, offset: number, body: Readable): Promise<number> {
      await sleep(appendDelayMs);
      return super.append(path, offset, body);
    }
  })({ root, fsync: false });
  const config = loadConfig({
    env: {},
    flags: {
      proxy: {
        upstreams: [{ name: 'up', url: upstream, prefix: 'up', default: true, timeout, allowPrivateNetworks: true }],
      },
    },
  });
  const registry = createRegistry(config, driver, createLogger('silent', false));
  const server = await listen(registry.app, '127.0.0.1:0');
  t.after(async () => {
    registry.proxy?.close();
    await server.close(1000);
    await rm(root, { recursive: true, force: true });
  });
  return { url: server.url, driver, proxy: registry.proxy! };
}

test('a fill whose upstream stalls mid-body fails within the upstream timeout; the next pull starts afresh', async (t) => {
  const blob = randomBytes(3 << 20);
  const up = await faultyUpstream(t, blob);
  const m = await mirror(t, up.url, '1s');
  const path = `/v2/library/x/blobs/${up.digest}`;

  up.state.stallAfter = 1 << 20;
  const cut = await within(
    10_000,
    'clients of a stalled fill',
    Promise.all([pull(m.url, path), pull(m.url, path), pull(m.url, path)]),
  );
  for (const r of cut)
    assert.ok(
      !r.complete && r.length < blob.length,
      `a stalled fill never completes a response: ${JSON.stringify({ ...r, body: undefined })}`,
    );
  assert.equal(up.state.gets, 1, 'the three clients shared one upstream GET');
  for (let i = 0; i < 50 && m.proxy.stats().inflightFills > 0; i++) await sleep(20);
  assert.equal(m.proxy.stats().inflightFills, 0, 'the failed fill is forgotten');
  assert.equal(await m.driver.stat(paths.blobData(up.digest)), undefined, 'nothing cached');
  assert.deepEqual(await m.driver.list(paths.uploadsRoot), [], 'its upload session was removed');

  up.state.stallAfter = undefined;
  const again = await within(10_000, 'a pull after the stalled fill', pull(m.url, path));
  assert.equal(again.status, 200);
  assert.ok(again.complete);
  assert.equal(sha256(again.body), up.digest);
  assert.equal(up.state.gets, 2, 'a fresh fill, not the stalled one');
});

test('control: slow storage appends longer than the upstream timeout are not a stall', async (t) => {
  const blob = randomBytes(10 << 20); // more than one 8 MiB segment: an append happens mid-body
  const up = await faultyUpstream(t, blob);
  const m = await mirror(t, up.url, '1s', 1500);
  const got = await within(20_000, 'a pull through slow storage', pull(m.url, `/v2/library/x/blobs/${up.digest}`));
  assert.ok(got.complete, 'the fill was not cut while it waited for storage');
  assert.equal(sha256(got.body), up.digest);
  assert.equal(m.proxy.stats().upstreamErrors, 0);
});
