// Token attacks against the registry in token mode: each is refused with 401 and nothing is stored. The registry
// trusts itself and one external issuer (whose private key the test holds, to forge "valid" tokens with bad claims).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { SignJWT, type JWTPayload } from 'jose';
import { request } from 'node:http';
import { basic, getToken, makeRegistry, pushImage, user } from './support/auth-fixtures.js';
import { listen } from '../registry/server.js';
import { createRegistry, createLogger, loadConfig } from '../registry/index.js';
import { MemoryDriver } from '../storage/memory.js';

const ext = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const extPem = ext.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);
const access = (name: string, actions = ['pull', 'push']) => [{ type: 'repository', name, actions }];

function claims(over: JWTPayload = {}): JWTPayload {
  return {
    iss: 'ext',
    aud: 'berth',
    sub: 'mallory',
    iat: now(),
    nbf: now(),
    exp: now() + 300,
    access: access('team/app'),
    ...over,
  };
}

async function sign(
  payload: JWTPayload,
  header: Record<string, unknown> = {},
  key: unknown = ext.privateKey,
): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', ...header } as { alg: string })
    .sign(key as Parameters<SignJWT['sign']>[0]);
}

test('token attacks: 401 and nothing stored', async (t) => {
  const { app, driver } = makeRegistry({
    mode: 'token',
    users: [user('alice', ['dev'])],
    token: { trust: [{ issuer: 'ext', audience: 'berth', pem: [extPem] }] },
    acl: [{ repositories: ['team/**'], subjects: ['group:dev'], actions: ['pull', 'push'] }],
  });
  // The registry's own key (generated into the storage on first use) and a genuine token of it.
  const genuine = await getToken(app, basic('alice'), ['repository:team/app:pull,push']);
  assert.equal(genuine.status, 200);
  const [h, p, s] = genuine.body.token.split('.');
  const { kid } = JSON.parse(Buffer.from(h, 'base64url').toString());
  const ownPublic = createPublicKey((await driver.get('auth/keys/signing.pem'))!.toString());
  const ownPem = ownPublic.export({ type: 'spki', format: 'pem' }).toString();
  const ownJwk = JSON.stringify(ownPublic.export({ format: 'jwk' }));
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
  const attackerJwk = attacker.publicKey.export({ format: 'jwk' });

  const attacks: Record<string, () => Promise<string>> = {
    'alg none': async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`,
    'alg none, empty signature part dropped': async () => `${b64({ alg: 'none' })}.${b64(payload)}`,
    'HS256 signed with the public key (PEM)': () =>
      new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid }).sign(new TextEncoder().encode(ownPem)),
    'HS256 signed with the public key (JWK)': () =>
      new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid }).sign(new TextEncoder().encode(ownJwk)),
    'own jwk header (attacker key, our kid)': () => sign(payload, { kid, jwk: attackerJwk }, attacker.privateKey),
    'own jwk header (no kid)': () => sign(payload, { jwk: attackerJwk }, attacker.privateKey),
    'own jku header': () => sign(payload, { kid: 'evil', jku: 'http://127.0.0.1:1/jwks.json' }, attacker.privateKey),
    'own x5c header': () => sign(payload, { x5c: ['MIIBszCCAVmgAwIBAgIUSelfSigned'] }, attacker.privateKey),
    'tampered signature': async () => `${h}.${p}.${s.slice(0, -4)}${s.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`,
    'tampered payload (more access), original signature': async () =>
      `${h}.${b64({ ...payload, access: access('team/app', ['pull', 'push', 'delete']).concat(access('other/x')) })}.${s}`,
    'signed by the trusted issuer but claiming to be berth': () => sign(claims({ iss: 'berth' }), { kid }),
    expired: () => sign(claims({ iat: now() - 1000, nbf: now() - 1000, exp: now() - 120 })),
    'not yet valid': () => sign(claims({ nbf: now() + 600, exp: now() + 900 })),
    'wrong aud': () => sign(claims({ aud: 'another-registry' })),
    'wrong iss': () => sign(claims({ iss: 'somebody' })),
    'missing exp': () => sign(claims({ exp: undefined })),
    'ES256 key, RS256 header': () =>
      sign(claims(), { alg: 'RS256' }).catch(() => `${b64({ alg: 'RS256' })}.${b64(claims())}.AAAA`),
    'token for repo A used on repo B': () => sign(claims({ access: access('team/other') })),
    'wildcard name team/*': () => sign(claims({ access: access('team/*') })),
    'wildcard name **': () => sign(claims({ access: access('**') })),
    'dot-dot name': () => sign(claims({ access: access('team/x/../app') })),
    'uppercase name': () => sign(claims({ access: access('TEAM/APP') })),
    'access not a list': () =>
      sign(claims({ access: { type: 'repository', name: 'team/app', actions: ['push'] } as unknown as [] })),
    garbage: async () => 'not.a.jwt',
  };

  for (const [name, make] of Object.entries(attacks)) {
    await t.test(name, async () => {
      const token = await make();
      const res = await pushImage(app, `Bearer ${token}`, 'team/app', 'pwned', Buffer.from(`evil ${name}`));
      assert.deepEqual(res.statuses, [401, 401, 401]);
      const get = await app.request('http://reg.test/v2/team/app/tags/list', {
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(get.status, 401);
      assert.match(
        get.headers.get('www-authenticate') ?? '',
        /^Bearer realm="[^"]+",service="berth",scope="repository:team\/app:pull",error="(invalid_token|insufficient_scope)"$/,
      );
    });
  }

  await t.test('scope strings with wildcards, .., uppercase: no token at all', async () => {
    for (const scope of [
      'repository:team/*:pull,push',
      'repository:*:*',
      'repository:team/../secret:pull',
      'repository:TEAM/APP:push',
      'repository:team/app:admin',
    ]) {
      const res = await getToken(app, basic('alice'), [scope]);
      assert.equal(res.status, 400, scope);
      assert.equal(res.body.token, undefined);
      assert.match(res.body.errors[0].message, /invalid scope/);
    }
  });

  await t.test('a parameter that names one thing, given twice: 400 and no token (GET and POST)', async () => {
    for (const query of [
      'service=berth&service=other',
      'service=berth&account=alice&account=bob',
      'service=berth&offline_token=true&offline_token=false',
    ]) {
      const res = await app.request(`http://reg.test/token?${query}`, { headers: { Authorization: basic('alice') } });
      assert.equal(res.status, 400, query);
      const body = await res.json();
      assert.equal(body.token, undefined);
      assert.match(JSON.stringify(body), /was given 2 times; give it once/);
    }
    const form = new URLSearchParams([
      ['grant_type', 'password'],
      ['grant_type', 'refresh_token'],
      ['username', 'alice'],
      ['password', 'x'],
      ['service', 'berth'],
    ]);
    const res = await app.request('http://reg.test/token', { method: 'POST', body: form });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).token, undefined);
    // Repeated scopes stay legal on GET (the spec's way to ask for several).
    const ok = await getToken(app, basic('alice'), ['repository:team/app:pull', 'repository:team/other:pull']);
    assert.equal(ok.status, 200);
  });

  await t.test('a revoked refresh token', async () => {
    const off = await getToken(app, basic('alice'), [], '&offline_token=true');
    await app.request('http://reg.test/token/revoke', {
      method: 'POST',
      body: new URLSearchParams({ token: off.body.refresh_token }),
    });
    const res = await app.request('http://reg.test/token', {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: off.body.refresh_token,
        service: 'berth',
        scope: 'repository:team/app:push',
      }),
    });
    assert.equal(res.status, 401);
    assert.equal((await res.json()).token, undefined);
  });

  await t.test('nothing was stored by any attack', async () => {
    assert.deepEqual(await driver.list('blobs'), []);
    assert.deepEqual(await driver.list('repositories'), []);
  });

  await t.test('control: the same pushes with a genuine token work (own and trusted issuer)', async () => {
    assert.deepEqual(
      (await pushImage(app, `Bearer ${genuine.body.token}`, 'team/app', 'ok')).statuses,
      [201, 201, 201],
    );
    assert.deepEqual(
      (await pushImage(app, `Bearer ${await sign(claims())}`, 'team/app', 'ok2')).statuses,
      [201, 201, 201],
    );
  });
});

