// The ACL matrix (users × repositories × actions, each allowed or denied as configured) through the token service
// and the registry in-process, plus mounts from unreadable repositories, upload sessions used by another user or
// from another repository, catalog filtering, htpasswd mode, robots, refresh tokens and login rate limiting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { digestOf } from '../spec/index.js';
import { basic, bearer, getToken, makeRegistry, pushImage, user, type App } from './support/auth-fixtures.js';

const ACL = [
  { repositories: ['public/**'], subjects: ['group:admins'], actions: ['pull', 'push', 'delete'] },
  { repositories: ['public/**'], subjects: ['*'], actions: ['pull'] },
  { repositories: ['team/**'], subjects: ['group:dev'], actions: ['pull', 'push', 'delete', 'catalog'] },
  { repositories: ['team/**'], subjects: ['group:qa'], actions: ['pull', 'catalog'] },
  { repositories: ['**'], subjects: ['group:admins'], actions: ['*'] },
  { repositories: ['private/**'], subjects: ['user:carol'], actions: ['pull', 'push'] },
];
const USERS = [user('alice', ['dev']), user('bob', ['qa']), user('carol'), user('admin', ['admins'])];
const REPOS = ['team/app', 'public/app', 'private/app'];
type Act = 'pull' | 'push' | 'delete';
const EXPECTED: Record<string, Record<string, Act[]>> = {
  anonymous: { 'team/app': [], 'public/app': ['pull'], 'private/app': [] },
  alice: { 'team/app': ['pull', 'push', 'delete'], 'public/app': ['pull'], 'private/app': [] },
  bob: { 'team/app': ['pull'], 'public/app': ['pull'], 'private/app': [] },
  carol: { 'team/app': [], 'public/app': ['pull'], 'private/app': ['pull', 'push'] },
  admin: {
    'team/app': ['pull', 'push', 'delete'],
    'public/app': ['pull', 'push', 'delete'],
    'private/app': ['pull', 'push', 'delete'],
  },
};

const creds = (who: string) => (who === 'anonymous' ? undefined : basic(who));
let uniq = 0;

async function exists(app: App, adminAuth: string, name: string, ref: string): Promise<boolean> {
  const res = await app.request(`http://reg.test/v2/${name}/manifests/${ref}`, {
    method: 'HEAD',
    headers: { Authorization: adminAuth },
  });
  return res.status === 200;
}

test('token mode: users × repositories × actions', async (t) => {
  const { app } = makeRegistry({ mode: 'token', users: USERS, acl: ACL });
  const adminAll = await bearer(
    app,
    basic('admin'),
    REPOS.map((r) => `repository:${r}:pull,push,delete`),
  );
  for (const r of REPOS) assert.deepEqual((await pushImage(app, adminAll, r, 'base')).statuses, [201, 201, 201]);

  for (const who of Object.keys(EXPECTED)) {
    for (const repo of REPOS) {
      await t.test(`${who} on ${repo}`, async () => {
        const want = EXPECTED[who][repo];
        const tok = await getToken(app, creds(who), [`repository:${repo}:pull,push,delete`]);
        assert.equal(tok.status, 200, JSON.stringify(tok.body));
        const granted = JSON.parse(Buffer.from(tok.body.token.split('.')[1], 'base64url').toString()).access;
        assert.deepEqual(
          granted.flatMap((a: { actions: string[] }) => a.actions).sort(),
          [...want].sort(),
          'granted = requested ∩ allowed',
        );
        const auth = `Bearer ${tok.body.token}`;
        // pull
        const pull = await app.request(`http://reg.test/v2/${repo}/manifests/base`, {
          headers: { Authorization: auth },
        });
        assert.equal(pull.status, want.includes('pull') ? 200 : 401, `pull by ${who}`);
        if (pull.status === 401)
          assert.match(
            pull.headers.get('www-authenticate')!,
            new RegExp(`scope="repository:${repo}:pull",error="insufficient_scope"`),
          );
        // push
        const tag = `t${++uniq}`;
        const push = await pushImage(app, auth, repo, tag, Buffer.from(`layer ${tag}`));
        if (want.includes('push')) assert.deepEqual(push.statuses, [201, 201, 201], `push by ${who}`);
        else {
          assert.deepEqual(push.statuses, [401, 401, 401], `push by ${who}`);
          assert.equal(await exists(app, adminAll, repo, tag), false, 'nothing stored');
        }
        // delete (of an image the admin pushed just for this)
        const victim = await pushImage(app, adminAll, repo, `d${uniq}`, Buffer.from(`victim ${uniq}`));
        const del = await app.request(`http://reg.test/v2/${repo}/manifests/${victim.manifestDigest}`, {
          method: 'DELETE',
          headers: { Authorization: auth },
        });
        assert.equal(del.status, want.includes('delete') ? 202 : 401, `delete by ${who}`);
        assert.equal(await exists(app, adminAll, repo, victim.manifestDigest), !want.includes('delete'));
      });
    }
  }
});

