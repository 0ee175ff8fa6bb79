// The registry-backed layer cache (builder/registry-cache.ts), as an ephemeral CI runner sees it: every build here
// starts from an empty cache dir. Counted at a proxy in front of the registry, an unchanged context rebuilt against
// the registry that holds the previous build sends nothing but HEAD/GET of small metadata and gives the same
// digests; a one-file change uploads only the layer holding that file (and the configs naming it). crane validates
// every pushed image (it downloads each layer and checks its digest and diffID), so a reused layer's recorded
// diffID is proven right. The same with the cache on distribution 2.8.2, as a referrer (fallback tag) and as a tag.
// Below the layer: a one-file change in a many-segment layer compresses only that file's segment on a cold runner,
// fetching the others from the previous blob by Range — the same digest as a build from scratch — and a registry
// that ignores Range (played by the proxy dropping the header) still gets the right image, every segment built.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth } from './support/berth.js';
import { berth, writeTree } from './support/builder-fixtures.js';
import { startCountingProxy, type CountingProxy } from './support/counting-proxy.js';
import { startDistribution } from './support/distribution.js';
import { ok, requirePeer, run } from './support/peers.js';

const SPEC = `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
layers:
  - name: bin
    files:
      - { src: "dist/{arch}/app", dest: /usr/local/bin/app }
  - name: static
    files:
      - { src: "static/**", dest: /srv/static/ }
  - name: conf
    files:
      - { src: conf/app.conf, dest: /etc/app.conf }
config: { entrypoint: [/usr/local/bin/app] }
`;

async function context(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-cicache-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeTree(dir, {
    'berth.yaml': SPEC,
    'dist/amd64/app': `#!/bin/sh\necho amd64\n${'x'.repeat(200_000)}\n`,
    'dist/arm64/app': `#!/bin/sh\necho arm64\n${'y'.repeat(200_000)}\n`,
    'static/index.html': '<h1>hi</h1>\n',
    'static/big.bin': Buffer.alloc(300_000, 7),
    'static/css/site.css': 'body{}\n',
    'conf/app.conf': 'level=info\n',
  });
  for (const a of ['amd64', 'arm64']) await chmod(join(dir, `dist/${a}/app`), 0o755);
  return dir;
}

interface Built {
  digest: string;
  images: {
    platform: string;
    digest: string;
    sbom?: string;
    layers: {
      name: string;
      digest: string;
      size: number;
      cached: boolean;
      registryCache?: string;
      segments?: { total: number; compressed: number; reused: number; fetched: number };
    }[];
  }[];
  outputs: { push?: string; blobs?: { uploaded: number; mounted: number; existed: number } }[];
  cacheFrom?: { ref: string; entries?: number; digest?: string; error?: string };
  cacheTo?: { ref: string; digest: string; mode: string; written: boolean };
}

