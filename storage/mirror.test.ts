import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDriver } from './memory.js';
import { MirrorStore } from './mirror.js';
import { paths } from './paths.js';

test('one holder per rule: a live lease is refused, a released or dead one is taken', async () => {
  const driver = new MemoryDriver();
  const a = new MirrorStore(driver);
  const b = new MirrorStore(driver);
  const first = await a.lease('sync', 'base', 400);
  assert.ok(first, 'a free lease is taken');
  // b sees the heartbeat move (every ttl/8) and gives up.
  assert.equal(await b.lease('sync', 'base', 400), undefined);
  // Another rule, or the other kind, is independent.
  const other = await b.lease('replication', 'base', 400);
  assert.ok(other);
  await other.release();
  await first.release();
  const second = await b.lease('sync', 'base', 400);
  assert.ok(second, 'a released lease is taken');
  await second.release();
  // A holder that stops beating (a process that died on another host) is taken over after its ttl.
  await driver.put(
    paths.mirrorLease('sync', 'base'),
    JSON.stringify({ holder: 'gone', beat: 7, ttl: 300, owner: { host: 'elsewhere', pid: 1 } }),
  );
  const started = Date.now();
  const taken = await a.lease('sync', 'base', 300);
  assert.ok(taken);
  assert.ok(Date.now() - started >= 300, 'waited for the stale heartbeat to stand for its ttl');
  // The old holder's next renewal notices it lost the lease.
  await driver.put(paths.mirrorLease('sync', 'base'), JSON.stringify({ holder: 'thief', beat: 1, ttl: 300 }));
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(taken.lost(), true);
  await taken.release();
  assert.match(
    (await driver.get(paths.mirrorLease('sync', 'base')))!.toString(),
    /thief/,
    'release leaves the new holder',
  );
});

test('the replication queue keeps items in arrival order until dequeued', async () => {
  const m = new MirrorStore(new MemoryDriver());
  const ids = [];
  for (const n of [1, 2, 3]) {
    ids.push(await m.enqueue('dr', { n }));
    await new Promise((r) => setTimeout(r, 2));
  }
  assert.deepEqual(await m.queued('dr'), ids);
  await m.updateQueueItem('dr', ids[0], { n: 1, attempts: 1 });
  assert.deepEqual(await m.queueItem('dr', ids[0]), { n: 1, attempts: 1 });
  await m.dequeue('dr', ids[1]);
  assert.deepEqual(await m.queued('dr'), [ids[0], ids[2]]);
  assert.throws(() => paths.replicationItem('dr', '../x'), /invalid queue item id/);
  assert.throws(() => paths.mirrorLease('sync', 'Bad/Rule'), /invalid rule name/);
});
