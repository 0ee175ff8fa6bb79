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

test('a record segment map (optional in version 1) is validated: back to back from 0, lengths known', () => {
  const K = 'c'.repeat(64);
  const seg = (offset: number, length: number) => ({ key: K, offset, length, tarLength: 4096 });
  const layer = (segments: unknown) => ({ key: 'b'.repeat(64), digest: D, diffId: D, segments });
  const good = {
    version: 1,
    layers: [layer([seg(0, 100), seg(100, 50)])],
    slots: { 'linux/amd64 app': 'b'.repeat(64) },
  };
  const parsed = parseRecord(Buffer.from(JSON.stringify(good)));
  assert.deepEqual(parsed.layers[0].segments, [seg(0, 100), seg(100, 50)]);
  assert.deepEqual(parsed.slots, { 'linux/amd64 app': 'b'.repeat(64) });
  // A record of an older berth (no segments, no slots) still reads: whole-layer hits only.
  assert.equal(parseRecord(Buffer.from(JSON.stringify({ version: 1, layers: [layer(undefined)] }))).slots, undefined);
  const bad: [unknown, RegExp][] = [
    [{ version: 1, layers: [layer({})] }, /layers\[0\]\.segments is not a list/],
    [
      { version: 1, layers: [layer([seg(0, 100), seg(90, 50)])] },
      /segments\[1\]\.offset is 90; the segment before ends at 100/,
    ],
    [{ version: 1, layers: [layer([seg(0, 0)])] }, /segments\[0\]\.length is not a positive whole number/],
    [{ version: 1, layers: [layer([{ ...seg(0, 9), tarLength: undefined }])] }, /segments\[0\]\.tarLength/],
    [{ version: 1, layers: [layer([{ ...seg(0, 9), key: 'x' }])] }, /segments\[0\]\.key is not 64 hex/],
    [{ version: 1, layers: [], slots: [] }, /slots is not an object/],
    [{ version: 1, layers: [], slots: { a: 'nope' } }, /slots\["a"\] is not a 64-hex layer key/],
  ];
  for (const [doc, message] of bad)
    assert.throws(
      () => parseRecord(Buffer.from(JSON.stringify(doc)), 'r:c'),
      (e: unknown) => e instanceof CacheRefError && message.test(e.message),
      String(message),
    );
});
