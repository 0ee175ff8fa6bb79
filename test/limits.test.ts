// Limits a hostile client or a full disk finds (issue 14 items 5, 8, 9): quotas count the bytes actually received,
// a full disk answers 507 and keeps nothing partial, bodies that stop arriving time out, open sessions are capped.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { request, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { createRegistry, loadConfig, createLogger, listen, type RunningServer } from '../registry/index.js';
import { MemoryDriver } from '../storage/memory.js';
import { startBerth } from './support/berth.js';
import { makeRegistry, user } from './support/auth-fixtures.js';
import { findExecutable, ok, requirePeer, run } from './support/peers.js';
import { raw, sha256, type RawResponse } from './support/registry-client.js';

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
  const absent = async () =>
    assert.equal((await raw(url, 'HEAD', `/v2/small/a/blobs/${digest}`)).status, 404, 'nothing published');

  // Single-POST monolithic upload, chunked.
  expectError(
    await raw(url, 'POST', `/v2/small/a/blobs/uploads/?digest=${digest}`, { body: big, headers: CHUNKED }),
    403,
    'DENIED',
    quota,
  );
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
  assert.equal(
    (await raw(url, 'GET', patched)).header('range'),
    '0-0',
    'the refused chunk left nothing in the session',
  );
  // Chunks that each fit but add up past the quota: the session's stored bytes count.
  assert.equal((await raw(url, 'PATCH', patched, { body: big.subarray(0, 60_000), headers: CHUNKED })).status, 202);
  expectError(
    await raw(url, 'PATCH', patched, { body: big.subarray(60_000, 120_000), headers: CHUNKED }),
    403,
    'DENIED',
    quota,
  );
  assert.equal((await raw(url, 'GET', patched)).header('range'), '0-59999');
  const put = await session();
  expectError(await raw(url, 'PUT', `${put}?digest=${digest}`, { body: big, headers: CHUNKED }), 403, 'DENIED', quota);
  await absent();
  assert.equal(await policies.usage('small'), 0);

  // Parallel bodies share what is left: two 60 KB chunked pushes into 100 KB can't both be stored.
  const a = randomBytes(60_000),
    b = randomBytes(60_000);
  const both = await Promise.all(
    [a, b].map((d) =>
      raw(url, 'POST', `/v2/small/p/blobs/uploads/?digest=${sha256(d)}`, { body: d, headers: CHUNKED }),
    ),
  );
  assert.ok(
    both.some((r) => r.status === 403),
    `one of two parallel pushes is refused: ${both.map((r) => r.status)}`,
  );
  assert.ok((await policies.usage('small')) <= 100_000);

  // Within the quota, chunked pushes work.
  const fits = randomBytes(30_000);
  assert.equal(
    (await raw(url, 'POST', `/v2/small/b/blobs/uploads/?digest=${sha256(fits)}`, { body: fits, headers: CHUNKED }))
      .status,
    201,
  );
});

/**
 * Mounts a `size` tmpfs for the test (we are root on CI) and returns it with its unmount; undefined (skipped) where
 * that's impossible. The caller unmounts after stopping whatever writes there.
 */
