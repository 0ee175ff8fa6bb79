// The pull-through cache in process, against in-process berth upstreams (no real peers needed): mapping by prefix,
// `?ns=` and the default upstream; hits and misses; one upstream fetch for concurrent pulls; a client that
// disconnects; digest verification; tag revalidation with HEAD; stale-on-error; denied pushes; credentials kept
// from a foreign token realm; eviction.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'node:http';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRegistry, createLogger, listen, loadConfig, type RunningServer } from '../registry/index.js';
import { mapRepository, resolveUpstreams, type Proxy, type UpstreamConfig } from '../registry/proxy/index.js';
import { FsDriver } from '../storage/fs.js';
import { paths } from '../storage/index.js';
import { MemoryDriver } from '../storage/memory.js';
import { startCountingProxy } from './support/counting-proxy.js';
import { imageManifest, pushBlob, pushManifest, raw, sha256 } from './support/registry-client.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** A proxy section as berth loads it (the schema's defaults filled in), for resolveUpstreams. */
function loaded(proxy: { upstreams: UpstreamConfig[] }) {
  return loadConfig({ env: {}, flags: { proxy } }).proxy;
}

async function serve(
  t: TestContext,
  proxy?: { upstreams: UpstreamConfig[] },
): Promise<{ server: RunningServer; proxy?: Proxy; root: string }> {
  const root = await mkdtemp('/tmp/berth-proxy-');
  // The upstreams here are on loopback, which a mirror may reach only when allowed (test/net-policy.test.ts).
  if (proxy) proxy = { upstreams: proxy.upstreams.map((u) => ({ allowPrivateNetworks: true, ...u })) };
  const config = loadConfig({ env: {}, flags: proxy ? { proxy } : {} });
  const driver = proxy ? new FsDriver({ root, fsync: false }) : new MemoryDriver();
  const registry = createRegistry(config, driver, createLogger('silent', false));
  const server = await listen(registry.app, '127.0.0.1:0');
  t.after(async () => {
    registry.proxy?.close();
    await server.close(1000);
    await rm(root, { recursive: true, force: true });
  });
  return { server, proxy: registry.proxy, root };
}

/** Pushes an image (config + one random layer) and returns its parts. */
async function pushImage(base: string, name: string, tag: string, layerBytes = 1024) {
  const layer = randomBytes(layerBytes);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [] },
      n: randomBytes(4).toString('hex'),
    }),
  );
  const layerDigest = await pushBlob(base, name, layer);
  const configDigest = await pushBlob(base, name, config);
  const manifest = imageManifest({ digest: configDigest, size: config.length }, [
    { digest: layerDigest, size: layer.length },
  ]);
  const res = await pushManifest(base, name, tag, manifest);
  assert.equal(res.status, 201, res.body.toString());
  return { layer, layerDigest, config, configDigest, manifest, manifestDigest: sha256(manifest) };
}

