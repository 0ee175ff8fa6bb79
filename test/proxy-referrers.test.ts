// The pull-through cache answers GET /v2/<name>/referrers/<digest> for a mirrored subject from the upstream (in
// process, no peers): the upstream's list, revalidated like a tag (tagTtl), filtered and paginated by the mirror;
// the referrers fetched on demand; a referrer deleted upstream disappears; the last list served stale when the
// upstream is down; 503 when nothing was ever stored; an upstream without the referrers API (its fallback tag).
// The same with real notation, cosign and oras: test/signatures-travel.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { createLogger, createRegistry, listen, loadConfig, type RunningServer } from '../registry/index.js';
import type { Proxy, UpstreamConfig } from '../registry/proxy/index.js';
import { FsDriver } from '../storage/fs.js';
import { MemoryDriver } from '../storage/memory.js';
import { startCountingProxy } from './support/counting-proxy.js';
import { imageManifest, pushBlob, pushManifest, raw, sha256 } from './support/registry-client.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const SIG = 'application/vnd.example.signature';
const SBOM = 'application/vnd.example.sbom';

async function serve(t: TestContext, proxy?: { upstreams: UpstreamConfig[] }): Promise<{ url: string; proxy?: Proxy }> {
  const root = await mkdtemp('/tmp/berth-proxy-ref-');
  if (proxy) proxy = { upstreams: proxy.upstreams.map((u) => ({ allowPrivateNetworks: true, ...u })) };
  const config = loadConfig({ env: {}, flags: proxy ? { proxy } : {} });
  const driver = proxy ? new FsDriver({ root, fsync: false }) : new MemoryDriver();
  const registry = createRegistry(config, driver, createLogger('silent', false));
  const server: RunningServer = await listen(registry.app, '127.0.0.1:0');
  t.after(async () => {
    registry.proxy?.close();
    await server.close(1000);
    await rm(root, { recursive: true, force: true });
  });
  return { url: server.url, proxy: registry.proxy };
}

/** An image and `types.length` referrers of it (each with a one-blob payload) in `name` on `base`. */
async function pushSigned(base: string, name: string, types: string[]) {
  const empty = { digest: await pushBlob(base, name, '{}'), size: 2 };
  const subjectBody = imageManifest(empty, [], { annotations: { n: randomBytes(4).toString('hex') } });
  const subject = sha256(subjectBody);
  assert.equal((await pushManifest(base, name, 'v1', subjectBody)).status, 201);
  const referrers: string[] = [];
  for (const type of types) referrers.push(await pushReferrer(base, name, subject, subjectBody.length, type));
  return { subject, referrers };
}

async function pushReferrer(base: string, name: string, subject: string, size: number, type: string) {
  const payload = randomBytes(64);
  const payloadDigest = await pushBlob(base, name, payload);
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: type,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 },
      layers: [{ mediaType: 'application/octet-stream', digest: payloadDigest, size: payload.length }],
      subject: { mediaType: OCI_MANIFEST, digest: subject, size },
      annotations: { 'org.example.kind': type },
    }),
  );
  const res = await pushManifest(base, name, sha256(body), body);
  assert.equal(res.status, 201, res.body.toString());
  return sha256(body);
}