async function smallDisk(t: TestContext, size: string): Promise<{ dir: string; unmount(): Promise<void> } | undefined> {
  const dir = await mkdtemp('/tmp/berth-full-');
  const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (mount.status !== 0) {
    await rm(dir, { recursive: true, force: true });
    const message = `cannot mount a tmpfs (needs root): ${mount.stderr || mount.error}`;
    if (process.env.CI === 'true') throw new Error(message);
    t.skip(message);
    return undefined;
  }
  return {
    dir,
    unmount: async () => {
      spawnSync('umount', ['-l', dir]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Writes files until the disk is full: 64 KiB ones, then smaller down to one byte, so not even a small file (an
 * upload session's state) fits in what the big ones left.
 */
let fillerFiles = 0;
async function fill(path: string): Promise<void> {
  for (const size of [64 * 1024, 4096, 512, 1]) {
    const block = Buffer.alloc(size);
    for (;;) {
      try {
        await writeFile(`${path}.${fillerFiles++}`, block);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw e;
      }
    }
  }
}

test('disk full: 507 INSUFFICIENT_STORAGE with Retry-After (large and small writes), no temp files or partial data left, pushes work once space is back', async (t) => {
  const mounted = await smallDisk(t, '2m');
  if (!mounted) return;
  const disk = mounted.dir;
  const root = join(disk, 'data');
  const berth = await startBerth(undefined, { root }).catch(async (e) => {
    await mounted.unmount();
    throw e;
  });
  t.after(async () => {
    await berth.stop(); // before the unmount: a server still running could write under the mount point
    await mounted.unmount();
  });
  const url = berth.url;
  const full = (res: RawResponse, what: string) => {
    expectError(res, 507, 'INSUFFICIENT_STORAGE', /storage is full: nothing was stored/);
    assert.ok(Number(res.header('retry-after')) > 0, `${what}: Retry-After`);
  };
  const tmpEmpty = async (what: string) =>
    assert.deepEqual(await readdir(join(root, '_tmp')).catch(() => []), [], `${what}: no temp files left`);
  const session = async () => {
    const r = await raw(url, 'POST', '/v2/full/app/blobs/uploads/');
    assert.equal(r.status, 202, String(r.body));
    return r.header('location')!;
  };

  // A config blob pushed while there is room, for the manifest below.
  const cfg = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  assert.equal(
    (await raw(url, 'POST', `/v2/full/app/blobs/uploads/?digest=${sha256(cfg)}`, { body: cfg })).status,
    201,
  );

  // Larger than the disk: every way of streaming a blob in.
  const big = randomBytes(3 * 1024 * 1024);
  const digest = sha256(big);
  full(await raw(url, 'POST', `/v2/full/app/blobs/uploads/?digest=${digest}`, { body: big }), 'single POST');
  await tmpEmpty('single POST');
  full(
    await raw(url, 'POST', `/v2/full/app/blobs/uploads/?digest=${digest}`, { body: big, headers: CHUNKED }),
    'single POST, chunked',
  );
  await tmpEmpty('single POST, chunked');
  const patched = await session();
  full(await raw(url, 'PATCH', patched, { body: big, headers: CHUNKED }), 'PATCH');
  assert.equal((await raw(url, 'GET', patched)).header('range'), '0-0', 'the failed chunk was cut away');
  full(await raw(url, 'PUT', `${await session()}?digest=${digest}`, { body: big }), 'monolithic PUT');
  await tmpEmpty('monolithic PUT');
  assert.equal((await raw(url, 'HEAD', `/v2/full/app/blobs/${digest}`)).status, 404);

  // A real client shows the answer (crane: chunked PATCH), not a connection reset.
  if (requirePeer(t, 'crane')) {
    const work = await mkdtemp('/tmp/berth-crane-');
    t.after(() => rm(work, { recursive: true, force: true }));
    await mkdir(join(work, 'layer'));
    await writeFile(join(work, 'layer', 'blob'), randomBytes(3 * 1024 * 1024));
    ok(await run('tar', ['-C', join(work, 'layer'), '-cf', join(work, 'layer.tar'), 'blob']));
    const pushed = await run(
      findExecutable('crane')!,
      ['append', '-f', join(work, 'layer.tar'), '-t', `${berth.host}/full/crane:v1`, '--insecure'],
      { env: { HOME: work } },
    );
    assert.notEqual(pushed.code, 0);
    assert.match(pushed.stderr, /INSUFFICIENT_STORAGE: the registry's storage is full/, pushed.stderr);
    // crane exits at the first failed request; another of its uploads may still be unwinding on the server.
    for (let i = 0; i < 30 && (await readdir(join(root, '_tmp')).catch(() => [])).length; i++)
      await new Promise((r) => setTimeout(r, 100));
    await tmpEmpty('crane');
  }

  // A full disk: small writes (a session's state, a manifest, a tag) answer 507 too, and leave no empty temp files.
  // Filled again before each write: space a failed upload gives back late (a truncate) must not make room.
  await fill(join(disk, 'filler'));
  full(await raw(url, 'POST', '/v2/full/app/blobs/uploads/'), 'session start');
  await fill(join(disk, 'filler'));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(cfg), size: cfg.length },
      layers: [],
    }),
  );
  full(
    await raw(url, 'PUT', '/v2/full/app/manifests/v1', {
      body: manifest,
      headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    }),
    'manifest PUT',
  );
  await tmpEmpty('small writes');
  assert.equal((await raw(url, 'GET', '/v2/full/app/manifests/v1')).status, 404);

  // Space back: the same server takes pushes again.
  for (const f of await readdir(disk)) if (f.startsWith('filler')) await rm(join(disk, f));
  const small = randomBytes(512 * 1024);
  assert.equal(
    (await raw(url, 'POST', `/v2/full/app/blobs/uploads/?digest=${sha256(small)}`, { body: small, headers: CHUNKED }))
      .status,
    201,
  );
  assert.equal(
    (
      await raw(url, 'PUT', '/v2/full/app/manifests/v1', {
        body: manifest,
        headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      })
    ).status,
    201,
  );
});

/**
 * Sends `head` (request line and headers) and `body` over a raw socket, then sends nothing more; resolves with what
 * the server answered and whether it closed the connection within `waitMs`.
 */
function stall(
  url: string,
  head: string,
  body: string,
  waitMs: number,
): Promise<{ answer: string; closed: boolean; ms: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(Number(port), hostname, () => socket.write(`${head}\r\n\r\n${body}`));
    let answer = '';
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ answer, closed, ms: Date.now() - started });
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.on('data', (b) => (answer += b));
    socket.on('close', () => done(true));
    socket.on('error', reject);
  });
}

