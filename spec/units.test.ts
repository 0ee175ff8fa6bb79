import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, formatSize, parseDuration, parseSize, UnitError } from './units.js';

test('durations: Go form plus days', () => {
  assert.equal(parseDuration('1500ms'), 1500);
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('10m'), 600_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('1.5h'), 5_400_000);
  assert.equal(parseDuration('30d'), 30 * 86_400_000);
  assert.equal(parseDuration('2h45m30s'), (2 * 3600 + 45 * 60 + 30) * 1000);
  assert.equal(parseDuration('0'), 0);
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('1500us'), 2); // rounded to whole milliseconds
  for (const bad of ['10 minutes', '', '1h 30m', 'h', '-5s', '10', '1y', '5M'])
    assert.throws(
      () => parseDuration(bad),
      (e: Error) =>
        e instanceof UnitError &&
        e.message ===
          `invalid duration "${bad}": use a duration such as 90s, 10m, 1h30m, 24h or 30d (units ns, us, ms, s, m, h, d)`,
      bad,
    );
  assert.equal(formatDuration(5_400_000), '1h30m');
  assert.equal(formatDuration(1500), '1s500ms');
  assert.equal(formatDuration(0), '0s');
  for (const ms of [1, 999, 60_000, 86_400_000 + 1000]) assert.equal(parseDuration(formatDuration(ms)), ms);
});

test('sizes: bytes, decimal and binary units', () => {
  assert.equal(parseSize(4096), 4096);
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('512MB'), 512_000_000);
  assert.equal(parseSize('10GiB'), 10 * 2 ** 30);
  assert.equal(parseSize('1.5KiB'), 1536);
  assert.equal(parseSize('2 TB'), 2e12);
  assert.equal(parseSize('100B'), 100);
  assert.equal(parseSize('1kB'), 1000);
  for (const bad of ['10 gigs', '-1', 'GiB', '10gib', '5Mb', ''])
    assert.throws(
      () => parseSize(bad),
      (e: Error) => e instanceof UnitError && /use a size such as 512MB, 10GiB/.test(e.message),
      bad,
    );
  assert.throws(() => parseSize('1.5'), /not a whole number of bytes/);
  assert.throws(() => parseSize(-1), UnitError);
  assert.throws(() => parseSize(1.5), UnitError);
  assert.equal(formatSize(5 * 2 ** 20), '5MiB');
  assert.equal(formatSize(1500), '1500B');
});