test('mirror: referrers of a mirrored subject come from the upstream, revalidated, stale when it is down', async (t) => {
  const upstream = await serve(t);
  const counting = await startCountingProxy(upstream.url);
  t.after(() => counting.stop());
  const mirror = await serve(t, { upstreams: [{ name: 'up', url: counting.url, prefix: 'up', tagTtl: '0s' }] });
  const cached = await serve(t, { upstreams: [{ name: 'up', url: counting.url, prefix: 'up', tagTtl: '1h' }] });
  const { subject, referrers } = await pushSigned(upstream.url, 'team/app', [SIG, SBOM]);
  const list = async (base: string, query = '') => raw(base, 'GET', `/v2/up/team/app/referrers/${subject}${query}`);

  await t.test('the upstream list, with artifactType, annotations, filter and pagination', async () => {
    const res = await list(mirror.url);
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.header('content-type'), OCI_INDEX);
    const got = res.json().manifests;
    assert.deepEqual(got.map((d: any) => d.digest).sort(), [...referrers].sort());
    const sig = got.find((d: any) => d.artifactType === SIG);
    assert.equal(sig.annotations['org.example.kind'], SIG);
    assert.equal(sig.mediaType, OCI_MANIFEST);
    const filtered = await list(mirror.url, `?artifactType=${encodeURIComponent(SBOM)}`);
    assert.equal(filtered.header('oci-filters-applied'), 'artifactType');
    assert.deepEqual(
      filtered.json().manifests.map((d: any) => d.digest),
      [referrers[1]],
    );
    const page = await list(mirror.url, '?n=1');
    assert.equal(page.json().manifests.length, 1);
    assert.match(page.header('link') ?? '', /rel="next"/);
  });

  await t.test('the referrers themselves and their blobs are fetched on demand through the cache', async () => {
    const m = await raw(mirror.url, 'GET', `/v2/up/team/app/manifests/${referrers[0]}`);
    assert.equal(m.status, 200);
    assert.equal(sha256(m.body), referrers[0]);
    const layer = m.json().layers[0];
    const blob = await raw(mirror.url, 'GET', `/v2/up/team/app/blobs/${layer.digest}`);
    assert.equal(blob.status, 200);
    assert.equal(sha256(blob.body), layer.digest);
  });

  await t.test('revalidated like a tag: a new referrer appears, a deleted one goes (tagTtl 0)', async () => {
    const third = await pushReferrer(upstream.url, 'team/app', subject, 0, SIG);
    // size 0 above is only the subject descriptor's claim; the list is keyed by subject digest.
    let got = (await list(mirror.url)).json().manifests.map((d: any) => d.digest);
    assert.ok(got.includes(third), 'a referrer pushed upstream later is listed');
    assert.equal((await raw(upstream.url, 'DELETE', `/v2/team/app/manifests/${third}`)).status, 202);
    got = (await list(mirror.url)).json().manifests.map((d: any) => d.digest);
    assert.ok(!got.includes(third), 'a referrer deleted upstream is no longer listed');
    assert.equal(got.length, 2);
  });

  await t.test('within tagTtl the stored list is served without asking the upstream', async () => {
    assert.equal((await list(cached.url)).json().manifests.length, 2);
    const asked = counting.count('GET', `/referrers/${subject}`);
    assert.equal((await list(cached.url)).json().manifests.length, 2);
    assert.equal(counting.count('GET', `/referrers/${subject}`), asked);
  });

  await t.test(
    'upstream down: the last list (even an empty one) is served stale; a never-listed subject is 503',
    async () => {
      const bare = `/v2/up/team/app/referrers/${sha256('listed empty')}`;
      assert.deepEqual((await raw(mirror.url, 'GET', bare)).json().manifests, []);
      const before = mirror.proxy!.stats().staleServes;
      counting.target = 'http://127.0.0.1:1';
      try {
        const stale = await list(mirror.url);
        assert.equal(stale.status, 200);
        assert.deepEqual(
          stale
            .json()
            .manifests.map((d: any) => d.digest)
            .sort(),
          [...referrers].sort(),
        );
        assert.equal(mirror.proxy!.stats().staleServes, before + 1);
        const empty = await raw(mirror.url, 'GET', bare);
        assert.equal(empty.status, 200, 'an empty list seen before is served stale too');
        assert.deepEqual(empty.json().manifests, []);
        // The referrer fetched earlier is still served (content by digest is cached for good).
        assert.equal((await raw(mirror.url, 'GET', `/v2/up/team/app/manifests/${referrers[0]}`)).status, 200);
        const unknown = await raw(mirror.url, 'GET', `/v2/up/team/app/referrers/${sha256('never listed')}`);
        assert.equal(unknown.status, 503);
        assert.equal(unknown.json().errors[0].code, 'UNAVAILABLE');
      } finally {
        counting.target = upstream.url;
      }
    },
  );

  await t.test('a subject with no referrers upstream is an empty index', async () => {
    const none = await raw(mirror.url, 'GET', `/v2/up/team/app/referrers/${sha256('nothing refers to me')}`);
    assert.equal(none.status, 200);
    assert.deepEqual(none.json().manifests, []);
  });
});

test('mirror: an upstream without the referrers API is read through its fallback tag', async (t) => {
  const upstream = await serve(t);
  const { subject, referrers } = await pushSigned(upstream.url, 'team/old', [SIG]);
  // The fallback tag index (distribution-spec "Referrers tag schema") as a registry without the API keeps it.
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: referrers[0], size: 1, artifactType: SIG },
        { mediaType: 'text/html', digest: sha256('junk'), size: 1 },
        { mediaType: OCI_MANIFEST, digest: 'sha256:../../etc', size: 1 },
      ],
    }),
  );
  // An upstream whose referrers route is missing (404 text/plain, as distribution 2.8 answers) and that serves the
  // fallback tag (a hostile or sloppy one: with entries that are no manifests or no digests).
  const fallbackTag = `/v2/team/old/manifests/${subject.replace(':', '-')}`;
  const legacy = createServer((req, res) => {
    if (/\/referrers\//.test(req.url ?? '')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('404 page not found');
      return;
    }
    if (req.url === fallbackTag) {
      res.writeHead(200, { 'content-type': OCI_INDEX, 'content-length': String(index.length) });
      res.end(req.method === 'HEAD' ? undefined : index);
      return;
    }
    req.pipe(_forward(new URL(upstream.url), req, res));
  });
  await new Promise<void>((r) => legacy.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => legacy.close(() => r())));
  const legacyUrl = `http://127.0.0.1:${(legacy.address() as AddressInfo).port}`;
  const mirror = await serve(t, { upstreams: [{ name: 'old', url: legacyUrl, prefix: 'old', tagTtl: '0s' }] });
  const res = await raw(mirror.url, 'GET', `/v2/old/team/old/referrers/${subject}`);
  assert.equal(res.status, 200, res.body.toString());
  // Malformed entries (not a manifest type, not a digest) are dropped, the good one is kept.
  assert.deepEqual(
    res.json().manifests.map((d: any) => d.digest),
    [referrers[0]],
  );
});

/** Forwards a request to `up` as is. */
function _forward(up: URL, req: IncomingMessage, res: ServerResponse) {
  return httpRequest(
    { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
    (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    },
  );
}
