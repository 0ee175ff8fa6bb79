// GC on the memory driver: what it keeps, what it takes, and the race protocol with writers (storage/gc.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { digestOf, type OciError, type Digest } from '../spec/index.js';
import { createStore, paths, type Store } from './index.js';
import { MemoryDriver } from './memory.js';
import { GarbageCollector, GcGuard } from './gc.js';
import type { Driver } from './driver.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
/** Everything written so far counts as older than the grace window. */
const LATER = { graceMs: 1_000, now: () => Date.now() + 60_000 };

async function pushBlob(store: Store, name: string, content: string): Promise<{ digest: Digest; size: number }> {
  const info = await store.uploads.start(name);
  await store.uploads.append(info, 0, Readable.from([Buffer.from(content)]));
  const digest = digestOf(content);
  await store.uploads.complete(info, digest);
  return { digest, size: Buffer.byteLength(content) };
}

function manifest(
  config: { digest: Digest; size: number },
  layers: Array<{ digest: Digest; size: number }>,
  extra: object = {},
): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l })),
      ...extra,
    }),
  );
}

async function pushImage(
  store: Store,
  name: string,
  tag: string,
  seed: string,
  extra: object = {},
): Promise<{ digest: Digest; blobs: Digest[]; size: number }> {
  const config = await pushBlob(store, name, `{"seed":"${seed}"}`);
  const layer = await pushBlob(store, name, `layer ${seed}`);
  const body = manifest(config, [layer], extra);
  const { digest } = await store.manifests.put(name, tag, body, OCI_MANIFEST);
  return { digest, blobs: [config.digest, layer.digest], size: body.length };
}

const exists = async (d: Driver, path: string) => (await d.stat(path)) !== undefined;

test('GC keeps tagged images, index children and live referrers; takes the rest', async () => {
  const driver = new MemoryDriver();
  const store = createStore(driver);
  const kept = await pushImage(store, 'a/b', 'v1', 'kept');
  const gone = await pushImage(store, 'a/b', 'v2', 'gone');
  await store.manifests.delete('a/b', 'v2');
  const child = await pushImage(store, 'c', 'tmp', 'child');
  await store.manifests.delete('c', 'tmp'); // untagged, but an index below keeps it
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: child.digest, size: child.size }],
    }),
  );
  await store.manifests.put('c', 'multi', index, OCI_INDEX);
  const sig = await pushImage(store, 'a/b', 'sig-tmp', 'sig', {
    subject: { mediaType: OCI_MANIFEST, digest: kept.digest, size: kept.size },
  });
  await store.manifests.delete('a/b', 'sig-tmp');
  const orphanSig = await pushImage(store, 'a/b', 'orphan-tmp', 'orphan', {
    subject: { mediaType: OCI_MANIFEST, digest: gone.digest, size: gone.size },
  });
  await store.manifests.delete('a/b', 'orphan-tmp');
  const stray = await pushBlob(store, 'a/b', 'never referenced');

  const dry = await new GarbageCollector(driver).run({ ...LATER, dryRun: true, deleteUntagged: true });
  assert.ok(dry.blobs > 0 && dry.bytes > 0);
  assert.ok(await exists(driver, paths.blobData(stray.digest)), 'a dry run deletes nothing');

  const items: string[] = [];
  const r = await new GarbageCollector(driver).run({
    ...LATER,
    deleteUntagged: true,
    onItem: (k, w) => items.push(`${k} ${w}`),
  });
  assert.equal(r.blobs, dry.blobs);
  assert.equal(r.bytes, dry.bytes);
  for (const d of [kept.digest, ...kept.blobs, child.digest, ...child.blobs, sig.digest, ...sig.blobs]) {
    assert.ok(await exists(driver, paths.blobData(d)), `${d} is live`);
  }
  for (const d of [gone.digest, ...gone.blobs, orphanSig.digest, stray.digest]) {
    assert.ok(!(await exists(driver, paths.blobData(d))), `${d} is gone`);
  }
  assert.ok(!(await exists(driver, paths.layerLink('a/b', stray.digest))), 'its link went first');
  assert.deepEqual(
    (await store.manifests.referrers('a/b', kept.digest)).map((d) => d.digest),
    [sig.digest],
  );
  assert.deepEqual(await store.manifests.referrers('a/b', gone.digest), []);
  assert.equal((await store.manifests.get('c', 'multi')).digest, digestOf(index));
  assert.equal((await store.manifests.get('c', child.digest)).digest, child.digest);
  await assert.rejects(store.blobs.stat('a/b', stray.digest), (e: OciError) => e.code === 'BLOB_UNKNOWN');
  assert.equal((await new GarbageCollector(driver).run({ ...LATER, deleteUntagged: true })).blobs, 0, 'nothing left');
  assert.equal((await new GcGuard(driver).state()).phase, 'idle');
});