/** `berth build` on a cold runner: a fresh, empty cache dir every time. */
async function coldBuild(dir: string, args: string[]): Promise<Built> {
  const cache = await mkdtemp(join(tmpdir(), 'berth-cold-cache-'));
  try {
    const r = await berth(['build', '-f', join(dir, 'berth.yaml'), '--cache', cache, '--json', ...args], {
      env: { SOURCE_DATE_EPOCH: undefined },
    });
    if (r.code !== 0) throw new Error(`berth build failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as Built;
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
}

/** Every request the proxy saw, as `METHOD path` lines, for failure messages. */
function seen(p: CountingProxy): string {
  return [...p.counts].map(([k, n]) => `${n}× ${k}`).join('\n');
}

/** Nothing but HEAD and GET, and no layer bytes downloaded (only manifests and the small record). */
function assertReadOnly(p: CountingProxy, layerDigests: string[]): void {
  const writes = [...p.counts.keys()].filter((k) => !k.startsWith('GET ') && !k.startsWith('HEAD '));
  assert.deepEqual(writes, [], `a cold rebuild of an unchanged context writes nothing:\n${seen(p)}`);
  for (const d of layerDigests) assert.equal(p.count('GET', `/blobs/${d}`), 0, `layer ${d} is not downloaded`);
  assert.ok(
    p.bytesOut('GET', '/blobs/') < 16 << 10,
    `only small blobs are read (${p.bytesOut('GET', '/blobs/')} bytes)`,
  );
}

const layerDigests = (b: Built) => [...new Set(b.images.flatMap((i) => i.layers.map((l) => l.digest)))];

async function crane(args: string[]): Promise<string> {
  return ok(await run('crane', args, { timeoutMs: 120_000 }));
}

test('registry cache on berth: a cold runner reuses every layer, a one-file change uploads one layer', async (t) => {
  if (!requirePeer(t, 'crane')) return;
  const dir = await context(t);
  const reg = await startBerth(t);
  const proxy = await startCountingProxy(reg.url);
  t.after(() => proxy.stop());
  const ref = `${proxy.host}/ci/app:main`;

  const first = await coldBuild(dir, ['--push', ref, '--registry-cache']);
  assert.equal(first.cacheFrom?.digest, undefined, 'no cache yet');
  assert.deepEqual({ mode: first.cacheTo?.mode, written: first.cacheTo?.written }, { mode: 'referrer', written: true });
  // The cache is an ordinary referrer of the pushed index, listed by the referrers API.
  const refs = await (await fetch(`${reg.url}/v2/ci/app/referrers/${first.digest}`)).json();
  assert.deepEqual(
    refs.manifests.map((m: any) => [m.digest, m.artifactType]),
    [[first.cacheTo!.digest, 'application/vnd.berth.build-cache.v1']],
  );

  // A cold runner, unchanged context: the same digests, every layer from the registry cache, nothing written.
  proxy.counts.clear();
  proxy.bytes.clear();
  const again = await coldBuild(dir, ['--push', ref, '--registry-cache']);
  assert.equal(again.digest, first.digest);
  assert.deepEqual(
    again.images.map((i) => i.sbom),
    first.images.map((i) => i.sbom),
    'the same SBOMs, from file lists hashed locally (the layers are never read back)',
  );
  for (const i of again.images)
    for (const l of i.layers) assert.equal(l.registryCache, `${proxy.host}/ci/app`, `${i.platform} ${l.name}`);
  assert.equal(again.cacheFrom?.digest, first.cacheTo!.digest);
  assert.equal(again.cacheTo?.written, false);
  assertReadOnly(proxy, layerDigests(first));

  // One file changes: only the layer holding it is built and uploaded (plus the two configs that name it).
  await writeFile(join(dir, 'static/css/site.css'), 'body{color:red}\n');
  proxy.counts.clear();
  proxy.bytesUp.clear();
  const changed = await coldBuild(dir, ['--push', ref, '--registry-cache']);
  assert.notEqual(changed.digest, first.digest);
  for (const [n, i] of changed.images.entries()) {
    const before = first.images[n].layers;
    for (const [k, l] of i.layers.entries()) {
      if (l.name === 'static') {
        assert.equal(l.registryCache, undefined, 'the changed layer is built');
        assert.notEqual(l.digest, before[k].digest);
      } else {
        assert.equal(l.digest, before[k].digest, `${l.name} is unchanged`);
        assert.ok(l.registryCache, `${l.name} comes from the registry cache`);
      }
    }
  }
  // Both platforms share the static layer: one layer blob and two configs are new.
  assert.equal(changed.outputs[0].blobs!.uploaded, 3, JSON.stringify(changed.outputs[0]));
  const newLayer = changed.images[0].layers.find((l) => l.name === 'static')!.digest;
  const up = proxy.bytesIn('PATCH', '/ci/app/blobs') + proxy.bytesIn('PUT', '/ci/app/blobs');
  assert.ok(up < 64 << 10, `the unchanged 400 KB of layers are not uploaded (${up} bytes went up)`);
  assert.ok(changed.cacheTo?.written);

  // And the next cold runner reuses the new layer too.
  proxy.counts.clear();
  proxy.bytes.clear();
  const third = await coldBuild(dir, ['--push', ref, '--registry-cache']);
  assert.equal(third.digest, changed.digest);
  assertReadOnly(proxy, [...layerDigests(first), newLayer]);

  // crane downloads every layer and checks digests and diffIDs: the recorded diffIDs are right.
  for (const i of third.images) await crane(['validate', '--remote', `${reg.host}/ci/app@${i.digest}`]);
});

test('registry cache: a local output reads reused layers from the registry; bad references are named', async (t) => {
  if (!requirePeer(t, 'crane')) return;
  const dir = await context(t);
  const reg = await startBerth(t);
  const ref = `${reg.host}/ci/local:v1`;
  await coldBuild(dir, ['--push', ref, '--registry-cache', '--no-sbom']);
  const layout = join(dir, 'out');
  const b = await coldBuild(dir, ['--cache-from', ref, '--oci-layout', `${layout}:v1`, '--no-sbom']);
  assert.ok(b.images.every((i) => i.layers.every((l) => l.registryCache)));
  await crane(['validate', '--path', layout]).catch(async () => {
    // older crane: validate the image pushed from the layout instead
    ok(await berth(['push', `${layout}:v1`, `${reg.host}/ci/from-layout:v1`]));
    await crane(['validate', '--remote', `${reg.host}/ci/from-layout:v1`]);
  });

  const bad = await berth(['build', '-f', join(dir, 'berth.yaml'), '--cache-from', 'UPPER/case', '--no-sbom']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--cache-from UPPER\/case: /);
  // A cache tag never overwrites an image.
  const clobber = await berth(['build', '-f', join(dir, 'berth.yaml'), '--cache-to', ref, '--no-sbom']);
  assert.equal(clobber.code, 1, clobber.stderr);
  assert.match(clobber.stderr, /--cache-to: cannot write the build cache to .*holds an image, not a berth build cache/);
  assert.equal(
    JSON.parse(ok(await run('crane', ['manifest', ref]))).artifactType,
    undefined,
    'the image is still there',
  );
  const noPush = await berth(['build', '-f', join(dir, 'berth.yaml'), '--registry-cache']);
  assert.equal(noPush.code, 2, noPush.stderr);
  assert.match(noPush.stderr, /--registry-cache uses the first --push REF/);
});

test('registry cache on distribution 2.8.2: as a referrer (fallback tag) and as a tag of its own', async (t) => {
  if (!requirePeer(t, 'distribution', 'crane')) return;
  const dir = await context(t);
  const dist = await startDistribution({ logLevel: 'warn' });
  t.after(() => dist.stop());
  const proxy = await startCountingProxy(dist.url);
  t.after(() => proxy.stop());

  // Attached to the image: distribution has no referrers API, so the fallback tag index lists the cache.
  const ref = `${proxy.host}/ci/app:main`;
  const first = await coldBuild(dir, ['--push', ref, '--registry-cache']);
  assert.equal(first.cacheTo?.mode, 'referrer');
  proxy.counts.clear();
  proxy.bytes.clear();
  const again = await coldBuild(dir, ['--push', ref, '--registry-cache']);
  assert.equal(again.digest, first.digest);
  assert.equal(again.cacheFrom?.digest, first.cacheTo!.digest);
  assertReadOnly(proxy, layerDigests(first));

  // A cache tag in another repository: the layers are copied there (mounted), a new image repo reuses them.
  const cacheRef = `${proxy.host}/ci/cache:buildcache`;
  const tagged = await coldBuild(dir, ['--push', `${proxy.host}/ci/other:v1`, '--cache-to', cacheRef, '--no-sbom']);
  assert.equal(tagged.cacheTo?.mode, 'tag');
  assert.equal(tagged.cacheTo?.written, true);
  await writeFile(join(dir, 'conf/app.conf'), 'level=debug\n');
  proxy.counts.clear();
  proxy.bytesUp.clear();
  const fromTag = await coldBuild(dir, ['--push', `${proxy.host}/ci/third:v1`, '--cache-from', cacheRef, '--no-sbom']);
  const blobs = fromTag.outputs[0].blobs!;
  // The conf layer is new (1 upload, shared by both platforms) plus 2 configs; bin ×2 and static are mounted.
  assert.deepEqual({ uploaded: blobs.uploaded, mounted: blobs.mounted }, { uploaded: 3, mounted: 3 }, seen(proxy));
  for (const i of fromTag.images) {
    for (const l of i.layers) assert.equal(!!l.registryCache, l.name !== 'conf', `${i.platform} ${l.name}`);
    await crane(['validate', '--remote', `${dist.host}/ci/third@${i.digest}`]);
  }
});

const SEGMENTED_SPEC = `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64]
layers:
  - name: data
    files:
      - { src: "data/**", dest: /srv/data/ }
  - name: conf
    files:
      - { src: conf/app.conf, dest: /etc/app.conf }
`;

/** 240 files of 40 KB of random hex (compressible by half) and a 9 MiB one: several segments (segments.ts). */
async function segmentedContext(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-segrange-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files: Record<string, string> = { 'berth.yaml': SEGMENTED_SPEC, 'conf/app.conf': 'level=info\n' };
  for (let i = 0; i < 240; i++) files[`data/f${String(i).padStart(3, '0')}.txt`] = randomBytes(20_000).toString('hex');
  await writeTree(dir, {
    ...files,
    // Incompressible, so its segment is too big to fetch ahead (layers.ts PREFETCH_MAX_BYTES): it streams.
    'data/zz-big.bin': randomBytes(9 << 20),
  });
  return dir;
}

/** The same size, other bytes: the file's segment changes, no boundary moves. */
const rewrite = (dir: string, name: string) => writeFile(join(dir, 'data', name), randomBytes(20_000).toString('hex'));

const dataLayer = (b: Built) => b.images[0].layers.find((l) => l.name === 'data')!;

/**
 * On a registry behind `proxy` at `ref`: a one-file change on a cold runner compresses one segment and fetches the
 * rest by Range, to the digest a from-scratch build gives; with Range ignored, every segment is built, same digest.
 */
async function assertSegmentReuse(t: TestContext, proxy: CountingProxy, ref: string): Promise<Built> {
  const dir = await segmentedContext(t);
  const push = ['--push', ref, '--registry-cache', '--no-sbom'];
  const first = await coldBuild(dir, push);
  const before = dataLayer(first);
  const total = before.segments!.total;
  assert.ok(total >= 3, `the data layer has several segments (${total})`);
  assert.deepEqual(before.segments, { total, compressed: total, reused: 0, fetched: 0 });

  await rewrite(dir, 'f120.txt');
  const scratch = await coldBuild(dir, ['--no-sbom']);
  proxy.counts.clear();
  proxy.bytes.clear();
  proxy.ranges.clear();
  const changed = await coldBuild(dir, push);
  // (a) bit for bit what a build from scratch gives
  assert.equal(changed.digest, scratch.digest, 'segment reuse gives the from-scratch digest');
  assert.equal(dataLayer(changed).digest, dataLayer(scratch).digest);
  // (b) only the changed file's segment was compressed; (c) the others came by Range from the previous blob
  assert.deepEqual(dataLayer(changed).segments, { total, compressed: 1, reused: total - 1, fetched: total - 1 });
  const blob = `/blobs/${before.digest}`;
  assert.deepEqual(proxy.rangeCount('GET', blob), { asked: total - 1, partial: total - 1 }, seen(proxy));
  assert.equal(proxy.count('GET', blob), total - 1, 'no GET of the whole previous blob');
  assert.ok(proxy.bytesOut('GET', blob) < before.size, `only parts of the ${before.size}-byte blob are read`);
  assert.ok(dataLayer(changed).registryCache === undefined && changed.images[0].layers[1].registryCache);

  // (d) A registry that ignores Range: the previous blob's parts cannot be had, every segment is built, same bytes.
  await rewrite(dir, 'f030.txt');
  const scratch2 = await coldBuild(dir, ['--no-sbom']);
  proxy.ranges.clear();
  proxy.ignoreRange = true;
  const ignored = await coldBuild(dir, push).finally(() => (proxy.ignoreRange = false));
  assert.equal(ignored.digest, scratch2.digest, 'a registry ignoring Range still gets the from-scratch digest');
  assert.deepEqual(dataLayer(ignored).segments, { total, compressed: total, reused: 0, fetched: 0 });
  const asked = proxy.rangeCount('GET', `/blobs/${dataLayer(changed).digest}`);
  assert.ok(asked.asked >= 1 && asked.partial === 0, `Range was asked for and answered 200: ${JSON.stringify(asked)}`);
  return ignored;
}

test('registry cache on berth: a one-file change compresses one segment, the rest fetched by Range', async (t) => {
  if (!requirePeer(t, 'crane')) return;
  const reg = await startBerth(t);
  const proxy = await startCountingProxy(reg.url);
  t.after(() => proxy.stop());
  const last = await assertSegmentReuse(t, proxy, `${proxy.host}/ci/seg:main`);
  await crane(['validate', '--remote', `${reg.host}/ci/seg@${last.digest}`]);
});

test('registry cache on distribution 2.8.2: a one-file change compresses one segment, the rest fetched by Range', async (t) => {
  if (!requirePeer(t, 'distribution', 'crane')) return;
  const dist = await startDistribution({ logLevel: 'warn' });
  t.after(() => dist.stop());
  const proxy = await startCountingProxy(dist.url);
  t.after(() => proxy.stop());
  const last = await assertSegmentReuse(t, proxy, `${proxy.host}/ci/seg:main`);
  await crane(['validate', '--remote', `${dist.host}/ci/seg@${last.digest}`]);
});