test('timeouts: a body that stops arriving gets 408 REQUEST_TIMEOUT and its connection closed, nothing stored; a slow steady body is not cut', async (t) => {
  const { url, driver } = await serve(t, { http: { bodyIdleTimeout: '1s' } });
  const start = async () => (await raw(url, 'POST', '/v2/slow/app/blobs/uploads/')).header('location')!;
  const host = `Host: ${new URL(url).host}`;
  const cases: Array<[string, string, string]> = [
    ['PATCH, 10 of 1000 bytes', `PATCH ${await start()} HTTP/1.1\r\n${host}\r\nContent-Length: 1000`, 'x'.repeat(10)],
    [
      'PATCH chunked, then silence',
      `PATCH ${await start()} HTTP/1.1\r\n${host}\r\nTransfer-Encoding: chunked`,
      '5\r\nhello\r\n',
    ],
    [
      'single POST, headers only',
      `POST /v2/slow/app/blobs/uploads/?digest=${sha256('y'.repeat(100))} HTTP/1.1\r\n${host}\r\nContent-Length: 100`,
      '',
    ],
    [
      'manifest PUT, headers only',
      `PUT /v2/slow/app/manifests/v1 HTTP/1.1\r\n${host}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 500`,
      '',
    ],
  ];
  const results = await Promise.all(cases.map(([, head, body]) => stall(url, head, body, 15_000)));
  for (const [i, [what]] of cases.entries()) {
    const r = results[i];
    assert.match(r.answer, /^HTTP\/1\.1 408 /, `${what}: answered 408 (got ${JSON.stringify(r.answer.slice(0, 200))})`);
    assert.match(r.answer, /"code":"REQUEST_TIMEOUT"/, what);
    assert.ok(r.closed, `${what}: the connection was closed`);
  }
  // Nothing was stored: no blob, no manifest, and every session still empty.
  assert.equal((await raw(url, 'GET', '/v2/slow/app/manifests/v1')).status, 404);
  for (const id of await driver.list('uploads'))
    assert.equal((await driver.stat(`uploads/${id}/data`))?.size ?? 0, 0, `session ${id} is empty`);

  // A body that keeps coming, slowly (a byte every 300 ms, 3 s in all), is fine.
  const { hostname, port } = new URL(url);
  const req = request({ host: hostname, port, method: 'PATCH', path: await start(), headers: CHUNKED });
  const answered = new Promise<IncomingMessage>((resolve, reject) =>
    req.once('response', resolve).once('error', reject),
  );
  for (let i = 0; i < 10; i++) {
    req.write('z');
    await new Promise((r) => setTimeout(r, 300));
  }
  req.end();
  const steady = await answered;
  steady.resume();
  assert.equal(steady.statusCode, 202);
  assert.equal(steady.headers.range, '0-9');
});