test('pull-through cache, in process', async (t) => {
  const upstream = await serve(t);
  const counting = await startCountingProxy(upstream.server.url);
  t.after(() => counting.stop());
  const mirror = await serve(t, {
    upstreams: [
      {
        name: 'up',
        url: counting.url,
        prefix: 'up.example',
        default: true,
        tagTtl: '1h',
        allow: ['library/**', 'team/**'],
      },
    ],
  });
  const stats = () => mirror.proxy!.stats();
  const img = await pushImage(upstream.server.url, 'library/app', 'v1', 300_000);

  await t.test('prefix, ?ns= and default upstream all serve the same manifest and share one cache', async () => {
    const a = await raw(mirror.server.url, 'GET', '/v2/up.example/library/app/manifests/v1', {
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(a.status, 200, a.body.toString());
    assert.deepEqual(a.body, img.manifest);
    assert.equal(a.header('docker-content-digest'), img.manifestDigest);
    assert.equal(a.header('content-type'), OCI_MANIFEST);
    const gets = counting.count('GET', '/manifests/');
    const b = await raw(mirror.server.url, 'GET', `/v2/library/app/manifests/v1?ns=${counting.host}`);
    const c = await raw(mirror.server.url, 'HEAD', '/v2/library/app/manifests/v1');
    assert.deepEqual(b.body, img.manifest);
    assert.equal(c.header('docker-content-digest'), img.manifestDigest);
    assert.equal(counting.count('GET', '/manifests/'), gets, 'served from the cache (tagTtl 1h)');
    const byDigest = await raw(mirror.server.url, 'GET', `/v2/library/app/manifests/${img.manifestDigest}`);
    assert.equal(byDigest.status, 200);
  });

  await t.test('blobs: first pull streams from the upstream, later pulls are local', async () => {
    const before = stats();
    const a = await raw(mirror.server.url, 'GET', `/v2/library/app/blobs/${img.layerDigest}`);
    assert.equal(a.status, 200);
    assert.equal(sha256(a.body), img.layerDigest);
    const b = await raw(mirror.server.url, 'GET', `/v2/up.example/library/app/blobs/${img.layerDigest}`, {
      headers: { range: 'bytes=10-19' },
    });
    assert.equal(b.status, 206);
    assert.deepEqual(b.body, img.layer.subarray(10, 20));
    assert.equal(counting.count('GET', `/blobs/${img.layerDigest}`), 1);
    assert.equal(stats().misses, before.misses + 1);
    assert.ok(stats().hits > before.hits);
    const head = await raw(mirror.server.url, 'HEAD', `/v2/library/app/blobs/${img.configDigest}`);
    assert.equal(head.status, 200);
    assert.equal(head.header('content-length'), String(img.config.length));
  });

  await t.test('hosted repositories coexist; pushes into the mirror are DENIED; unknown names 404', async () => {
    const hosted = await pushImage(mirror.server.url, 'hosted/app', 'v1');
    const got = await raw(mirror.server.url, 'GET', '/v2/hosted/app/manifests/v1');
    assert.deepEqual(got.body, hosted.manifest);
    const denied = await pushManifest(mirror.server.url, 'up.example/library/app', 'v2', img.manifest);
    assert.equal(denied.status, 403);
    assert.equal(denied.json().errors[0].code, 'DENIED');
    const upload = await raw(mirror.server.url, 'POST', '/v2/library/app/blobs/uploads/');
    assert.equal(upload.status, 403);
    const notAllowed = await raw(mirror.server.url, 'GET', '/v2/up.example/other/x/manifests/v1');
    assert.equal(notAllowed.status, 403);
    const missing = await raw(mirror.server.url, 'GET', '/v2/library/nope/manifests/v1');
    assert.equal(missing.status, 404);
    assert.equal(missing.json().errors[0].code, 'MANIFEST_UNKNOWN');
    const tags = await raw(mirror.server.url, 'GET', '/v2/library/app/tags/list');
    assert.deepEqual(tags.json(), { name: 'library/app', tags: ['v1'] });
  });

  await t.test(
    'concurrent pulls of one uncached blob share one upstream fetch; a client that leaves changes nothing',
    async () => {
      const big = await pushImage(upstream.server.url, 'library/big', 'v1', 24 << 20);
      // One client disconnects after the first bytes.
      await new Promise<void>((resolve, reject) => {
        const url = new URL(mirror.server.url);
        const req = request(
          { host: url.hostname, port: url.port, path: `/v2/library/big/blobs/${big.layerDigest}` },
          (res) => {
            res.once('data', () => {
              req.destroy();
              resolve();
            });
          },
        );
        req.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(e)));
        req.end();
      });
      const pulls = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          await sleep(i * 5); // some join while the fill runs, some after
          return raw(mirror.server.url, 'GET', `/v2/library/big/blobs/${big.layerDigest}`);
        }),
      );
      for (const p of pulls) {
        assert.equal(p.status, 200);
        assert.equal(p.body.length, big.layer.length);
        assert.equal(sha256(p.body), big.layerDigest);
      }
      assert.equal(counting.count('GET', `/blobs/${big.layerDigest}`), 1);
      assert.ok(stats().joined >= 1, JSON.stringify(stats()));
    },
  );

  await t.test('a fill finishes with no client left', async () => {
    const img2 = await pushImage(upstream.server.url, 'library/alone', 'v1', 12 << 20);
    await new Promise<void>((resolve, reject) => {
      const url = new URL(mirror.server.url);
      const req = request(
        { host: url.hostname, port: url.port, path: `/v2/library/alone/blobs/${img2.layerDigest}` },
        (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
          // Settled already when the client left on purpose; a response cut before its first byte must fail the
          // test here, not leave it waiting forever with the error swallowed.
          res.once('close', () => reject(new Error(`the response (${res.statusCode}) ended before its first byte`)));
        },
      );
      req.on('error', reject);
      req.end();
    });
    const data = join(mirror.root, paths.blobData(img2.layerDigest));
    for (let i = 0; i < 100 && !existsSync(data); i++) await sleep(50);
    assert.ok(existsSync(data), 'cached although its only client left');
    assert.ok(existsSync(join(mirror.root, paths.layerLink('up.example/library/alone', img2.layerDigest))));
    assert.equal(sha256(readFileSync(data)), img2.layerDigest);
    assert.equal(counting.count('GET', `/blobs/${img2.layerDigest}`), 1);
  });

  await t.test('tags are revalidated with HEAD after the TTL; a changed tag is refetched', async (t) => {
    const ttl0 = await serve(t, { upstreams: [{ name: 'up0', url: counting.url, prefix: 'up0', tagTtl: '0s' }] });
    const first = await raw(ttl0.server.url, 'GET', '/v2/up0/library/app/manifests/v1');
    assert.equal(first.header('docker-content-digest'), img.manifestDigest);
    const heads = counting.count('HEAD', '/v2/library/app/manifests/v1');
    await raw(ttl0.server.url, 'GET', '/v2/up0/library/app/manifests/v1');
    assert.equal(counting.count('HEAD', '/v2/library/app/manifests/v1'), heads + 1);
    const next = await pushImage(upstream.server.url, 'library/app', 'v1');
    const changed = await raw(ttl0.server.url, 'GET', '/v2/up0/library/app/manifests/v1');
    assert.equal(changed.header('docker-content-digest'), next.manifestDigest);
    assert.equal(ttl0.proxy!.stats().revalidations, 2);

    await t.test('stale-on-error: 503, 429 and a dead upstream serve the cached tag and count it', async () => {
      for (const status of [503, 429]) {
        counting.failWith = status;
        const res = await raw(ttl0.server.url, 'GET', '/v2/up0/library/app/manifests/v1');
        assert.equal(res.status, 200);
        assert.equal(res.header('docker-content-digest'), next.manifestDigest);
      }
      const uncached = await raw(ttl0.server.url, 'GET', '/v2/up0/library/other/manifests/v1');
      assert.equal(uncached.status, 429);
      counting.failWith = undefined;
      counting.target = 'http://127.0.0.1:1';
      const res = await raw(ttl0.server.url, 'GET', '/v2/up0/library/app/manifests/v1');
      assert.equal(res.status, 200);
      const none = await raw(ttl0.server.url, 'GET', '/v2/up0/library/other/manifests/v1');
      assert.equal(none.status, 503);
      counting.target = upstream.server.url;
      assert.equal(ttl0.proxy!.stats().staleServes, 3);
    });
  });

  await t.test('eviction unlinks content not pulled recently; it is fetched again on demand', async () => {
    const r = await mirror.proxy!.evict({ maxAgeMs: 0, now: Date.now() + 1000 });
    assert.ok(r.blobs >= 1 && r.manifests >= 1, JSON.stringify(r));
    const fetches = counting.count('GET', `/blobs/${img.layerDigest}`);
    const again = await raw(mirror.server.url, 'GET', `/v2/library/app/manifests/${img.manifestDigest}`);
    assert.equal(again.status, 200);
    const blob = await raw(mirror.server.url, 'GET', `/v2/library/app/blobs/${img.layerDigest}`);
    assert.equal(sha256(blob.body), img.layerDigest);
    // The bytes were still in storage (GC had not run), but the repository gains them back only from a verified
    // upstream GET, never on a HEAD's word (test/proxy-links.test.ts).
    assert.equal(counting.count('GET', `/blobs/${img.layerDigest}`), fetches + 1);
    const capped = await mirror.proxy!.evict({ maxBytes: 0 });
    assert.equal(capped.bytesAfter, 0);
  });
});