test('without deleteUntagged untagged manifests stay; the grace window spares fresh content', async () => {
  const driver = new MemoryDriver();
  const store = createStore(driver);
  const img = await pushImage(store, 'r', 't', 'x');
  await store.manifests.delete('r', 't');
  const fresh = await pushBlob(store, 'r', 'fresh');
  const r1 = await new GarbageCollector(driver).run({ graceMs: 60_000 });
  assert.equal(r1.blobs + r1.links + r1.manifests, 0, 'all within the grace window');
  await new GarbageCollector(driver).run(LATER);
  assert.ok(await exists(driver, paths.blobData(img.digest)), 'untagged manifest kept');
  assert.ok(await exists(driver, paths.blobData(img.blobs[1])));
  assert.ok(!(await exists(driver, paths.blobData(fresh.digest))), 'the unreferenced blob went once old');
});

/** A driver whose blob-data deletes wait for `release` — a sweep frozen in the middle. */
class PausingDriver extends MemoryDriver {
  paused?: Promise<void>;
  reached?: () => void;
  override async delete(path: string): Promise<void> {
    if (path.startsWith('blobs/') && this.paused) {
      this.reached?.();
      await this.paused;
    }
    return super.delete(path);
  }
}

test('a manifest PUT racing the sweep of its blob fails cleanly; a bracketed writer re-checks after the sweep', async () => {
  const driver = new PausingDriver();
  const store = createStore(driver);
  const old = await pushBlob(store, 'r', 'old unreferenced layer');
  const cfg = await pushBlob(store, 'r', '{"cfg":1}');
  const keep = await store.manifests.put('r', 'keep', manifest(cfg, []), OCI_MANIFEST);
  let release!: () => void;
  driver.paused = new Promise((r) => (release = r));
  const reached = new Promise<void>((r) => (driver.reached = r));
  const gc = new GarbageCollector(driver).run(LATER);
  await reached; // the sweep is about to delete `old` (its link is already gone)
  assert.equal((await new GcGuard(driver).state()).phase, 'sweep');
  // The client saw the blob before the sweep and pushes a manifest referencing it: the link is gone → clean 400.
  await assert.rejects(
    store.manifests.put('r', 'late', manifest(cfg, [old]), OCI_MANIFEST),
    (e: OciError) => e.code === 'MANIFEST_BLOB_UNKNOWN',
  );
  release();
  await gc;
  assert.equal(keep.digest, (await store.manifests.get('r', 'keep')).digest);

  // Writer that checked before the sweep deleted anything and wrote after: waits for the sweep, then re-checks.
  const old2 = await pushBlob(store, 'r', 'second old layer');
  driver.paused = new Promise((r) => (release = r));
  const reached2 = new Promise<void>((r) => (driver.reached = r));
  const guard = new GcGuard(driver);
  let verified = false;
  const gc2 = new GarbageCollector(driver).run(LATER);
  const writer = guard.around(
    async () => {
      await reached2; // inside the writer's bracket, the sweep starts
    },
    async () => {
      verified = true;
      assert.equal((await guard.state()).phase, 'idle', 'verify runs after the sweep');
    },
  );
  setTimeout(release, 100);
  await Promise.all([gc2, writer]);
  assert.ok(verified);
  assert.ok(!(await exists(driver, paths.blobData(old2.digest))));
  driver.paused = undefined;
});

test('upload completion racing the sweep of the same (deduplicated) data re-publishes it', async () => {
  const driver = new PausingDriver();
  const store = createStore(driver);
  const content = 'shared content';
  const digest = digestOf(content);
  await pushBlob(store, 'x', content);
  let release!: () => void;
  driver.paused = new Promise((r) => (release = r));
  const reached = new Promise<void>((r) => (driver.reached = r));
  const gc = new GarbageCollector(driver).run(LATER);
  await reached; // about to delete the data of `digest`
  const info = await store.uploads.start('y');
  await store.uploads.append(info, 0, Readable.from([Buffer.from(content)]));
  const done = store.uploads.complete(info, digest); // data exists now: it only links, then waits for the sweep
  setTimeout(release, 50);
  await Promise.all([gc, done]);
  assert.ok(await exists(driver, paths.blobData(digest)), 'published again from the upload');
  assert.equal((await store.blobs.stat('y', digest)).size, content.length);
  driver.paused = undefined;
});

/** A driver whose writes of one path wait for `release`: a writer frozen between its read and its write. */
class HoldingDriver extends MemoryDriver {
  holdPut?: { path: string; until: Promise<void>; reached: () => void };
  override async put(path: string, data: Buffer | string): Promise<void> {
    const hold = this.holdPut;
    if (hold && path === hold.path) {
      this.holdPut = undefined;
      hold.reached();
      await hold.until;
    }
    return super.put(path, data);
  }
}

