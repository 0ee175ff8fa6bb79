import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CacheRefError, parseRecord } from './registry-cache.js';

const D = `sha256:${'a'.repeat(64)}`;

test('a cache record is validated field by field', () => {
  const good = { version: 1, layers: [{ key: 'b'.repeat(64), digest: D, diffId: D, extra: 1 }] };
  assert.deepEqual(parseRecord(Buffer.from(JSON.stringify(good))).layers, [
    { key: 'b'.repeat(64), digest: D, diffId: D },
  ]);
  const bad: [unknown, RegExp][] = [
    ['not json', /not JSON/],
    [{ version: 2, layers: [] }, /version 2; this berth reads 1/],
    [{ version: 1 }, /no layers list/],
    [{ version: 1, layers: [{ key: 'B'.repeat(64), digest: D, diffId: D }] }, /layers\[0\]\.key is not 64 hex/],
    [
      { version: 1, layers: [{ key: 'b'.repeat(64), digest: 'sha256:x', diffId: D }] },
      /layers\[0\]\.digest is not a digest/,
    ],
    [{ version: 1, layers: [{ key: 'b'.repeat(64), digest: D }] }, /layers\[0\]\.diffId is not a digest/],
  ];
  for (const [doc, message] of bad) {
    const bytes = Buffer.from(typeof doc === 'string' ? doc : JSON.stringify(doc));
    assert.throws(
      () => parseRecord(bytes, 'r:c'),
      (e: unknown) => e instanceof CacheRefError && message.test(e.message),
    );
  }
});
