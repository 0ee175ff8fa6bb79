// Upload sessions shared by two stores over one driver (two replicas on one storage): a chunk at a stale offset is
// refused with RANGE_INVALID even when this replica's running hash stands at that offset (it skips the size lookup
// then, and relies on the driver's offset check), and the digest stays right afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { OciError } from '../spec/index.js';
import { MemoryDriver } from './memory.js';
import { createStore } from './index.js';

test('a stale offset on one replica is RANGE_INVALID; the digest is still verified from every stored byte', async () => {
  const driver = new MemoryDriver();
  const a = createStore(driver);
  const b = createStore(driver);
  const [c1, c2, c3] = [randomBytes(1000), randomBytes(2000), randomBytes(3000)];
  const info = await a.uploads.start('repo/x');
  assert.equal(await a.uploads.append(info, 0, Readable.from([c1])), 1000); // a's hash now stands at 1000
  assert.equal(await b.uploads.append(info, 1000, Readable.from([c2])), 3000);
  await assert.rejects(a.uploads.append(info, 1000, Readable.from([c3])), (e: unknown) => {
    assert.ok(e instanceof OciError && e.code === 'RANGE_INVALID', String(e));
    return true;
  });
  assert.equal(await a.uploads.size(info.id), 3000, 'the refused chunk stored nothing');
  assert.equal(await a.uploads.append(info, 3000, Readable.from([c3])), 6000);
  const digest = `sha256:${createHash('sha256')
    .update(Buffer.concat([c1, c2, c3]))
    .digest('hex')}`;
  assert.deepEqual(await a.uploads.complete(info, digest), { digest, size: 6000 });
});

test('a PUT that arrives while a chunk is streaming waits for it, then verifies every stored byte', async () => {
  const store = createStore(new MemoryDriver());
  const info = await store.uploads.start('repo/y');
  const whole = randomBytes(30_000);
  const body = new PassThrough();
  const appending = store.uploads.append(info, 0, body);
  body.write(whole.subarray(0, 20_000));
  const partDigest = `sha256:${createHash('sha256').update(whole.subarray(0, 20_000)).digest('hex')}`;
  const completing = store.uploads.complete(info, partDigest);
  await new Promise((r) => setTimeout(r, 20));
  body.end(whole.subarray(20_000));
  assert.equal(await appending, 30_000, 'the chunk streaming first is stored whole');
  await assert.rejects(completing, (e: unknown) => e instanceof OciError && e.code === 'DIGEST_INVALID');
  assert.equal(
    await store.blobs.dataSize(partDigest as never),
    undefined,
    'nothing published under the digest of a prefix',
  );
});

test('a chunk queued behind another whose client leaves ends cleanly and stores nothing', async () => {
  const store = createStore(new MemoryDriver());
  const info = await store.uploads.start('repo/z');
  const first = new PassThrough();
  const appending = store.uploads.append(info, 0, first);
  const queued = new PassThrough();
  const waiting = store.uploads.append(info, undefined, queued);
  queued.destroy(new Error('aborted')); // an error event with nobody else listening must not escape
  first.end(Buffer.alloc(100));
  assert.equal(await appending, 100);
  await assert.rejects(waiting, (e: unknown) => e instanceof OciError && e.code === 'BLOB_UPLOAD_INVALID');
  assert.equal(await store.uploads.size(info.id), 100);
});

test('chunks alternating between two workers: no chunk reads stored bytes back; the completing worker catches up once', async () => {
  const driver = new MemoryDriver();
  let readBack = 0;
  const read = driver.read.bind(driver);
  driver.read = async (path, range) => {
    const s = await read(path, range);
    s.on('data', (c: Buffer) => {
      readBack += c.length;
    });
    return s;
  };
  const a = createStore(driver);
  const b = createStore(driver);
  const chunks = Array.from({ length: 8 }, () => randomBytes(4096));
  const info = await a.uploads.start('repo/x');
  let offset = 0;
  for (const [i, c] of chunks.entries()) {
    offset = await (i % 2 ? b : a).uploads.append(info, offset, Readable.from([c]));
    assert.equal(readBack, 0, `chunk ${i} was stored without reading earlier bytes back`);
  }
  const digest = `sha256:${createHash('sha256').update(Buffer.concat(chunks)).digest('hex')}`;
  assert.deepEqual(await b.uploads.complete(info, digest), { digest, size: offset });
  // b hashed nothing inline (it never stood at its chunk's offset): it reads every byte back once, no more.
  assert.equal(readBack, offset);
});