test("a mirror's touch of a manifest racing the sweep that takes it does not bring back a link to swept bytes", async () => {
  const driver = new HoldingDriver();
  const store = createStore(driver);
  const cfg = await pushBlob(store, 'm', '{"cfg":"touch"}');
  const body = manifest(cfg, []);
  const { digest } = await store.manifests.put('m', digestOf(body), body, OCI_MANIFEST); // untagged: garbage
  let release!: () => void;
  let reached!: () => void;
  const atPut = new Promise<void>((r) => (reached = r));
  driver.holdPut = { path: paths.manifestRevision('m', digest), until: new Promise((r) => (release = r)), reached };
  const touch = store.manifests.touch('m', digest); // read the link; its rewrite waits
  await atPut;
  const result = await new GarbageCollector(driver).run({ ...LATER, deleteUntagged: true });
  assert.equal(result.manifests, 1);
  assert.ok(!(await exists(driver, paths.blobData(digest))), 'the sweep took the bytes');
  release();
  await touch;
  assert.equal(await store.manifests.has('m', digest), false, 'no revision link left pointing at swept bytes');
});

test("a mirror's retag racing the sweep of the manifest is undone and reported", async () => {
  const driver = new HoldingDriver();
  const store = createStore(driver);
  const cfg = await pushBlob(store, 'm', '{"cfg":"retag"}');
  const body = manifest(cfg, []);
  const { digest } = await store.manifests.put('m', digestOf(body), body, OCI_MANIFEST); // untagged: garbage
  let release!: () => void;
  let reached!: () => void;
  const atPut = new Promise<void>((r) => (reached = r));
  driver.holdPut = { path: paths.tag('m', 'latest'), until: new Promise((r) => (release = r)), reached };
  const retag = store.manifests.retag('m', 'latest', digest); // saw the manifest; the tag write waits
  await atPut;
  await new GarbageCollector(driver).run({ ...LATER, deleteUntagged: true });
  release();
  assert.equal(await retag, false, 'the manifest went: the caller fetches it again');
  assert.ok(!(await exists(driver, paths.tag('m', 'latest'))), 'no tag left pointing at a swept manifest');
});

test('one GC at a time: the lease', async () => {
  const driver = new PausingDriver();
  const store = createStore(driver);
  await pushBlob(store, 'z', 'lonely');
  let release!: () => void;
  driver.paused = new Promise((r) => (release = r));
  const reached = new Promise<void>((r) => (driver.reached = r));
  const first = new GarbageCollector(driver).run(LATER);
  await reached;
  await assert.rejects(new GarbageCollector(driver).run(LATER), /lease/);
  release();
  await first;
  driver.paused = undefined;
  await new GarbageCollector(driver).run(LATER);
});

// ---- a dead GC must not block writers for long; a live one must still be waited for (issue 14, item 6) ----------

