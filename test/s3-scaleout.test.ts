// Stateless scale-out on S3 (issue 6): the conformance suite on S3 (proxy and redirect blob GETs), three replicas on
// one bucket serving each other's uploads and tags, concurrent pushers of overlapping images, and a replica killed
// mid-upload whose client resumes on another replica. The S3 server is a real SeaweedFS (test/support/s3-server.ts).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { requirePeer } from './support/peers.js';
import { startS3Server, s3ServeConfig, S3_PEER, type S3Server } from './support/s3-server.js';
import { startBerth, type Berth } from './support/berth.js';
import { runConformance } from './support/conformance.js';
import { raw, sha256, imageManifest, pushManifest } from './support/registry-client.js';
import { faultProxy, type Fault } from './support/s3-fault-proxy.js';

const s3Config = (s3: S3Server, blobGet: 'proxy' | 'redirect' = 'proxy') => s3ServeConfig(s3, { blobGet });

async function s3(t: TestContext): Promise<S3Server | undefined> {
  if (!requirePeer(t, S3_PEER)) return undefined;
  const server = await startS3Server();
  t.after(() => server.stop());
  return server;
}

for (const blobGet of ['proxy', 'redirect'] as const) {
  test(`OCI conformance suite on S3 (blobGet: ${blobGet}): zero failures`, async (t) => {
    if (!requirePeer(t, 'conformance.test')) return;
    const server = await s3(t);
    if (!server) return;
    const berth = await startBerth(t, { config: s3Config(server, blobGet) });
    const { code, failures, output } = await runConformance(berth.url);
    assert.deepEqual(failures, [], `conformance failures on S3:\n${failures.join('\n')}`);
    assert.equal(code, 0, output.slice(-3000));
  });
}

test('three replicas on one bucket', async (t) => {
  const server = await s3(t);
  if (!server) return;
  const config = s3Config(server);
  const replicas: Berth[] = [];
  for (let i = 0; i < 3; i++) replicas.push(await startBerth(t, { config }));
  const [r1, r2, r3] = replicas;

  await t.test('a chunked upload started on 1, continued on 2, finished on 3', async () => {
    const data = randomBytes(12 * 1024 * 1024 + 123);
    const a = 3 * 1024 * 1024,
      b = 9 * 1024 * 1024;
    const loc = (await raw(r1.url, 'POST', '/v2/scale/chunked/blobs/uploads/')).header('location')!;
    assert.equal(
      (await raw(r1.url, 'PATCH', loc, { body: data.subarray(0, a), headers: { 'Content-Range': `0-${a - 1}` } }))
        .status,
      202,
    );
    const p2 = await raw(r2.url, 'PATCH', loc, {
      body: data.subarray(a, b),
      headers: { 'Content-Range': `${a}-${b - 1}` },
    });
    assert.equal(p2.status, 202, p2.body.toString());
    assert.equal(p2.header('range'), `0-${b - 1}`);
    const put = await raw(r3.url, 'PUT', `${loc}?digest=${sha256(data)}`, {
      body: data.subarray(b),
      headers: { 'Content-Range': `${b}-${data.length - 1}` },
    });
    assert.equal(put.status, 201, put.body.toString());
    for (const r of replicas) {
      const got = await raw(r.url, 'GET', `/v2/scale/chunked/blobs/${sha256(data)}`);
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), sha256(data));
    }
    // The session is finished everywhere, including on the replica that started it.
    assert.equal((await raw(r1.url, 'GET', loc)).status, 404);
  });

  await t.test('a tag pushed on 1 is pulled on 3 at once, and moves at once', async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    assert.equal(
      (await raw(r1.url, 'POST', `/v2/scale/tags/blobs/uploads/?digest=${sha256(config)}`, { body: config })).status,
      201,
    );
    for (let i = 0; i < 3; i++) {
      const m = imageManifest({ digest: sha256(config), size: config.length }, [], {
        annotations: { round: String(i) },
      });
      assert.equal((await pushManifest(r1.url, 'scale/tags', 'latest', m)).status, 201);
      const got = await raw(r3.url, 'GET', '/v2/scale/tags/manifests/latest');
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), sha256(m), 'replica 3 serves the tag replica 1 just wrote');
    }
  });

  await t.test('3 × 16 concurrent pushers of overlapping images: every image complete', async () => {
    const shared = Array.from({ length: 4 }, () => randomBytes(256 * 1024));
    const pushes = Array.from({ length: 48 }, async (_, i) => {
      const r = replicas[i % 3];
      const name = `scale/img${i % 6}`;
      const layers = [shared[i % 4], shared[(i + 1) % 4], randomBytes(32 * 1024)];
      const config = Buffer.from(
        JSON.stringify({ architecture: 'amd64', os: 'linux', i, rootfs: { type: 'layers', diff_ids: [] } }),
      );
      for (const blob of [config, ...layers]) {
        const res = await raw(r.url, 'POST', `/v2/${name}/blobs/uploads/?digest=${sha256(blob)}`, { body: blob });
        assert.equal(res.status, 201, res.body.toString());
      }
      const m = imageManifest(
        { digest: sha256(config), size: config.length },
        layers.map((l) => ({ digest: sha256(l), size: l.length })),
      );
      const put = await pushManifest(r.url, name, `t${i}`, m);
      assert.equal(put.status, 201, put.body.toString());
      return { name, tag: `t${i}`, digest: sha256(m), blobs: [config, ...layers].map(sha256) };
    });
    const images = await Promise.all(pushes);
    for (const [k, img] of images.entries()) {
      const r = replicas[(k + 1) % 3];
      const m = await raw(r.url, 'GET', `/v2/${img.name}/manifests/${img.tag}`);
      assert.equal(m.status, 200);
      assert.equal(sha256(m.body), img.digest);
      for (const d of img.blobs) {
        const b = await raw(r.url, 'GET', `/v2/${img.name}/blobs/${d}`);
        assert.equal(sha256(b.body), d);
      }
    }
  });

  await t.test('kill -9 a replica mid-upload: the client resumes the same upload on another replica', async () => {
    const data = randomBytes(10 * 1024 * 1024);
    const first = 6 * 1024 * 1024;
    const loc = (await raw(r1.url, 'POST', '/v2/scale/resume/blobs/uploads/')).header('location')!;
    assert.equal(
      (
        await raw(r1.url, 'PATCH', loc, {
          body: data.subarray(0, first),
          headers: { 'Content-Range': `0-${first - 1}` },
        })
      ).status,
      202,
    );
    const inflight = raw(r1.url, 'PATCH', loc, {
      body: data.subarray(first),
      headers: { 'Content-Range': `${first}-${data.length - 1}` },
    }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 20));
    await r1.kill();
    await inflight;
    const status = await raw(r2.url, 'GET', loc);
    assert.equal(status.status, 204, status.body.toString());
    const offset = Number(/^0-(\d+)$/.exec(status.header('range')!)![1]) + 1;
    assert.ok(offset === first || offset === data.length, `resume from a chunk boundary, got ${offset}`);
    const rest = data.subarray(offset);
    const put = await raw(r2.url, 'PUT', `${loc}?digest=${sha256(data)}`, {
      body: rest,
      headers: rest.length ? { 'Content-Range': `${offset}-${data.length - 1}` } : {},
    });
    assert.equal(put.status, 201, put.body.toString());
    assert.equal(sha256((await raw(r3.url, 'GET', `/v2/scale/resume/blobs/${sha256(data)}`)).body), sha256(data));
    await r1.restart();
  });
});