/** A hostile upstream: its blobs are corrupt, and its token realm is on another host that records what it gets. */
test('malicious upstream: no credentials to a foreign realm, corrupt blobs never cached', async (t) => {
  const seen: Array<{ url: string; authorization?: string; body: string }> = [];
  const realm = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', authorization: req.headers.authorization, body });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token: 'anonymous-token', expires_in: 300 }));
    });
  });
  await new Promise<void>((resolve) => realm.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => realm.close(() => resolve())));
  const realmHost = `127.0.0.1:${(realm.address() as AddressInfo).port}`;
  const good = Buffer.from('the real layer');
  const evil = createServer((req, res) => {
    if (!req.headers.authorization?.startsWith('Bearer ')) {
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="http://${realmHost}/token",service="evil",scope="repository:library/app:pull"`,
      });
      res.end();
      return;
    }
    if (req.url?.includes('/blobs/')) {
      res.writeHead(200, { 'content-length': String(good.length), 'docker-content-digest': sha256(good) });
      res.end(Buffer.from('THE EVIL LAYER'.slice(0, good.length)));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}');
  });
  await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        evil.closeAllConnections();
        evil.close(() => resolve());
      }),
  );
  const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
  const mirror = await serve(t, {
    upstreams: [{ name: 'evil', url: evilUrl, prefix: 'evil', username: 'mirror-user', password: 's3cret-password' }],
  });

  const res = await raw(mirror.server.url, 'GET', `/v2/evil/library/app/blobs/${sha256(good)}`).catch(() => undefined);
  assert.ok(!res || res.body.length < good.length, 'the client never gets a complete response for corrupt content');
  await sleep(200);
  assert.ok(!existsSync(join(mirror.root, paths.blobData(sha256(good)))), 'nothing was cached');
  assert.equal(mirror.proxy!.stats().bytesFetched, 0);
  assert.ok(seen.length > 0, 'the realm was asked for an anonymous token');
  for (const s of seen) {
    assert.equal(s.authorization, undefined, JSON.stringify(s));
    assert.ok(
      !s.url.includes('mirror-user') && !s.body.includes('s3cret') && !s.body.includes('mirror-user'),
      JSON.stringify(s),
    );
  }

  await t.test('control: a realm listed in credentialsToRealm does get them', async (t) => {
    seen.length = 0;
    const trusting = await serve(t, {
      upstreams: [
        {
          name: 'evil',
          url: evilUrl,
          prefix: 'evil',
          username: 'mirror-user',
          password: 's3cret-password',
          credentialsToRealm: [realmHost],
        },
      ],
    });
    await raw(trusting.server.url, 'GET', '/v2/evil/library/app/manifests/v1');
    assert.ok(
      seen.some((s) => s.body.includes('s3cret-password') || s.authorization?.startsWith('Basic ')),
      JSON.stringify(seen),
    );
  });
});

test('proxy config: strict keys, prefixes, default upstream, ?ns= mapping', () => {
  assert.throws(
    () =>
      loadConfig({
        env: {},
        flags: { proxy: { upstreams: [{ name: 'a', url: 'http://127.0.0.1:1', tagTTL: '1m' }] } },
      }),
    /tagTTL/,
  );
  assert.throws(() => loadConfig({ env: {}, flags: { proxy: { mirror: true } } }), /mirror/);
  assert.throws(
    () =>
      resolveUpstreams(
        loaded({
          upstreams: [
            { name: 'a', url: 'http://h:1' },
            { name: 'b', url: 'http://h:2', prefix: 'a/b' },
          ],
        }),
      ),
    /overlaps/,
  );
  assert.throws(
    () =>
      resolveUpstreams(
        loaded({
          upstreams: [
            { name: 'a', url: 'http://h:1', default: true },
            { name: 'b', url: 'http://h:2', default: true },
          ],
        }),
      ),
    /default/,
  );
  assert.throws(() => resolveUpstreams(loaded({ upstreams: [{ name: 'Bad Name', url: 'http://h:1' }] })), /prefix/);
  const ups = resolveUpstreams(
    loaded({
      upstreams: [
        { name: 'docker.io', url: 'https://registry-1.docker.io', default: true, allow: ['library/**'] },
        { name: 'ghcr', url: 'https://ghcr.io', prefix: 'ghcr.io' },
      ],
    }),
  );
  const map = (name: string, ns?: string) => {
    const m = mapRepository(ups, name, ns);
    return m && [m.upstream.name, m.remote, m.local];
  };
  assert.deepEqual(map('docker.io/library/alpine'), ['docker.io', 'library/alpine', 'docker.io/library/alpine']);
  assert.deepEqual(map('library/alpine'), ['docker.io', 'library/alpine', 'docker.io/library/alpine']);
  assert.deepEqual(map('library/alpine', 'docker.io'), ['docker.io', 'library/alpine', 'docker.io/library/alpine']);
  assert.deepEqual(map('org/app', 'ghcr.io'), ['ghcr', 'org/app', 'ghcr.io/org/app']);
  assert.deepEqual(map('ghcr.io/org/app'), ['ghcr', 'org/app', 'ghcr.io/org/app']);
  assert.equal(map('team/app'), undefined, "outside the default upstream's allow list: hosted");
  assert.equal(
    map('library/alpine', 'registry.example'),
    undefined,
    'an ns berth does not mirror: hosted, not the default',
  );
  assert.deepEqual(map('ghcr.io/org/app', 'registry.example'), ['ghcr', 'org/app', 'ghcr.io/org/app']);
});
