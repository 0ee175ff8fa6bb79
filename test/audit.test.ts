// The audit log in htpasswd mode and with repository policies (in process): pushes, pulls and deletes with their
// subject, ACL and immutable-tag denials (403 DENIED) with the reason, failed Basic logins — and no password.
// The token-mode session with real clients through nginx is test/nginx.test.ts.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { basic, makeRegistry, PASSWORDS, pushImage, user } from './support/auth-fixtures.js';

test('audit: push, pull, delete, ACL and immutable-tag denials, failed logins; no password in the file', async (t) => {
  const dir = await mkdtemp('/tmp/berth-audit-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.jsonl');
  const { app, registry } = makeRegistry(
    {
      mode: 'htpasswd',
      users: [user('alice', ['dev']), user('bob')],
      acl: [
        { repositories: ['team/**'], subjects: ['group:dev'], actions: ['pull', 'push', 'delete'] },
        { repositories: ['team/**'], subjects: ['user:bob'], actions: ['pull'] },
      ],
    },
    { audit: { enabled: true, output: file }, immutableTags: [{ repositories: ['team/**'], tags: ['v*'] }] },
  );
  const alice = basic('alice');
  const pushed = await pushImage(app, alice, 'team/app', 'v1');
  assert.deepEqual(pushed.statuses, [201, 201, 201]);
  assert.equal(
    (await app.request('http://reg.test/v2/team/app/manifests/v1', { headers: { Authorization: basic('bob') } }))
      .status,
    200,
  );
  // bob may not push; nobody may delete the immutable v1; a wrong password.
  assert.equal((await pushImage(app, basic('bob'), 'team/app', 'v2')).statuses[0], 403);
  const del = await app.request('http://reg.test/v2/team/app/manifests/v1', {
    method: 'DELETE',
    headers: { Authorization: alice },
  });
  assert.equal(del.status, 403);
  assert.equal(
    (await app.request('http://reg.test/v2/', { headers: { Authorization: basic('alice', 'guess-123') } })).status,
    401,
  );
  // A mutable tag is deleted.
  await pushImage(app, alice, 'team/app', 'latest');
  const ok = await app.request('http://reg.test/v2/team/app/manifests/latest', {
    method: 'DELETE',
    headers: { Authorization: alice },
  });
  assert.equal(ok.status, 202);
  await registry.audit!.close();

  const text = await readFile(file, 'utf8');
  const events = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const find = (want: Record<string, unknown>) =>
    events.find((e) => Object.entries(want).every(([k, v]) => e[k] === v)) ??
    assert.fail(`no ${JSON.stringify(want)} in\n${text}`);
  find({
    event: 'push',
    actor: 'alice',
    repository: 'team/app',
    tag: 'v1',
    digest: pushed.manifestDigest,
    object: 'manifest',
  });
  find({ event: 'pull', actor: 'bob', repository: 'team/app', tag: 'v1', digest: pushed.manifestDigest });
  const acl = find({ event: 'access.denied', actor: 'bob', repository: 'team/app', code: 'DENIED' });
  assert.deepEqual(acl.scopes, ['repository:team/app:pull,push']);
  assert.match(acl.reason, /"bob" may not pull\+push team\/app/);
  const immutable = find({ event: 'access.denied', actor: 'alice', code: 'DENIED' });
  assert.match(immutable.reason, /immutable/);
  find({ event: 'login', outcome: 'failure', account: 'alice', method: 'password' });
  find({ event: 'delete', actor: 'alice', repository: 'team/app', tag: 'latest', object: 'manifest' });
  for (const e of events) {
    assert.match(e.time, /^\d{4}-/);
    assert.ok(['success', 'failure', 'denied', 'throttled'].includes(e.outcome));
  }
  for (const secret of [PASSWORDS.alice, PASSWORDS.bob, 'guess-123'])
    assert.ok(!text.includes(secret), 'no password in the audit log');
  assert.doesNotMatch(text, /Basic |Authorization/i);
});