const FOREIGN = { host: 'another-host', pid: 1 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs a writer through GcGuard.around and reports how long it took and whether it re-checked (verify). */
async function write(driver: Driver): Promise<{ ms: number; verified: boolean; phaseAtVerify?: string }> {
  const guard = new GcGuard(driver);
  const started = Date.now();
  const out: { ms: number; verified: boolean; phaseAtVerify?: string } = { ms: 0, verified: false };
  await guard.around(
    async () => {},
    async () => {
      out.verified = true;
      out.phaseAtVerify = (await guard.state()).phase;
    },
  );
  out.ms = Date.now() - started;
  return out;
}

test('a GC that died elsewhere (no heartbeat for its ttl) stops blocking writers and the next GC; a beating one does not', async () => {
  const driver = new MemoryDriver();
  // Left by a GC on another machine, killed mid-sweep: its process can't be checked from here.
  await driver.put(
    paths.gcState,
    JSON.stringify({
      gen: 7,
      phase: 'sweep',
      beat: 3,
      ttl: 400,
      owner: FOREIGN,
      expires: new Date(Date.now() + 3_600_000).toISOString(),
    }),
  );
  const w = await write(driver);
  assert.ok(w.verified, 'the writer re-checks its content');
  assert.ok(w.ms >= 350 && w.ms < 3_000, `waited about the ttl (${w.ms} ms), not the state's expiry`);
  assert.ok((await write(driver)).ms < 100, 'later writers of this process do not wait again');

  // A GC elsewhere that keeps beating: writers wait for its sweep however long it takes, well past the ttl.
  await driver.put(paths.gcState, JSON.stringify({ gen: 8, phase: 'sweep', beat: 1, ttl: 400, owner: FOREIGN }));
  let beat = 1;
  const beating = setInterval(
    () =>
      void driver.put(
        paths.gcState,
        JSON.stringify({ gen: 8, phase: 'sweep', beat: ++beat, ttl: 400, owner: FOREIGN }),
      ),
    50,
  );
  setTimeout(() => {
    clearInterval(beating);
    void driver.put(paths.gcState, JSON.stringify({ gen: 8, phase: 'idle' }));
  }, 1_500);
  const live = await write(driver);
  assert.ok(live.ms >= 1_400, `waited for the live GC (${live.ms} ms)`);
  assert.equal(live.phaseAtVerify, 'idle', 're-checked only after its sweep');

  // The next GC: a dead holder's lease is taken over after the ttl; a beating holder's is not.
  await driver.put(
    paths.gcLease,
    JSON.stringify({
      holder: 'dead',
      beat: 9,
      ttl: 400,
      owner: FOREIGN,
      expires: new Date(Date.now() + 3_600_000).toISOString(),
    }),
  );
  const started = Date.now();
  await new GarbageCollector(driver).run(LATER);
  assert.ok(Date.now() - started < 5_000, 'took the dead lease over');
  await driver.put(paths.gcLease, JSON.stringify({ holder: 'alive', beat: 1, ttl: 400, owner: FOREIGN }));
  beat = 1;
  const holding = setInterval(
    () => void driver.put(paths.gcLease, JSON.stringify({ holder: 'alive', beat: ++beat, ttl: 400, owner: FOREIGN })),
    50,
  );
  await assert.rejects(new GarbageCollector(driver).run(LATER), /holds the lease/);
  clearInterval(holding);
});

test('a GC whose process is gone on this host is dead at once', async () => {
  const { spawnSync } = await import('node:child_process');
  const { selfOwner } = await import('./gc-lease.js');
  if (!selfOwner().pidns || !selfOwner().boot) return; // not Linux: the heartbeat alone decides
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  const owner = { ...selfOwner(), pid: Number(child.stdout.toString()), start: '1' };
  const driver = new MemoryDriver();
  await driver.put(paths.gcState, JSON.stringify({ gen: 9, phase: 'mark', beat: 1, ttl: 60_000, owner }));
  const w = await write(driver);
  assert.ok(w.ms < 1_000, `no wait for a dead process (${w.ms} ms)`);
  await driver.put(paths.gcLease, JSON.stringify({ holder: 'dead', beat: 1, ttl: 60_000, owner }));
  await new GarbageCollector(driver).run(LATER); // takes the lease over at once
  // This very process, beating: alive.
  await driver.put(paths.gcState, JSON.stringify({ gen: 10, phase: 'mark', beat: 1, ttl: 60_000, owner: selfOwner() }));
  setTimeout(() => void driver.put(paths.gcState, JSON.stringify({ gen: 10, phase: 'idle' })), 300);
  assert.ok((await write(driver)).ms >= 250, 'a live owner is waited for');
});

/** Pauses blob deletes (like PausingDriver) and can stall the GC's own lease/state writes. */
class StallingDriver extends PausingDriver {
  stalled?: Promise<void>;
  inFlight = 0;
  override async put(path: string, data: Buffer | string): Promise<void> {
    if (path.startsWith('gc/') && this.stalled) await this.stalled;
    return super.put(path, data);
  }
  override async delete(path: string): Promise<void> {
    if (path.startsWith('blobs/') && this.paused) this.inFlight++;
    return super.delete(path);
  }
}

test('a GC that cannot renew its lease stops deleting before writers give up waiting for it (fence)', async () => {
  const driver = new StallingDriver();
  const store = createStore(driver);
  const strays = [];
  for (let i = 0; i < 12; i++) strays.push(await pushBlob(store, 'f', `stray ${i}`));
  let release!: () => void;
  let unstall!: () => void;
  driver.paused = new Promise((r) => (release = r));
  const reached = new Promise<void>((r) => (driver.reached = r));
  const gc = new GarbageCollector(driver).run({ ...LATER, leaseTtlMs: 400, concurrency: 1 });
  const outcome = gc.then(
    () => 'finished',
    (e: Error) => e.constructor.name,
  );
  await reached; // sweeping; now its renewals stop landing (slow storage, or a stalled process)
  driver.stalled = new Promise((r) => (unstall = r));
  const w = await write(driver);
  assert.ok(w.verified && w.ms >= 350, `the writer waited out the ttl (${w.ms} ms), then re-checked`);
  release();
  driver.paused = undefined;
  await sleep(200);
  unstall();
  driver.stalled = undefined;
  assert.equal(await outcome, 'GcFencedError');
  let left = 0;
  for (const b of strays) if (await exists(driver, paths.blobData(b.digest))) left++;
  assert.equal(left, strays.length - driver.inFlight, 'only the deletes already in flight happened');
  assert.ok(left > 0);
  assert.equal((await new GcGuard(driver).state()).phase, 'idle', 'the fenced run left the state idle');
  assert.equal(await driver.get(paths.gcLease), undefined, 'and released its lease');
});