test('upload sessions: capped per repository and per caller (429 TOOMANYREQUESTS + Retry-After), counted from storage (restarts, parallel POSTs)', async (t) => {
  const caps = {
    storage: { filesystem: { root: '/nonexistent' }, uploadSessions: { maxPerRepository: 3, maxPerCaller: 5 } },
  };
  const { url, driver } = await serve(t, caps);
  const post = (name: string) => raw(url, 'POST', `/v2/${name}/blobs/uploads/`);
  const open: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await post('cap/a');
    assert.equal(r.status, 202);
    open.push(r.header('location')!);
  }
  const over = await post('cap/a');
  expectError(over, 429, 'TOOMANYREQUESTS', /repository cap\/a has 3 open upload sessions.*maxPerRepository/);
  assert.ok(Number(over.header('retry-after')) > 0);
  // A single-POST upload opens no session: still fine.
  const blob = Buffer.from('one post');
  assert.equal((await raw(url, 'POST', `/v2/cap/a/blobs/uploads/?digest=${sha256(blob)}`, { body: blob })).status, 201);
  // Cancelling one, or completing one, frees its place.
  assert.equal((await raw(url, 'DELETE', open.shift()!)).status, 204);
  const again = await post('cap/a');
  assert.equal(again.status, 202);
  const done = Buffer.from('completed');
  assert.equal(
    (await raw(url, 'PUT', `${again.header('location')}?digest=${sha256(done)}`, { body: done })).status,
    201,
  );
  assert.equal((await post('cap/a')).status, 202);
  // Per caller: every anonymous caller together has 5.
  assert.equal((await post('cap/b')).status, 202);
  assert.equal((await post('cap/b')).status, 202);
  expectError(
    await post('cap/c'),
    429,
    'TOOMANYREQUESTS',
    /anonymous pushing has 5 open upload sessions.*maxPerCaller/,
  );

  // Another process on the same storage (a restart, a replica) counts the sessions already there.
  const second = await serve(t, caps, driver);
  expectError(await raw(second.url, 'POST', '/v2/cap/a/blobs/uploads/'), 429, 'TOOMANYREQUESTS');

  // Parallel POSTs can't all slip under the cap.
  const fresh = await serve(t, caps);
  const burst = await Promise.all(
    Array.from({ length: 20 }, () => raw(fresh.url, 'POST', '/v2/cap/burst/blobs/uploads/')),
  );
  assert.deepEqual(burst.map((r) => r.status).sort(), [...Array(3).fill(202), ...Array(17).fill(429)]);
  assert.equal((await fresh.driver.list('uploads')).length, 3);
});

test('bodies outside /v2 (the token endpoint) are capped at 1 MiB, chunked too → 413; small forms still work', async (t) => {
  const { registry } = makeRegistry({
    mode: 'token',
    users: [user('alice')],
    acl: [{ repositories: ['**'], subjects: ['*'], actions: ['pull'] }],
  });
  const server = await listen(registry.app, '127.0.0.1:0', silent);
  t.after(() => server.close(1000));
  const form = { 'Content-Type': 'application/x-www-form-urlencoded' };
  const huge = Buffer.from(
    `grant_type=password&username=alice&password=alice-pw&service=berth&scope=${'x'.repeat(4 * 1024 * 1024)}`,
  );
  for (const headers of [form, { ...form, 'Transfer-Encoding': 'chunked' }]) {
    // The server may close the connection once it answered (the rest of a body that large is not read), so the
    // client's late write errors are expected; the answer is what counts.
    const r = await new Promise<{ status?: number; body: string }>((resolve, reject) => {
      const { hostname, port } = new URL(server.url);
      const req = request({ host: hostname, port, method: 'POST', path: '/token', headers, agent: false }, (res) => {
        let body = '';
        res
          .on('data', (b) => (body += b))
          .on('end', () => resolve({ status: res.statusCode, body }))
          .on('error', () => {});
      });
      req.on('error', (e) => setTimeout(() => reject(e), 1000)); // after the answer: ignored (resolved already)
      req.on('socket', (s) => s.on('error', () => {}));
      req.end(huge);
    });
    assert.equal(r.status, 413, r.body);
    assert.equal(JSON.parse(r.body).errors[0].code, 'SIZE_INVALID');
    assert.match(JSON.parse(r.body).errors[0].message, /over the 1048576-byte limit/);
  }
  const fine = await raw(server.url, 'POST', '/token', {
    body: 'grant_type=password&username=alice&password=alice-pw&service=berth&client_id=t',
    headers: form,
  });
  assert.equal(fine.status, 200, String(fine.body));
});

test('an object store that reports itself full (507, XMinioStorageFull) is answered 507 too; other throttling stays 503', async () => {
  const rows: Array<[Record<string, unknown>, number, string]> = [
    [{ status: 507, code: 'XMinioStorageFull', retryable: true }, 507, 'INSUFFICIENT_STORAGE'],
    [{ status: 503, code: 'SlowDown', retryable: true }, 503, 'UNAVAILABLE'],
  ];
  for (const [fault, status, code] of rows) {
    const driver = new MemoryDriver();
    driver.put = async () => {
      throw Object.assign(new Error(`S3 ${fault.code}`), fault);
    };
    const config = loadConfig({ env: {}, flags: { storage: { filesystem: { root: '/nonexistent' } } } });
    const { app } = createRegistry(config, driver, silent);
    const r = await app.request('/v2/s3/full/blobs/uploads/', { method: 'POST' });
    assert.equal(r.status, status, String(fault.code));
    assert.equal((await r.json()).errors[0].code, code);
    assert.ok(r.headers.get('retry-after'));
  }
});
