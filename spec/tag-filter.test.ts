import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkTagFilter, filterTags, semverRange, TagFilterError } from './tag-filter.js';

const TAGS = ['latest', '1.0.0', '1.2.0', '1.2.7', 'v1.3.0', '1.3.0-rc.1', '1.10.0', '2.0.0', '2.1', 'edge', 'sha-abc'];

test('semver ranges select exactly the versions npm semver would', () => {
  const pick = (range: string) => TAGS.filter(semverRange(range));
  assert.deepEqual(pick('>=1.2 <2'), ['1.2.0', '1.2.7', 'v1.3.0', '1.10.0']);
  assert.deepEqual(pick('^1.2.0'), ['1.2.0', '1.2.7', 'v1.3.0', '1.10.0']);
  assert.deepEqual(pick('~1.2'), ['1.2.0', '1.2.7']);
  assert.deepEqual(pick('1.x'), ['1.0.0', '1.2.0', '1.2.7', 'v1.3.0', '1.10.0']);
  assert.deepEqual(pick('2'), ['2.0.0', '2.1']);
  assert.deepEqual(pick('1.0.0 || >=2.1'), ['1.0.0', '2.1']);
  assert.deepEqual(pick('>=1.3.0-rc.0 <1.4'), ['v1.3.0', '1.3.0-rc.1']);
  assert.deepEqual(pick('<=1.2'), ['1.0.0', '1.2.0', '1.2.7']);
  assert.deepEqual(pick('>1.2'), ['v1.3.0', '1.10.0', '2.0.0', '2.1']);
  assert.deepEqual(pick('^0.2.3'), []);
  assert.throws(() => semverRange('>=one'), TagFilterError);
});

test('filters apply in order: globs, regex, semver, newest', () => {
  assert.deepEqual(filterTags(TAGS, { include: ['1.*'], exclude: ['*-rc*'] }), ['1.0.0', '1.2.0', '1.2.7', '1.10.0']);
  assert.deepEqual(filterTags(TAGS, { regex: '^v?\\d+\\.\\d+\\.\\d+$' }), [
    '1.0.0',
    '1.2.0',
    '1.2.7',
    'v1.3.0',
    '1.10.0',
    '2.0.0',
  ]);
  assert.deepEqual(filterTags(TAGS, { newest: 3 }), ['2.1', '2.0.0', '1.10.0']);
  assert.deepEqual(filterTags(TAGS, { semver: '<2', newest: 2 }), ['1.10.0', 'v1.3.0']);
  const created = new Map([
    ['edge', 300],
    ['latest', 200],
    ['1.0.0', 100],
  ]);
  assert.deepEqual(filterTags(TAGS, { newest: 2, newestBy: 'created' }, created), ['edge', 'latest']);
  assert.deepEqual(filterTags(TAGS, {}), TAGS);
});

test('a bad filter is refused before any run, naming what is wrong', () => {
  assert.throws(() => checkTagFilter({ regex: '(' }), /tag regex "\(": /);
  assert.throws(() => checkTagFilter({ newest: 0 }), /newest: 0 is not a positive whole number/);
  assert.throws(() => checkTagFilter({ newestBy: 'created' }), /needs newest/);
  assert.throws(() => checkTagFilter({ semver: '>=1 <x2' }), /cannot read "<x2"/);
});
