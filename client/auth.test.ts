import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Authenticator, mergeScopes, parseChallenges } from './auth.js';
import { retryAfterMs } from '../spec/retry.js';
import { isLoopback } from './registry.js';
import { fallbackTag } from './remote.js';
import { parseLayoutArg } from './layout.js';

test('parseChallenges reads Bearer params, quoted commas and several challenges', () => {
  const [c] = parseChallenges(
    'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"',
  );
  assert.equal(c.scheme, 'bearer');
  assert.equal(c.params.realm, 'https://auth.example.com/token');
  assert.equal(c.params.scope, 'repository:a/b:pull,push');
  const two = parseChallenges('Basic realm="x", Bearer realm="http://127.0.0.1:1/token",error="insufficient_scope"');
  assert.deepEqual(
    two.map((x) => x.scheme),
    ['basic', 'bearer'],
  );
  assert.equal(two[1].params.error, 'insufficient_scope');
  assert.deepEqual(parseChallenges(undefined), []);
  assert.equal(parseChallenges('Basic realm="a\\"b"')[0].params.realm, 'a"b');
});

test('mergeScopes unions actions per resource and keeps host:port names intact', () => {
  assert.deepEqual(mergeScopes(['repository:a:pull', 'repository:a:push', 'repository:localhost:5000/b:pull']), [
    'repository:a:pull,push',
    'repository:localhost:5000/b:pull',
  ]);
  assert.deepEqual(mergeScopes(['registry:catalog:*']), ['registry:catalog:*']);
});

test('Retry-After in seconds and as an HTTP date', () => {
  assert.equal(retryAfterMs('3'), 3000);
  const now = Date.parse('2024-01-01T00:00:00Z');
  assert.equal(retryAfterMs('Mon, 01 Jan 2024 00:00:05 GMT', now), 5000);
  assert.equal(retryAfterMs('soon'), undefined);
});

test('loopback hosts use plain HTTP by default', () => {
  for (const h of ['localhost:5000', '127.0.0.1', '[::1]:5000', '127.1.2.3:80']) assert.ok(isLoopback(h), h);
  for (const h of ['registry.example.com', '10.0.0.1:5000']) assert.ok(!isLoopback(h), h);
});

test('referrers fallback tag and layout arguments', () => {
  assert.equal(fallbackTag(`sha256:${'a'.repeat(64)}`), `sha256-${'a'.repeat(64)}`);
  assert.deepEqual(parseLayoutArg('out:v1'), { dir: 'out', tag: 'v1' });
  assert.deepEqual(parseLayoutArg('/tmp/x'), { dir: '/tmp/x' });
  assert.deepEqual(parseLayoutArg('./a:b/c'), { dir: './a:b/c' });
});

test('a challenge naming several space-separated scopes asks the token service for each (mount challenge)', async () => {
  const asked: string[][] = [];
  const auth = new Authenticator('reg.test', undefined, async (req) => {
    asked.push(new URL(req.url).searchParams.getAll('scope'));
    return { status: 200, text: JSON.stringify({ token: 't', expires_in: 300 }) };
  });
  const header = await auth.challenge(
    'Bearer realm="http://reg.test/token",service="berth",scope="repository:a/b:pull,push repository:c/d:pull"',
    ['repository:a/b:push'],
  );
  assert.equal(header, 'Bearer t');
  assert.deepEqual(asked, [['repository:a/b:pull,push', 'repository:c/d:pull']]);
});
