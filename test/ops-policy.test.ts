// Operations features in process (memory driver): immutable tags, quotas, retention, metrics, health, webhooks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRegistry, loadConfig, createLogger, listen } from '../registry/index.js';
import { isBlockedAddress, signature } from '../registry/webhooks.js';
import { MemoryDriver } from '../storage/memory.js';
import { paths } from '../storage/index.js';
import { digestOf } from '../spec/index.js';
import { GarbageCollector } from '../storage/gc.js';
import { imageManifest } from './support/registry-client.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const silent = createLogger('silent', false);

function registry(extra: Record<string, unknown>) {
  const config = loadConfig({ env: {}, flags: { storage: { filesystem: { root: '/nonexistent' } }, ...extra } });
  const driver = new MemoryDriver();
  return { driver, ...createRegistry(config, driver, silent) };
}

type App = ReturnType<typeof registry>['app'];

async function pushBlob(
  app: App,
  name: string,
  data: string,
): Promise<{ status: number; digest: string; size: number; body: string }> {
  const digest = digestOf(data);
  const r = await app.request(`/v2/${name}/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    body: data,
    headers: { 'Content-Length': String(data.length) },
  });
  return { status: r.status, digest, size: data.length, body: await r.text() };
}

async function pushImage(
  app: App,
  name: string,
  ref: string,
  seed: string,
): Promise<{ status: number; digest: string; body: string }> {
  const cfg = await pushBlob(app, name, `{"s":"${seed}"}`);
  const layer = await pushBlob(app, name, `layer-${seed}`);
  const m = imageManifest(cfg, [layer]);
  const r = await app.request(`/v2/${name}/manifests/${ref}`, {
    method: 'PUT',
    body: m.toString(),
    headers: { 'Content-Type': OCI },
  });
  return { status: r.status, digest: digestOf(m), body: await r.text() };
}

test('immutable tags: overwrite and delete are DENIED, same-digest re-push and other tags are not', async () => {
  const { app } = registry({ immutableTags: [{ repositories: ['prod/**'], tags: ['v*'] }] });
  const cases: Array<[string, () => Promise<{ status: number }>, number]> = [];
  const first = await pushImage(app, 'prod/app', 'v1', 'a');
  assert.equal(first.status, 201);
  const same = await pushImage(app, 'prod/app', 'v1', 'a');
  cases.push(['same digest again', async () => same, 201]);
  cases.push(['overwrite v1', () => pushImage(app, 'prod/app', 'v1', 'b'), 403]);
  cases.push(['mutable tag in same repo', () => pushImage(app, 'prod/app', 'latest', 'b'), 201]);
  cases.push(['mutable tag overwrite', () => pushImage(app, 'prod/app', 'latest', 'c'), 201]);
  cases.push(['v1 in another repo', () => pushImage(app, 'dev/app', 'v1', 'b'), 201]);
  cases.push(['v1 in another repo overwritten', () => pushImage(app, 'dev/app', 'v1', 'c'), 201]);
  cases.push(['delete immutable tag', async () => app.request('/v2/prod/app/manifests/v1', { method: 'DELETE' }), 403]);
  cases.push([
    'delete manifest held by it',
    async () => app.request(`/v2/prod/app/manifests/${first.digest}`, { method: 'DELETE' }),
    403,
  ]);
  cases.push([
    'delete mutable tag',
    async () => app.request('/v2/prod/app/manifests/latest', { method: 'DELETE' }),
    202,
  ]);
  cases.push([
    'push by digest with ?tag=v1 elsewhere',
    async () => {
      const cfg = await pushBlob(app, 'prod/app', '{"s":"d"}');
      const m = imageManifest(cfg, []);
      return app.request(`/v2/prod/app/manifests/${digestOf(m)}?tag=v1`, {
        method: 'PUT',
        body: m.toString(),
        headers: { 'Content-Type': OCI },
      });
    },
    403,
  ]);
  for (const [what, run, status] of cases) {
    const r = await run();
    assert.equal(r.status, status, what);
  }
  const denied = await pushImage(app, 'prod/app', 'v1', 'z');
  assert.equal(JSON.parse(denied.body).errors[0].code, 'DENIED');
  assert.match(JSON.parse(denied.body).errors[0].message, /immutable/);
  const get = await app.request('/v2/prod/app/manifests/v1');
  assert.equal(get.headers.get('docker-content-digest'), first.digest, 'v1 never moved');
});

test('immutable tags protect the whole image: its blobs, configs, index children — deletes are DENIED, nothing goes', async () => {
  const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
  for (const deletes of [true, false]) {
    const { app, driver } = registry({
      immutableTags: [{ repositories: ['prod/**'], tags: ['v*'] }],
      storage: { filesystem: { root: '/nonexistent' }, delete: deletes },
    });
    const child = async (seed: string) => {
      const cfg = await pushBlob(app, 'prod/multi', `{"arch":"${seed}"}`);
      const layer = await pushBlob(app, 'prod/multi', `layer of ${seed}`);
      const m = imageManifest(cfg, [layer]);
      const r = await app.request(`/v2/prod/multi/manifests/${digestOf(m)}`, {
        method: 'PUT',
        body: m.toString(),
        headers: { 'Content-Type': OCI },
      });
      assert.equal(r.status, 201);
      return { digest: digestOf(m), size: m.length, blobs: [cfg.digest, layer.digest] };
    };
    const amd64 = await child('amd64');
    const arm64 = await child('arm64');
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [amd64, arm64].map((c) => ({ mediaType: OCI, digest: c.digest, size: c.size })),
      }),
    );
    assert.equal(
      (
        await app.request('/v2/prod/multi/manifests/v2', {
          method: 'PUT',
          body: index.toString(),
          headers: { 'Content-Type': OCI_INDEX },
        })
      ).status,
      201,
    );
    const single = await pushImage(app, 'prod/multi', 'v1', 'single');
    const singleBlobs = [digestOf('{"s":"single"}'), digestOf('layer-single')];
    const mutable = await pushImage(app, 'prod/multi', 'latest', 'mutable');
    assert.equal(single.status, 201);
    assert.equal(mutable.status, 201);

    const refused: Array<[string, string]> = [
      ...[...amd64.blobs, ...arm64.blobs, ...singleBlobs].map(
        (d) => [`/v2/prod/multi/blobs/${d}`, 'blob'] as [string, string],
      ),
      [`/v2/prod/multi/manifests/${amd64.digest}`, 'index child'],
      [`/v2/prod/multi/manifests/${digestOf(index)}`, 'index'],
      [`/v2/prod/multi/manifests/${single.digest}`, 'manifest'],
      ['/v2/prod/multi/manifests/v2', 'tag'],
    ];
    for (const [path, what] of refused) {
      const r = await app.request(path, { method: 'DELETE' });
      assert.equal(r.status, deletes ? 403 : 405, `${what} ${path}${deletes ? '' : ' (deletes disabled)'}`);
      const e = (await r.json()).errors[0];
      if (!deletes) {
        assert.equal(e.code, 'UNSUPPORTED');
        continue;
      }
      assert.equal(e.code, 'DENIED');
      assert.match(e.message, /immutable.*prod\/multi:v[12]|prod\/multi:v[12].*immutable/);
    }
    // Nothing went: the index and its children pull in full; so does v1.
    const pulls = [digestOf(index), amd64.digest, arm64.digest, single.digest];
    for (const d of pulls) assert.equal((await app.request(`/v2/prod/multi/manifests/${d}`)).status, 200, d);
    for (const d of [...amd64.blobs, ...arm64.blobs, ...singleBlobs])
      assert.equal((await app.request(`/v2/prod/multi/blobs/${d}`)).status, 200, d);
    // GC after the attempts: the protected image stays whole.
    await new GarbageCollector(driver).run({ graceMs: 0, deleteUntagged: true, now: () => Date.now() + 60_000 });
    for (const d of [...amd64.blobs, ...arm64.blobs, ...singleBlobs])
      assert.equal((await app.request(`/v2/prod/multi/blobs/${d}`)).status, 200, `${d} after GC`);
    if (!deletes) continue;
    // What no immutable tag holds can still be deleted.
    assert.equal(
      (await app.request(`/v2/prod/multi/blobs/${digestOf('layer-mutable')}`, { method: 'DELETE' })).status,
      202,
      'blob of a mutable tag',
    );
    assert.equal(
      (await app.request(`/v2/prod/multi/manifests/${mutable.digest}`, { method: 'DELETE' })).status,
      202,
      'manifest of a mutable tag',
    );
  }
});

test('immutable tags outlive retention, and GC afterwards keeps their whole image', async () => {
  const { app, driver, policies } = registry({
    immutableTags: [{ repositories: ['prod/**'], tags: ['v*'] }],
    retention: { policies: [{ repositories: ['prod/**'], maxAge: '1d' }] },
  });
  const now = Date.now();
  const held = await pushImage(app, 'prod/old', 'v1', 'held');
  const dropped = await pushImage(app, 'prod/old', 'dev', 'dropped');
  for (const tag of ['v1', 'dev'])
    (driver as unknown as { objects: Map<string, { modified: Date }> }).objects.get(
      paths.tag('prod/old', tag),
    )!.modified = new Date(now - 20 * 86_400_000);
  assert.deepEqual(await policies.applyRetention({ now }), ['prod/old:dev']);
  await new GarbageCollector(driver).run({ graceMs: 0, deleteUntagged: true, now: () => Date.now() + 60_000 });
  assert.equal((await app.request('/v2/prod/old/manifests/v1')).headers.get('docker-content-digest'), held.digest);
  for (const d of [digestOf('{"s":"held"}'), digestOf('layer-held')])
    assert.equal((await app.request(`/v2/prod/old/blobs/${d}`)).status, 200, d);
  assert.equal((await app.request(`/v2/prod/old/manifests/${dropped.digest}`)).status, 404, 'the mutable one went');
});

test('quotas: a push over the namespace quota is DENIED with a clear message; other namespaces are unaffected', async () => {
  const { app } = registry({
    quotas: [
      { namespace: 'small', maxBytes: 1000 },
      { namespace: '*', maxBytes: 2000 },
    ],
  });
  const rows: Array<[string, string, number, number]> = [
    ['small/a', 'first 600', 600, 201],
    ['small/b', 'second 300 (900 total)', 300, 201],
    ['small/a', 'over (1100 > 1000)', 200, 403],
    ['big/x', 'another namespace, 1500', 1500, 201],
    ['big/y', 'its own limit (1500 + 600 > 2000)', 600, 403],
    ['other', 'a fresh namespace under *', 1900, 201],
  ];
  for (const [name, what, size, status] of rows) {
    const r = await pushBlob(app, name, 'x'.repeat(size - 1) + what.length);
    assert.equal(r.status, status, `${name}: ${what}`);
    if (status === 403) {
      const e = JSON.parse(r.body).errors[0];
      assert.equal(e.code, 'DENIED');
      assert.match(e.message, /quota exceeded for namespace/);
    }
  }
  // A chunked session is refused at completion, before anything becomes visible.
  const post = await app.request('/v2/small/c/blobs/uploads/', { method: 'POST' });
  assert.equal(post.status, 202);
  const data = 'y'.repeat(200);
  const put = await app.request(`${post.headers.get('location')}?digest=${digestOf(data)}`, {
    method: 'PUT',
    body: data,
    headers: { 'Content-Length': '200' },
  });
  assert.equal(put.status, 403);
  assert.equal((await app.request(`/v2/small/c/blobs/${digestOf(data)}`, { method: 'HEAD' })).status, 404);
});

test('retention: keepLast, maxAge, keepPulledWithin, tag patterns (table)', async () => {
  const day = 86_400_000;
  const rows: Array<{ policy: Record<string, unknown>; tags: Array<[string, number, number?]>; kept: string[] }> = [
    // tags: [name, pushed days ago, pulled days ago]
    {
      policy: { keepLast: 2 },
      tags: [
        ['a', 3],
        ['b', 2],
        ['c', 1],
      ],
      kept: ['b', 'c'],
    },
    {
      policy: { maxAge: '10d' },
      tags: [
        ['old', 20],
        ['new', 5],
      ],
      kept: ['new'],
    },
    {
      policy: { maxAge: '10d', keepPulledWithin: '7d' },
      tags: [
        ['old-pulled', 20, 3],
        ['old', 20, 30],
        ['new', 1],
      ],
      kept: ['new', 'old-pulled'],
    },
    {
      policy: { keepLast: 1, tags: ['dev-*'] },
      tags: [
        ['dev-1', 3],
        ['dev-2', 2],
        ['v1', 9],
      ],
      kept: ['dev-2', 'v1'],
    },
    { policy: {}, tags: [['x', 100]], kept: ['x'] },
  ];
  for (const [i, row] of rows.entries()) {
    const name = `r${i}/app`;
    const { app, driver, policies } = registry({
      retention: { policies: [{ repositories: ['r*/**'], keepPulledWithin: undefined, ...row.policy }] },
    });
    const now = Date.now();
    for (const [tag, pushed, pulled] of row.tags) {
      assert.equal((await pushImage(app, name, tag, tag)).status, 201);
      const o = (driver as unknown as { objects: Map<string, { modified: Date }> }).objects.get(paths.tag(name, tag))!;
      o.modified = new Date(now - pushed * day);
      if (pulled !== undefined) await driver.put(paths.lastPull(name, tag), new Date(now - pulled * day).toISOString());
    }
    const dry = await policies.applyRetention({ dryRun: true, now });
    await policies.applyRetention({ now });
    const tags = (await (await app.request(`/v2/${name}/tags/list`)).json()).tags;
    assert.deepEqual(tags, row.kept, JSON.stringify(row.policy));
    assert.equal(dry.length, row.tags.length - row.kept.length);
  }
  // Pulls are recorded (throttled) for policies with keepPulledWithin.
  const { app, driver } = registry({
    retention: { policies: [{ repositories: ['**'], keepPulledWithin: '1d', maxAge: '1d' }] },
  });
  await pushImage(app, 'p/q', 't', 't');
  assert.equal((await app.request('/v2/p/q/manifests/t', { method: 'HEAD' })).status, 200);
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(await driver.get(paths.lastPull('p/q', 't')), 'last pull recorded');
});

test('metrics and health answer with the expected series', async () => {
  const { app, metrics, driver } = registry({});
  const server = await listen(app, '127.0.0.1:0', silent, metrics!.onRequest);
  await fetch(`${server.url}/v2/`).then((r) => r.arrayBuffer());
  await fetch(`${server.url}/v2/x/blobs/uploads/`, { method: 'POST' }).then((r) => r.arrayBuffer());
  await server.close();
  assert.equal((await app.request('/healthz')).status, 200);
  const ready = await app.request('/readyz');
  assert.equal(ready.status, 200);
  assert.equal((await ready.json()).status, 'ok');
  metrics!.gcRun({
    dryRun: false,
    repositories: 1,
    manifestsLive: 1,
    blobsLive: 1,
    blobs: 3,
    bytes: 1234,
    manifests: 1,
    links: 2,
    referrers: 0,
    uploads: 0,
    ms: 50,
  });
  const text = await (await app.request('/metrics')).text();
  for (const series of [
    'berth_http_requests_total{route="base",method="GET",status="200"} 1',
    'berth_http_requests_total{route="uploads",method="POST",status="202"} 1',
    'berth_http_request_duration_seconds_bucket',
    'berth_http_request_bytes_total{route="uploads"}',
    'berth_http_response_bytes_total{route="base"}',
    'berth_uploads_in_flight',
    'berth_gc_runs_total{result="ok"} 1',
    'berth_gc_freed_bytes_total 1234',
    'berth_gc_deleted_total{kind="blobs"} 3',
    'berth_process_resident_memory_bytes',
  ]) {
    assert.ok(text.includes(series), `missing ${series}`);
  }
  // Storage that does not answer makes /readyz 503.
  driver.stat = () => Promise.reject(new Error('storage down'));
  const down = await app.request('/readyz');
  assert.equal(down.status, 503);
  assert.match((await down.json()).error, /storage down/);
});

test('webhooks: CloudEvents arrive signed, failures are retried, private addresses are refused unless allowed', async () => {
  const received: Array<{ body: string; sig?: string; type?: string }> = [];
  let failFirst = 2;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (failFirst-- > 0) {
        res.writeHead(503).end();
        return;
      }
      received.push({
        body: Buffer.concat(chunks).toString(),
        sig: req.headers['x-berth-signature'] as string,
        type: req.headers['content-type'],
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  try {
    const { app, webhooks } = registry({
      webhooks: [
        { url, secret: 's3cret', events: ['push', 'delete', 'pull'], allowPrivateNetworks: true, retries: 4 },
        { url, events: ['push'] }, // loopback without allowPrivateNetworks: never sent
        { url: url.replace('127.0.0.1', 'localhost'), events: ['push'] }, // a name resolving to loopback: neither
      ],
    });
    const img = await pushImage(app, 'hooks/app', 'v1', 'w');
    await app.request('/v2/hooks/app/manifests/v1');
    await app.request('/v2/hooks/app/manifests/v1', { method: 'DELETE' });
    await webhooks!.idle();
    assert.equal(received.length, 3, 'push, pull, delete; the loopback target without allow never got one');
    const events = received.map((r) => JSON.parse(r.body));
    assert.deepEqual(events.map((e) => e.type).sort(), [
      'dev.berth.artifact.deleted',
      'dev.berth.artifact.pulled',
      'dev.berth.artifact.pushed',
    ]);
    const push = events.find((e) => e.type.endsWith('pushed'));
    assert.equal(push.specversion, '1.0');
    assert.equal(push.subject, 'hooks/app:v1');
    assert.equal(push.data.digest, img.digest);
    for (const r of received) {
      assert.equal(r.sig, signature('s3cret', r.body), 'HMAC over the exact body');
      assert.match(r.type!, /^application\/cloudevents\+json/);
    }
  } finally {
    server.close();
  }
  for (const a of [
    '127.0.0.1',
    '10.1.2.3',
    '169.254.169.254',
    '192.168.1.1',
    '::1',
    'fe80::1',
    '::ffff:127.0.0.1',
    'fd00:ec2::254',
    '0.0.0.0',
  ])
    assert.ok(isBlockedAddress(a), a);
  for (const a of ['93.184.216.34', '2606:4700::1111']) assert.ok(!isBlockedAddress(a), a);
});
