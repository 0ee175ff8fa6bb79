// GC on real S3 (SeaweedFS): the same mark and sweep through the S3 driver (listings by prefix, server mtimes),
// two replicas competing for the lease, and a push that overlaps a sweep.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { digestOf, type Digest } from '../spec/index.js';
import { createStore, paths, type Store } from '../storage/index.js';
import { S3Driver } from '../storage/s3.js';
import { GarbageCollector, GcBusyError, GcGuard } from '../storage/gc.js';
import { startS3Server, S3_PEER } from './support/s3-server.js';
import { requirePeer } from './support/peers.js';
import { imageManifest } from './support/registry-client.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const LATER = { graceMs: 1_000, now: () => Date.now() + 120_000 };

async function blob(store: Store, name: string, content: string): Promise<{ digest: Digest; size: number }> {
  const info = await store.uploads.start(name);
  await store.uploads.append(info, 0, Readable.from([Buffer.from(content)]));
  const digest = digestOf(content);
  await store.uploads.complete(info, digest);
  return { digest, size: content.length };
}

async function image(store: Store, name: string, tag: string, seed: string) {
  const cfg = await blob(store, name, `{"seed":"${seed}"}`);
  const layer = await blob(store, name, `layer ${seed}`);
  const { digest } = await store.manifests.put(name, tag, imageManifest(cfg, [layer]), OCI);
  return { digest, blobs: [cfg.digest, layer.digest] };
}

test('GC on S3: sweeps what is unreferenced, keeps the rest; one GC per lease across replicas', {
  timeout: 180_000,
}, async (t) => {
  if (!requirePeer(t, S3_PEER)) return;
  const s3 = await startS3Server();
  t.after(() => s3.stop());
  const driver = (prefix: string) =>
    new S3Driver({
      bucket: s3.bucket,
      endpoint: s3.endpoint,
      region: s3.region,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
      forcePathStyle: true,
      prefix,
    });
  const a = driver('gc');
  const b = driver('gc'); // a second replica on the same bucket and prefix
  t.after(async () => {
    await a.close?.();
    await b.close?.();
  });
  const store = createStore(a);
  const kept = await image(store, 'team/app', 'v1', 'kept');
  const gone = await image(store, 'team/app', 'v2', 'gone');
  await store.manifests.delete('team/app', gone.digest);
  const stray = await blob(store, 'other/repo', 'stray');

  const dry = await new GarbageCollector(b).run({ ...LATER, dryRun: true });
  assert.equal(dry.blobs, 4, 'the deleted manifest, its two blobs and the stray blob');
  // Two replicas at once: one runs, the other is told the lease is held.
  const results = await Promise.allSettled([new GarbageCollector(a).run(LATER), new GarbageCollector(b).run(LATER)]);
  const ran = results.filter((r) => r.status === 'fulfilled');
  const busy = results.filter((r) => r.status === 'rejected' && r.reason instanceof GcBusyError);
  assert.equal(ran.length + busy.length, 2);
  assert.ok(ran.length >= 1);
  const total = ran.reduce((n, r) => n + (r as PromiseFulfilledResult<{ blobs: number }>).value.blobs, 0);
  assert.equal(total, 4, 'each blob removed once');
  for (const d of [kept.digest, ...kept.blobs]) assert.ok(await a.stat(paths.blobData(d)), `${d} kept`);
  for (const d of [gone.digest, ...gone.blobs, stray.digest])
    assert.equal(await a.stat(paths.blobData(d)), undefined, `${d} swept`);
  assert.equal((await store.manifests.get('team/app', 'v1')).digest, kept.digest);
  assert.equal((await new GcGuard(a).state()).phase, 'idle');
  assert.equal(await a.get(paths.gcLease), undefined, 'lease released');

  // A push through the other replica while a GC (real clock, 30 s grace) runs: it lands whole.
  const storeB = createStore(b);
  const gc = new GarbageCollector(a).run({ graceMs: 30_000, deleteUntagged: true });
  const pushed = await image(storeB, 'team/app', 'v3', 'during');
  await gc;
  const m = await storeB.manifests.get('team/app', 'v3');
  assert.equal(m.digest, pushed.digest);
  for (const d of pushed.blobs) assert.ok(await b.stat(paths.blobData(d)), 'its blobs are there');
});