test('token mode: mounts, upload sessions, catalog', async (t) => {
  const { app } = makeRegistry({ mode: 'token', users: USERS, acl: ACL });
  const adminAll = await bearer(
    app,
    basic('admin'),
    REPOS.map((r) => `repository:${r}:pull,push,delete`),
  );
  const secret = await pushImage(app, adminAll, 'private/app', 'v1', Buffer.from('private layer'));
  const teamImg = await pushImage(app, adminAll, 'team/app', 'v1', Buffer.from('team layer'));
  await pushImage(app, adminAll, 'public/app', 'v1', Buffer.from('public layer'));

  await t.test('a mount from a repository the caller cannot read is a plain upload', async () => {
    const auth = await bearer(app, basic('alice'), ['repository:team/new:pull,push', 'repository:private/app:pull']);
    const res = await app.request(
      `http://reg.test/v2/team/new/blobs/uploads/?mount=${secret.layerDigest}&from=private/app`,
      { method: 'POST', headers: { Authorization: auth } },
    );
    assert.equal(res.status, 202);
    const head = await app.request(`http://reg.test/v2/team/new/blobs/${secret.layerDigest}`, {
      method: 'HEAD',
      headers: { Authorization: auth },
    });
    assert.equal(head.status, 404, 'the private blob did not become visible in team/new');
    // From a readable repository the mount works.
    const auth2 = await bearer(app, basic('alice'), ['repository:team/new:pull,push', 'repository:team/app:pull']);
    const ok = await app.request(
      `http://reg.test/v2/team/new/blobs/uploads/?mount=${teamImg.layerDigest}&from=team/app`,
      { method: 'POST', headers: { Authorization: auth2 } },
    );
    assert.equal(ok.status, 201);
  });

  await t.test(
    'the mount challenge asks for pull on `from`: a client taking exactly its scopes gets a mount',
    async () => {
      const url = `http://reg.test/v2/team/mounted/blobs/uploads/?mount=${teamImg.layerDigest}&from=team/app`;
      const first = await app.request(url, { method: 'POST' });
      assert.equal(first.status, 401);
      const scope = /scope="([^"]+)"/.exec(first.headers.get('www-authenticate') ?? '')?.[1];
      assert.equal(
        scope,
        'repository:team/mounted:pull,push repository:team/app:pull',
        'distribution challenges for both repositories',
      );
      const auth = await bearer(app, basic('alice'), scope!.split(' '));
      const res = await app.request(url, { method: 'POST', headers: { Authorization: auth } });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get('location'), `/v2/team/mounted/blobs/${teamImg.layerDigest}`);
      // An insufficient token is challenged for the same two scopes.
      const pushOnly = await bearer(app, basic('alice'), ['repository:team/app:pull']);
      const again = await app.request(url, { method: 'POST', headers: { Authorization: pushOnly } });
      assert.match(
        again.headers.get('www-authenticate') ?? '',
        /scope="repository:team\/mounted:pull,push repository:team\/app:pull",error="insufficient_scope"$/,
      );
    },
  );

  await t.test('an upload session is bound to its user and its repository', async () => {
    const alice = await bearer(app, basic('alice'), [
      'repository:team/app:pull,push',
      'repository:team/other:pull,push',
    ]);
    const start = await app.request('http://reg.test/v2/team/app/blobs/uploads/', {
      method: 'POST',
      headers: { Authorization: alice },
    });
    assert.equal(start.status, 202);
    const location = start.headers.get('location')!;
    const chunk = Buffer.from('chunk');
    const admin = await bearer(app, basic('admin'), ['repository:team/app:pull,push']);
    const stolen = await app.request(`http://reg.test${location}`, {
      method: 'PATCH',
      body: chunk,
      headers: { Authorization: admin },
    });
    assert.equal(stolen.status, 404);
    assert.equal((await stolen.json()).errors[0].code, 'BLOB_UPLOAD_UNKNOWN');
    const moved = await app.request(`http://reg.test${location.replace('/team/app/', '/team/other/')}`, {
      method: 'PATCH',
      body: chunk,
      headers: { Authorization: alice },
    });
    assert.equal(moved.status, 404);
    const put = await app.request(`http://reg.test${location}?digest=${digestOf(chunk)}`, {
      method: 'PUT',
      body: chunk,
      headers: { Authorization: alice },
    });
    assert.equal(put.status, 201, 'the owner finishes it');
  });

  await t.test('the catalog lists only what the caller may pull', async () => {
    const list = async (who: string) => {
      const auth = await bearer(app, creds(who), ['registry:catalog:*']);
      const res = await app.request('http://reg.test/v2/_catalog', { headers: { Authorization: auth } });
      return res.status === 200 ? (await res.json()).repositories : res.status;
    };
    assert.deepEqual(await list('alice'), ['public/app', 'team/app']);
    assert.deepEqual(await list('bob'), ['public/app', 'team/app']);
    assert.deepEqual(await list('admin'), ['private/app', 'public/app', 'team/app']);
    assert.equal(await list('carol'), 401);
    assert.equal(await list('anonymous'), 401);
  });
});