test('S3 faults between berth and the bucket: success or a clean retryable error, never a corrupt blob', async (t) => {
  const server = await s3(t);
  if (!server) return;
  // Deterministic plan: every 5th request to S3 gets SlowDown, a connection reset or a slow answer.
  const kinds: Fault[] = ['slowdown', 'reset', 'slow', 'slowdown'];
  let k = 0;
  const proxy = await faultProxy(server.endpoint, (n) => (n % 5 === 0 ? kinds[k++ % kinds.length] : undefined));
  t.after(() => proxy.close());
  const faulty = await startBerth(t, { config: s3Config({ ...server, endpoint: proxy.endpoint }) });
  const direct = await startBerth(t, { config: s3Config(server) });

  const pushed: Array<{ tag: string; digest: string; blobs: string[] }> = [];
  const errors: string[] = [];
  const clean = (res: { status: number; body: Buffer }) => {
    if (res.status < 500) return;
    // A retryable failure must be an OCI error document, never an opaque 500 with internals.
    assert.equal(res.status, 503, res.body.toString());
    assert.equal(JSON.parse(res.body.toString()).errors[0].code, 'UNAVAILABLE');
    errors.push('503');
  };
  for (let i = 0; i < 5; i++) {
    const layer = randomBytes(2 * 1024 * 1024 + i);
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', i, rootfs: { type: 'layers', diff_ids: [] } }),
    );
    let done = false;
    for (let attempt = 0; attempt < 5 && !done; attempt++) {
      const blobs = [config, layer];
      let ok = true;
      for (const b of blobs) {
        const res = await raw(faulty.url, 'POST', `/v2/faults/repo/blobs/uploads/?digest=${sha256(b)}`, { body: b });
        clean(res);
        if (res.status !== 201) ok = false;
      }
      if (!ok) continue;
      const m = imageManifest({ digest: sha256(config), size: config.length }, [
        { digest: sha256(layer), size: layer.length },
      ]);
      const put = await pushManifest(faulty.url, 'faults/repo', `t${i}`, m);
      clean(put);
      if (put.status === 201) {
        pushed.push({ tag: `t${i}`, digest: sha256(m), blobs: blobs.map(sha256) });
        done = true;
      }
    }
    assert.ok(done, `image ${i} pushed within 5 attempts (errors: ${errors.length})`);
  }
  assert.ok(proxy.faults.filter(Boolean).length > 0, 'faults were injected');
  // Read back through a replica that talks to S3 directly: everything visible is complete and correct.
  for (const img of pushed) {
    const m = await raw(direct.url, 'GET', `/v2/faults/repo/manifests/${img.tag}`);
    assert.equal(m.status, 200);
    assert.equal(sha256(m.body), img.digest);
    for (const d of img.blobs)
      assert.equal(sha256((await raw(direct.url, 'GET', `/v2/faults/repo/blobs/${d}`)).body), d);
  }
  // Pulls through the faulty path either succeed with exact bytes or fail cleanly.
  for (const img of pushed) {
    const b = await raw(faulty.url, 'GET', `/v2/faults/repo/blobs/${img.blobs[1]}`);
    clean(b);
    if (b.status === 200) assert.equal(sha256(b.body), img.blobs[1]);
  }
});
