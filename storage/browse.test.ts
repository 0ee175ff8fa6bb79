// The UI's listings (storage/browse.ts): reused within the TTL, dropped at once by this process's writes, bounded by
// the TTL for another replica's writes, and tag targets reused by the listing's version. On the filesystem driver
// (it gives versions); a counting wrapper shows which reads really reach storage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { digestOf, type Digest } from '../spec/index.js';
import type { Driver } from './driver.js';
import { FsDriver } from './fs.js';
import { createStore, type Store } from './index.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** Counts the driver calls the stores make: `get`, `list`, `listFiles`, `stat`. */
function counting(inner: Driver): { driver: Driver; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const count = (k: string) => calls.set(k, (calls.get(k) ?? 0) + 1);
  const driver = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        count(String(prop));
        return v.apply(target, args);
      };
    },
  });
  return { driver, calls };
}

async function push(store: Store, name: string, tag: string, seed: string): Promise<Digest> {
  const blobs = [];
  for (const content of [`{"seed":"${seed}"}`, `layer ${seed}`]) {
    const info = await store.uploads.start(name);
    await store.uploads.append(info, 0, Readable.from([Buffer.from(content)]));
    await store.uploads.complete(info, digestOf(content));
    blobs.push({ digest: digestOf(content), size: Buffer.byteLength(content) });
  }
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...blobs[0] },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...blobs[1] }],
    }),
  );
  return (await store.manifests.put(name, tag, body, OCI_MANIFEST)).digest;
}

async function tmpRoot(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const root = await mkdtemp('/tmp/berth-browse-');
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

test("listings are reused within the TTL, and this process's writes show at once", async (t) => {
  const { driver, calls } = counting(new FsDriver({ root: await tmpRoot(t), fsync: false }));
  const store = createStore(driver);
  store.browse.ttlMs = 60_000;
  const v1 = await push(store, 'team/app', 'v1', 'one');
  assert.deepEqual(
    (await store.browse.tagTimes('team/app')).map((x) => x.tag),
    ['v1'],
  );
  assert.equal((await store.browse.summary('team/app')).tags, 1);
  assert.deepEqual(await store.browse.catalog(), ['team/app']);
  assert.equal(await store.browse.exists('team/app'), true);

  calls.clear();
  const [tags, summary] = await Promise.all([store.browse.tagTimes('team/app'), store.browse.summary('team/app')]);
  assert.equal(tags.length, 1);
  assert.equal(summary.manifests, 1);
  await store.browse.catalog();
  await store.browse.exists('team/app');
  assert.deepEqual([...calls], [], 'nothing listed again within the TTL');

  // A push, a retag, a delete and a new repository by this process: shown on the next call.
  const v2 = await push(store, 'team/app', 'v2', 'two');
  assert.deepEqual(
    (await store.browse.tagTimes('team/app')).map((x) => x.tag),
    ['v1', 'v2'],
  );
  const s = await store.browse.summary('team/app');
  assert.equal(s.tags, 2);
  assert.equal(s.manifests, 2);
  assert.ok(s.size > 0);
  await store.manifests.delete('team/app', 'v1');
  assert.deepEqual(
    (await store.browse.tagTimes('team/app')).map((x) => x.tag),
    ['v2'],
  );
  assert.equal((await store.browse.summary('team/app')).tags, 1);
  await store.manifests.delete('team/app', v1);
  assert.equal((await store.browse.summary('team/app')).manifests, 1);
  await push(store, 'team/other', 'latest', 'three');
  assert.deepEqual(await store.browse.catalog(), ['team/app', 'team/other']);
  assert.equal(await store.browse.exists('team/other'), true);
  // Callers sort and filter what they get: the cached listing is not theirs to change.
  (await store.browse.tagTimes('team/app')).reverse().pop();
  assert.deepEqual(
    (await store.browse.tagTimes('team/app')).map((x) => x.tag),
    ['v2'],
  );
  assert.equal(await store.browse.tagTarget('team/app', (await store.browse.tagTimes('team/app'))[0]), v2);
});

test("another replica's writes show within the TTL; tag targets are reused by the listing's version", async (t) => {
  const root = await tmpRoot(t);
  const { driver, calls } = counting(new FsDriver({ root, fsync: false }));
  const ui = createStore(driver);
  ui.browse.ttlMs = 300;
  const replica = createStore(new FsDriver({ root, fsync: false }));
  const a = await push(replica, 'shared/app', 'latest', 'a');

  const [listed] = await ui.browse.tagTimes('shared/app');
  assert.ok(listed.version, 'the filesystem listing gives versions');
  assert.equal(await ui.browse.tagTarget('shared/app', listed), a);
  calls.clear();
  assert.equal(await ui.browse.tagTarget('shared/app', listed), a);
  assert.equal(calls.get('get'), undefined, 'an unchanged tag is not read again');

  const b = await push(replica, 'shared/app', 'latest', 'b');
  await push(replica, 'shared/app', 'new', 'c');
  // Within the TTL the listing may be the old one; after it, the replica's writes are there.
  assert.ok((await ui.browse.tagTimes('shared/app')).length <= 2);
  await sleep(350);
  const now = await ui.browse.tagTimes('shared/app');
  assert.deepEqual(
    now.map((x) => x.tag),
    ['latest', 'new'],
  );
  assert.notEqual(now[0].version, listed.version, 'a moved tag has a new version');
  assert.equal(await ui.browse.tagTarget('shared/app', now[0]), b);
  assert.equal((await ui.browse.summary('shared/app')).tags, 2);

  // TTL 0 (the default outside the registry): every call lists.
  ui.browse.ttlMs = 0;
  calls.clear();
  await ui.browse.tagTimes('shared/app');
  await ui.browse.tagTimes('shared/app');
  assert.equal(calls.get('listFiles'), 2);
});
