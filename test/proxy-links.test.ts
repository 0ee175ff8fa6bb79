// A mirrored repository gains a blob only from bytes its own upstream sent (verified against the digest) — never
// because the upstream answered HEAD 200, and never from another repository's fill. Before, an upstream that
// claimed any digest made berth link a blob pushed to another team's private repository into the mirror
// namespace, where an anonymous client read it; a fill running for one mirror was shared with another.
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, createRegistry, listen, loadConfig } from '../registry/index.js';
import { FsDriver } from '../storage/fs.js';
import { paths } from '../storage/index.js';
import { basic, user } from './support/auth-fixtures.js';
import { raw, sha256 } from './support/registry-client.js';

async function start(t: TestContext, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const blobPath = (u: string) => /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(u)?.[1];
const unknown = (res: ServerResponse) =>
  res
    .writeHead(404, { 'content-type': 'application/json' })
    .end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}');

test("mirror: no blob links from an upstream HEAD alone, no sharing of another repository's fill", async (t) => {
  // Claims every blob on HEAD; has none of them.
  const liar = { heads: 0, gets: 0 };
  const liarUrl = await start(t, (req, res) => {
    if (req.url === '/v2/') return void res.writeHead(200).end();
    if (!blobPath(req.url ?? '')) return unknown(res);
    if (req.method === 'HEAD') {
      liar.heads++;
      return void res.writeHead(200, { 'content-length': '4096' }).end();
    }
    liar.gets++;
    unknown(res);
  });
  // Really has `secret` (so it may be linked) and a slow blob it sends in two halves.
  const slow = randomBytes(256 << 10);
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const secret = Buffer.from(`team-a's private layer ${randomBytes(8).toString('hex')}`);
  const honest = { gets: 0 };
  const honestUrl = await start(t, (req, res) => {
    if (req.url === '/v2/') return void res.writeHead(200).end();
    const d = blobPath(req.url ?? '');
    const body = d === sha256(secret) ? secret : d === sha256(slow) ? slow : undefined;
    if (!body) return unknown(res);
    res.writeHead(200, { 'content-length': String(body.length), 'docker-content-digest': d! });
    if (req.method === 'HEAD') return void res.end();
    honest.gets++;
    if (body === secret) return void res.end(body);
    res.write(body.subarray(0, body.length / 2));
    void released.then(() => res.end(body.subarray(body.length / 2)));
  });

  const root = await mkdtemp('/tmp/berth-proxy-links-');
  const config = loadConfig({
    env: {},
    flags: {
      auth: {
        mode: 'htpasswd',
        users: [user('alice')],
        acl: [
          { repositories: ['team-a/**', 'corp/**'], subjects: ['user:alice'], actions: ['pull', 'push'] },
          { repositories: ['evil/**', 'honest/**'], subjects: ['anonymous'], actions: ['pull'] },
        ],
      },
      proxy: {
        upstreams: [
          { name: 'evil', url: liarUrl, prefix: 'evil', timeout: '3s', allowPrivateNetworks: true },
          { name: 'corp', url: honestUrl, prefix: 'corp', timeout: '5s', allowPrivateNetworks: true },
          { name: 'honest', url: honestUrl, prefix: 'honest', timeout: '3s', allowPrivateNetworks: true },
        ],
      },
    },
  });
  const registry = createRegistry(config, new FsDriver({ root, fsync: false }), createLogger('silent', false));
  const server = await listen(registry.app, '127.0.0.1:0');
  t.after(async () => {
    release();
    registry.proxy?.close();
    await server.close(1000);
    await rm(root, { recursive: true, force: true });
  });
  const url = server.url;
  const alice = { authorization: basic('alice') };
  const linked = (repo: string, digest: string) => existsSync(join(root, paths.layerLink(repo, digest)));

  const digest = sha256(secret);
  const pushed = await raw(url, 'POST', `/v2/team-a/secret/blobs/uploads/?digest=${digest}`, {
    body: secret,
    headers: { ...alice, 'content-length': String(secret.length) },
  });
  assert.equal(pushed.status, 201, pushed.body.toString());
  assert.equal((await raw(url, 'GET', `/v2/team-a/secret/blobs/${digest}`)).status, 401, 'control: private to alice');

  await t.test('HEAD 200 upstream + bytes present locally → no link, 404 for the anonymous client', async () => {
    const head = await raw(url, 'HEAD', `/v2/evil/x/blobs/${digest}`);
    assert.equal(head.status, 200, 'HEAD may pass on what the upstream claims');
    assert.ok(!linked('evil/x', digest), 'a HEAD links nothing');
    const get = await raw(url, 'GET', `/v2/evil/x/blobs/${digest}`);
    assert.ok(!get.body.includes(secret), 'the private blob leaked through the mirror');
    assert.equal(get.status, 404, get.body.toString());
    assert.equal(get.json().errors[0].code, 'BLOB_UNKNOWN');
    assert.ok(liar.gets >= 1, 'the upstream was asked for the bytes');
    assert.ok(!linked('evil/x', digest), 'nothing linked');
    assert.equal((await raw(url, 'GET', `/v2/evil/x/blobs/${digest}`)).status, 404);
  });

  await t.test('a fill running for another mirror is not shared', async () => {
    const d = sha256(slow);
    // alice's pull of corp/app starts a fill that stays half done until released.
    const alices = new Promise<{ status?: number; body: Buffer }>((resolve, reject) => {
      const u = new URL(url);
      const req = request(
        { host: u.hostname, port: u.port, path: `/v2/corp/app/blobs/${d}`, headers: alice },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    for (let i = 0; i < 100 && honest.gets === 0; i++) await sleep(20);
    assert.equal(honest.gets, 1, 'the corp fill is running');
    const anon = raw(url, 'GET', `/v2/evil/y/blobs/${d}`);
    const early = await Promise.race([anon, sleep(1500).then(() => undefined)]);
    release();
    const res = early ?? (await anon);
    assert.ok(!res.body.includes(slow.subarray(0, 64)), "corp's bytes reached the anonymous client");
    assert.equal(res.status, 404, res.body.toString());
    const a = await alices;
    assert.equal(a.status, 200);
    assert.equal(sha256(a.body), d);
    assert.ok(!linked('evil/y', d));
  });

  await t.test(
    'control: an upstream that sends the bytes gets them linked (verified), even when already stored',
    async () => {
      const gets = honest.gets;
      const get = await raw(url, 'GET', `/v2/honest/z/blobs/${digest}`);
      assert.equal(get.status, 200, get.body.toString());
      assert.deepEqual(get.body, secret);
      assert.equal(honest.gets, gets + 1, 'fetched from the upstream, not linked on its word');
      for (let i = 0; i < 50 && !linked('honest/z', digest); i++) await sleep(20);
      assert.ok(linked('honest/z', digest));
      assert.equal((await raw(url, 'GET', `/v2/honest/z/blobs/${digest}`)).status, 200);
      assert.equal(honest.gets, gets + 1, 'then served from storage');
    },
  );
});