test('token mode: refresh tokens (offline), revocation, robots, rate limiting', async (t) => {
  const { app, core } = makeRegistry({
    mode: 'token',
    users: USERS,
    acl: [...ACL, { repositories: ['team/**'], subjects: ['robot:ci'], actions: ['pull', 'push'] }],
    rateLimit: { maxFailures: 3, window: '1m' },
  });

  await t.test('offline token → refresh grant → revoke', async () => {
    const first = await getToken(app, basic('alice'), [], '&offline_token=true&client_id=docker');
    const refresh = first.body.refresh_token as string;
    assert.match(refresh, /^berth_refresh_/);
    const post = (form: Record<string, string>) =>
      app.request('http://reg.test/token', { method: 'POST', body: new URLSearchParams(form) });
    const res = await post({
      grant_type: 'refresh_token',
      refresh_token: refresh,
      service: 'berth',
      client_id: 'docker',
      scope: 'repository:team/app:pull,push',
    });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.scope, 'repository:team/app:pull,push');
    assert.ok(body.expires_in >= 60);
    assert.equal(
      (
        await app.request('http://reg.test/token/revoke', {
          method: 'POST',
          body: new URLSearchParams({ token: refresh }),
        })
      ).status,
      200,
    );
    const again = await post({
      grant_type: 'refresh_token',
      refresh_token: refresh,
      service: 'berth',
      client_id: 'docker',
    });
    assert.equal(again.status, 401);
    // The OAuth password grant, with access_type=offline, and a CLI-side revoke by id.
    const pw = await post({
      grant_type: 'password',
      username: 'bob',
      password: 'bob-pw',
      service: 'berth',
      client_id: 'ctr',
      access_type: 'offline',
      scope: 'repository:team/app:pull',
    });
    const pwBody = await pw.json();
    assert.equal(pw.status, 200, JSON.stringify(pwBody));
    const [rec] = (await core.state.listRefresh()).filter((r) => r.name === 'bob');
    assert.deepEqual(await core.state.revoke(rec.id), [`refresh token ${rec.id}`]);
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: pwBody.refresh_token })).status, 401);
  });

  await t.test('robot tokens: limited by their own scope and the ACL, expiring, revocable', async () => {
    const { token } = await core.state.createRobot({
      name: 'ci',
      scopes: [{ repositories: ['team/app'], actions: ['pull', 'push'] }],
      expiresAt: new Date(Date.now() + 60_000),
    });
    const tok = await getToken(app, basic('ci', token), [
      'repository:team/app:pull,push,delete',
      'repository:team/other:pull',
    ]);
    assert.equal(tok.status, 200);
    const access = JSON.parse(Buffer.from(tok.body.token.split('.')[1], 'base64url').toString()).access;
    assert.deepEqual(access, [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }]);
    const push = await pushImage(app, `Bearer ${tok.body.token}`, 'team/app', 'by-robot');
    assert.deepEqual(push.statuses, [201, 201, 201]);
    const expired = await core.state.createRobot({
      name: 'old',
      scopes: [{ repositories: ['**'], actions: ['pull'] }],
      expiresAt: new Date(Date.now() - 1),
    });
    assert.equal((await getToken(app, basic('old', expired.token), [])).status, 401);
    await core.state.revoke('ci');
    assert.equal((await getToken(app, basic('ci', token), [])).status, 401);
  });

  await t.test('failed logins: 429 + Retry-After per account, even with the right password', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await getToken(app, basic('carol', 'wrong'), [])).status, 401);
    const res = await app.request('http://reg.test/token?service=berth', {
      headers: { Authorization: basic('carol') },
    });
    assert.equal(res.status, 429);
    assert.ok(Number(res.headers.get('retry-after')) > 0);
    assert.equal((await getToken(app, basic('bob'), [])).status, 200, 'other accounts unaffected');
  });
});

