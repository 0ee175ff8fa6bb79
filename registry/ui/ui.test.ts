// The UI's session and request checks, in process (memory storage, token mode). The browser end of it is
// test/ui.test.ts; these pin the security properties one request at a time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { basic, bearer, makeRegistry, pushImage, user } from '../../test/support/auth-fixtures.js';

const AUTH = {
  mode: 'token',
  users: [user('alice', ['dev']), user('bob')],
  acl: [
    { repositories: ['team-a/**'], subjects: ['group:dev'], actions: ['pull', 'push', 'delete'] },
    { repositories: ['public/**'], subjects: ['*'], actions: ['pull'] },
  ],
};
const ORIGIN = 'http://reg.test';

function form(fields: Record<string, string>, headers: Record<string, string> = {}): RequestInit {
  return {
    method: 'POST',
    body: new URLSearchParams(fields).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  };
}

async function session(app: ReturnType<typeof makeRegistry>['app'], name: string): Promise<string> {
  const res = await app.request(`${ORIGIN}/ui/login`, form({ username: name, password: `${name}-pw`, next: '/ui/' }));
  assert.equal(res.status, 303);
  const cookie = res.headers.get('set-cookie') ?? '';
  assert.match(cookie, /^berth_session=[^;]+; Max-Age=43200; Path=\/; HttpOnly; SameSite=Strict/);
  return cookie.split(';')[0];
}

test('ui session: login, identity on the API, tampering, audience separation, open redirect, origin', async () => {
  const { app } = makeRegistry(AUTH);
  const admin = await bearer(app, basic('alice'), ['repository:team-a/app:pull,push']);
  assert.deepEqual((await pushImage(app, admin, 'team-a/app')).statuses, [201, 201, 201]);

  const bad = await app.request(`${ORIGIN}/ui/login`, form({ username: 'alice', password: 'nope' }));
  assert.equal(bad.status, 401);
  assert.equal(bad.headers.get('set-cookie'), null);

  const cookie = await session(app, 'alice');
  const me = await (await app.request(`${ORIGIN}/v2/_berth/api/v1/me`, { headers: { cookie } })).json();
  assert.deepEqual(me, { name: 'alice', via: 'session', mode: 'token' });
  const tags = await app.request(`${ORIGIN}/v2/_berth/api/v1/repositories/team-a/app/tags`, { headers: { cookie } });
  assert.equal(tags.status, 200);

  // A tampered cookie is simply no session.
  const tampered = `${cookie.slice(0, -4)}AAAA`;
  const anon = await (await app.request(`${ORIGIN}/v2/_berth/api/v1/me`, { headers: { cookie: tampered } })).json();
  assert.equal(anon.via, 'anonymous');

  // The session JWT is no registry token, and a registry token is no session.
  const jwt = cookie.split('=')[1];
  const v2 = await app.request(`${ORIGIN}/v2/team-a/app/tags/list`, { headers: { authorization: `Bearer ${jwt}` } });
  assert.equal(v2.status, 401);
  const asCookie = await app.request(`${ORIGIN}/v2/_berth/api/v1/me`, {
    headers: { cookie: `berth_session=${admin.slice('Bearer '.length)}` },
  });
  assert.equal((await asCookie.json()).via, 'anonymous');

  // Never an open redirect after login.
  for (const next of ['//evil.example/ui/', 'https://evil.example/', '/v2/../ui/']) {
    const res = await app.request(`${ORIGIN}/ui/login`, form({ username: 'bob', password: 'bob-pw', next }));
    assert.equal(res.headers.get('location'), '/ui/', next);
  }
  // A login or delete posted from another site is refused.
  const cross = await app.request(
    `${ORIGIN}/ui/login`,
    form({ username: 'bob', password: 'bob-pw' }, { origin: 'http://evil.example' }),
  );
  assert.equal(cross.status, 403);
  const del = await app.request(`${ORIGIN}/ui/delete`, form({ repo: 'team-a/app', ref: 'v1', csrf: 'x' }, { cookie }));
  assert.equal(del.status, 403, 'wrong CSRF token');
  const still = await app.request(`${ORIGIN}/v2/team-a/app/manifests/v1`, {
    method: 'HEAD',
    headers: { authorization: admin },
  });
  assert.equal(still.status, 200);
});

test('ui: pages carry a strict CSP; unknown API paths are 404; bad paging is 400', async () => {
  const { app } = makeRegistry(AUTH);
  const page = await app.request(`${ORIGIN}/ui/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  assert.equal(page.headers.get('x-frame-options'), 'DENY');
  assert.equal((await app.request(`${ORIGIN}/v2/_berth/api/v1/nope`)).status, 404);
  const paging = await app.request(`${ORIGIN}/v2/_berth/api/v1/repositories?n=-1`);
  assert.equal(paging.status, 400);
  assert.equal((await paging.json()).errors[0].code, 'PAGINATION_NUMBER_INVALID');
});

test('ui: the mirror view lists each upstream with its counters', async () => {
  const { app } = makeRegistry(AUTH, {
    proxy: {
      upstreams: [{ name: 'hub', url: 'http://127.0.0.1:9', prefix: 'public/hub', allowPrivateNetworks: true }],
    },
  });
  const res = await app.request(`${ORIGIN}/v2/_berth/api/v1/mirrors`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.enabled, true);
  assert.deepEqual(
    body.upstreams.map((u: { name: string; prefix: string }) => [u.name, u.prefix]),
    [['hub', 'public/hub']],
  );
  assert.equal(body.upstreams[0].counters?.misses ?? 0, 0);
  const page = await app.request(`${ORIGIN}/ui/mirrors`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /hub[\s\S]*Nothing cached yet/);
});

test('ui session cookie: Secure with the __Host- prefix over https, or behind a proxy named by http.publicUrl', async () => {
  const login = (app: ReturnType<typeof makeRegistry>['app'], url: string, origin: string) =>
    app.request(`${url}/ui/login`, form({ username: 'alice', password: 'alice-pw' }, { origin }));
  // berth serving TLS itself: the request URL is https.
  const direct = await login(makeRegistry(AUTH).app, 'https://reg.test', 'https://reg.test');
  assert.equal(direct.status, 303);
  assert.match(direct.headers.get('set-cookie') ?? '', /^__Host-berth_session=[^;]+;.*; Secure/);
  // TLS ends at a proxy that passes Host on: berth sees http://reg.example, the browser is on https://reg.example.
  const { app } = makeRegistry(AUTH, { http: { publicUrl: 'https://reg.example' } });
  const proxied = await login(app, 'http://reg.example', 'https://reg.example');
  assert.equal(proxied.status, 303, 'the public origin is this origin');
  const cookie = proxied.headers.get('set-cookie') ?? '';
  assert.match(cookie, /^__Host-berth_session=[^;]+;.*; HttpOnly; Secure; SameSite=Strict/);
  assert.equal((await login(app, 'http://reg.example', 'https://evil.example')).status, 403);
  // Reached by another name (not the public one): that connection's own origin, no Secure.
  const inside = await login(app, 'http://10.0.0.5:5000', 'http://10.0.0.5:5000');
  assert.equal(inside.status, 303);
  assert.match(inside.headers.get('set-cookie') ?? '', /^berth_session=/);
  assert.doesNotMatch(inside.headers.get('set-cookie') ?? '', /Secure/);
});