/** GET from a chosen loopback source address (127.0.0.0/8 is all loopback on Linux): another client machine. */
function getFrom(
  localAddress: string,
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; retryAfter?: string; challenge?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          retryAfter: res.headers['retry-after'] as string | undefined,
          challenge: res.headers['www-authenticate'],
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

test('login throttling: an attacker elsewhere cannot lock the owner out', async (t) => {
  for (const mode of ['token', 'htpasswd'] as const) {
    await t.test(mode, async () => {
      const { app } = makeRegistry({
        mode,
        users: [user('alice', ['dev']), user('bob')],
        acl: [{ repositories: ['team/**'], subjects: ['group:dev'], actions: ['pull', 'push'] }],
      });
      const server = await listen(app, '127.0.0.1:0');
      t.after(() => server.close(0));
      const path = mode === 'token' ? '/token?service=berth&scope=repository:team/app:pull' : '/v2/team/app/tags/list';
      const url = `http://127.0.0.1:${server.port}${path}`;
      const attacker = '127.0.0.2';
      // Defaults: 5 failures for an account from one address.
      for (let i = 0; i < 5; i++)
        assert.equal((await getFrom(attacker, url, { Authorization: basic('alice', `guess-${i}`) })).status, 401);
      const blocked = await getFrom(attacker, url, { Authorization: basic('alice') });
      assert.equal(blocked.status, 429, 'the guessing address waits, even with the right password');
      assert.ok(Number(blocked.retryAfter) > 0 && Number(blocked.retryAfter) <= 300);
      const owner = await getFrom('127.0.0.3', url, { Authorization: basic('alice') });
      assert.notEqual(owner.status, 429, 'the owner from a clean address is not locked out');
      assert.equal(owner.status, mode === 'token' ? 200 : 404); // 404: the repository does not exist yet
      assert.equal(
        (await getFrom(attacker, url, { Authorization: basic('bob') })).status === 429,
        false,
        "other accounts from the attacker's address: still below its limit",
      );
    });
  }
});

test('token realm: a forged Host header never moves the realm', async (t) => {
  const start = async (http: Record<string, unknown>) => {
    const logs: string[] = [];
    const config = loadConfig({
      env: {},
      flags: {
        http,
        auth: { mode: 'token', users: [user('alice')] },
        log: { level: 'warn', requests: false },
        metrics: { enabled: false },
      },
    });
    const registry = createRegistry(
      config,
      new MemoryDriver(),
      createLogger('warn', false, (line) => logs.push(line)),
    );
    const server = await listen(registry.app, '127.0.0.1:0');
    t.after(() => server.close(0));
    const realm = async (host: string) =>
      /realm="([^"]+)"/.exec(
        (await getFrom('127.0.0.1', `http://127.0.0.1:${server.port}/v2/`, { Host: host })).challenge ?? '',
      )?.[1];
    return { port: server.port, realm, logs };
  };
  const { port, realm, logs } = await start({});
  const own = `http://127.0.0.1:${port}/token`;
  assert.equal(await realm(`127.0.0.1:${port}`), own, 'the listener address as the client wrote it');
  assert.equal(
    await realm(`localhost:${port}`),
    `http://localhost:${port}/token`,
    'localhost on a loopback connection',
  );
  for (const forged of [
    'evil.example',
    `evil.example:${port}`,
    '127.0.0.1:1',
    `10.0.0.1:${port}`,
    `localhost.evil.example:${port}`,
    `[::1]:${port}`,
  ]) {
    assert.equal(await realm(forged), own, `Host ${forged}`);
  }
  // A Host that is no host at all is a 400 (it used to leave the connection hanging, unanswered).
  for (const broken of [`127.0.0.1:${port}@evil.example`, 'a b', 'evil.example/path']) {
    const res = await getFrom('127.0.0.1', `http://127.0.0.1:${port}/v2/`, { Host: broken });
    assert.equal(res.status, 400, `Host ${broken}`);
  }
  assert.equal(logs.filter((l) => /set http.publicUrl/.test(l)).length, 1, 'told once, with the fix');
  const configured = await start({ publicUrl: 'https://registry.example.com/' });
  assert.equal(await configured.realm('evil.example'), 'https://registry.example.com/token', 'http.publicUrl wins');
  assert.equal(await configured.realm(`127.0.0.1:${configured.port}`), 'https://registry.example.com/token');
});