test('htpasswd mode: Basic on /v2, anonymous pull where allowed, 403 when denied', async () => {
  const { app } = makeRegistry({ mode: 'htpasswd', users: USERS, acl: ACL, rateLimit: { maxFailures: 2 } });
  assert.equal((await app.request('http://reg.test/v2/')).status, 401);
  assert.equal((await app.request('http://reg.test/v2/')).headers.get('www-authenticate'), 'Basic realm="berth"');
  assert.equal((await app.request('http://reg.test/v2/', { headers: { Authorization: basic('alice') } })).status, 200);
  assert.deepEqual((await pushImage(app, basic('admin'), 'public/app', 'v1')).statuses, [201, 201, 201]);
  assert.equal(
    (await app.request('http://reg.test/v2/public/app/manifests/v1')).status,
    200,
    'anonymous pull of public/**',
  );
  assert.deepEqual((await pushImage(app, undefined, 'public/app', 'v2')).statuses, [401, 401, 401]);
  assert.deepEqual((await pushImage(app, basic('bob'), 'team/app', 'v1')).statuses, [403, 403, 403]);
  assert.deepEqual((await pushImage(app, basic('alice'), 'team/app', 'v1')).statuses, [201, 201, 201]);
  const cat = await app.request('http://reg.test/v2/_catalog', { headers: { Authorization: basic('bob') } });
  assert.deepEqual((await cat.json()).repositories, ['public/app', 'team/app']);
  for (let i = 0; i < 2; i++)
    assert.equal(
      (await app.request('http://reg.test/v2/', { headers: { Authorization: basic('carol', 'x') } })).status,
      401,
    );
  const locked = await app.request('http://reg.test/v2/', { headers: { Authorization: basic('carol') } });
  assert.equal(locked.status, 429);
  assert.ok(Number(locked.headers.get('retry-after')) > 0);
});
