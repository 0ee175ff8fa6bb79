// The server's outbound address policy (registry/net-policy.ts) on every URL it follows, against real HTTP servers
// on loopback. An "internal service" on 127.0.0.1 holds a secret; a hostile upstream on 127.0.0.2 (the only
// private address the mirror is allowed) redirects blob GETs there — by IP, by a name that resolves there, and after
// an allowed hop — and points its token realm there. Before the policy, berth followed and served the secret to an
// anonymous client. JWKS URLs of trusted issuers obey the same policy.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { test, type TestContext } from 'node:test';
import { SignJWT, calculateJwkThumbprint } from 'jose';
import { createLogger, createRegistry, listen, loadConfig, ConfigError } from '../registry/index.js';
import { addressPolicy, guardedAgent, isBlockedError } from '../registry/net-policy.js';
import { FsDriver } from '../storage/fs.js';
import { Registry } from '../client/registry.js';
import { basic, getToken, makeRegistry } from './support/auth-fixtures.js';
import { raw, sha256 } from './support/registry-client.js';

async function start(
  t: TestContext,
  host: string,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; url: string; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return { server, url: `http://${host}:${port}`, port };
}

async function mirror(t: TestContext, upstreams: unknown[]) {
  const root = await mkdtemp('/tmp/berth-net-policy-');
  const config = loadConfig({ env: {}, flags: { proxy: { upstreams } } });
  const registry = createRegistry(config, new FsDriver({ root, fsync: false }), createLogger('silent', false));
  const server = await listen(registry.app, '127.0.0.1:0');
  t.after(async () => {
    registry.proxy?.close();
    await server.close(1000);
    await rm(root, { recursive: true, force: true });
  });
  return server.url;
}

test('mirror: redirects and token realms to internal addresses are refused, even when the digest matches', async (t) => {
  const secret = Buffer.from('TOP SECRET: the metadata service answer, credentials and all');
  const digest = sha256(secret); // worst case: the attacker knows the bytes, so digest verification would pass
  const internal = { requests: [] as string[] };
  const svc = await start(t, '127.0.0.1', (req, res) => {
    internal.requests.push(`${req.method} ${req.url}`);
    if (req.url?.startsWith('/token'))
      return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t","expires_in":300}');
    res.writeHead(200, { 'content-length': String(secret.length) }).end(secret);
  });
  const up = await start(t, '127.0.0.2', (req, res) => {
    const u = req.url ?? '';
    if (u === '/v2/') return void res.writeHead(200).end();
    if (u === '/hop') return void res.writeHead(307, { location: `${svc.url}/latest/meta-data` }).end();
    if (u.startsWith('/storage/'))
      return void res.writeHead(200, { 'content-length': String(secret.length) }).end(secret);
    const m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(u);
    if (!m)
      return void res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}');
    const to: Record<string, string> = {
      'by/ip': `${svc.url}/latest/meta-data`,
      'by/name': `http://localhost:${svc.port}/latest/meta-data`,
      'by/mapped': `http://[::ffff:127.0.0.1]:${svc.port}/latest/meta-data`,
      'by/hop': `http://127.0.0.2:${up.port}/hop`,
      'ok/app': `http://127.0.0.2:${up.port}/storage/${m[2]}`,
    };
    res.writeHead(307, { location: to[m[1]] ?? '/nowhere' }).end();
  });
  const realmUp = await start(t, '127.0.0.3', (_req, res) => {
    res.writeHead(401, { 'www-authenticate': `Bearer realm="${svc.url}/token",service="x"` }).end();
  });
  const url = await mirror(t, [
    { name: 'up', url: up.url, prefix: 'up', timeout: '3s', allowPrivateNetworks: ['127.0.0.2/32'] },
    { name: 'realm', url: realmUp.url, prefix: 'realm', timeout: '3s', allowPrivateNetworks: ['127.0.0.3'] },
  ]);

  for (const repo of ['by/ip', 'by/name', 'by/mapped', 'by/hop']) {
    await t.test(`a redirect ${repo.replace('by/', 'by ')} is not followed`, async () => {
      const res = await raw(url, 'GET', `/v2/up/${repo}/blobs/${digest}`);
      assert.ok(!res.body.includes('TOP SECRET'), `the secret leaked: ${res.status}`);
      assert.equal(res.status, 403, res.body.toString());
      const e = res.json().errors[0];
      assert.equal(e.code, 'DENIED');
      assert.match(e.message, /allowPrivateNetworks/);
      assert.deepEqual(internal.requests, [], 'the internal service was never contacted');
      const again = await raw(url, 'GET', `/v2/up/${repo}/blobs/${digest}`);
      assert.equal(again.status, 403, 'nothing was cached');
    });
  }

  await t.test('a token realm on an internal address is not contacted', async () => {
    const res = await raw(url, 'GET', '/v2/realm/app/manifests/v1');
    assert.equal(res.status, 403, res.body.toString());
    assert.equal(res.json().errors[0].code, 'DENIED');
    assert.deepEqual(internal.requests, []);
  });

  await t.test('control: a redirect to an allowed address is followed and the blob verified', async () => {
    const res = await raw(url, 'GET', `/v2/up/ok/app/blobs/${digest}`);
    assert.equal(res.status, 200, res.body.toString());
    assert.deepEqual(res.body, secret);
  });
});

test('mirror config: a loopback or private upstream needs allowPrivateNetworks; entries are CIDRs', () => {
  const load = (u: Record<string, unknown>) =>
    createRegistry(
      loadConfig({ env: {}, flags: { proxy: { upstreams: [{ name: 'a', ...u }] } } }),
      new FsDriver({ root: '/nonexistent', fsync: false }),
      createLogger('silent', false),
    );
  assert.throws(
    () => load({ url: 'http://127.0.0.1:5000' }),
    (e: Error) => e instanceof ConfigError && /proxy\.upstreams\[0\].*allowPrivateNetworks/.test(e.message),
  );
  assert.throws(() => load({ url: 'http://10.1.2.3:5000' }), /allowPrivateNetworks/);
  assert.throws(() => load({ url: 'http://localhost:5000' }), /allowPrivateNetworks/);
  assert.throws(() => load({ url: 'http://127.0.0.1:5000', allowPrivateNetworks: ['not-a-cidr'] }), /not-a-cidr/);
  assert.throws(
    () => load({ url: 'http://127.0.0.1:5000', allowPrivateNetworks: ['10.0.0.0/8'] }),
    /allowPrivateNetworks/,
    'the list must cover the upstream itself',
  );
  for (const allowPrivateNetworks of [true, ['127.0.0.0/8'], ['127.0.0.1']])
    load({ url: 'http://127.0.0.1:5000', allowPrivateNetworks });
  load({ url: 'https://registry-1.docker.io' });
});

test('address policy: checked on the resolved address, literal IPs and the connected socket', async (t) => {
  const deny = addressPolicy(false);
  // IPv4 inside IPv6 (mapped, compatible, NAT64, 6to4) is judged as the IPv4 address it reaches.
  for (const a of [
    '127.0.0.1',
    '10.1.2.3',
    '169.254.169.254',
    '::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::127.0.0.1',
    '64:ff9b::a9fe:a9fe',
    '2002:7f00:1::1',
    'fd00:ec2::254',
    '100.64.0.1',
    'fe80::1%eth0',
  ]) {
    assert.ok(!deny.allows(a), a);
  }
  for (const a of ['93.184.216.34', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1', '2606:4700::1111'])
    assert.ok(deny.allows(a), a);
  const some = addressPolicy(['10.0.0.0/8', '::1']);
  assert.ok(
    some.allows('10.9.9.9') && some.allows('::1') && !some.allows('127.0.0.1') && !some.allows('169.254.169.254'),
  );
  assert.ok(addressPolicy(true).allows('127.0.0.1'));
  const looked = await new Promise<unknown>((resolve) => deny.lookup('localhost', {}, (err) => resolve(err)));
  assert.ok(isBlockedError(looked), String(looked));

  const svc = await start(t, '127.0.0.1', (_req, res) => void res.end('internal'));
  const { request } = await import('undici');
  for (const target of [svc.url, `http://localhost:${svc.port}`]) {
    const err = await request(target, { dispatcher: guardedAgent(deny) }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(isBlockedError(err), `${target}: ${err}`);
  }
  const ok = await request(svc.url, { dispatcher: guardedAgent(addressPolicy(['127.0.0.1'])) });
  assert.equal(await ok.body.text(), 'internal');
  // Through the registry client too: the refusal survives its "cannot reach" wrapping (the mirror answers DENIED).
  const reg = new Registry(`localhost:${svc.port}`, { dispatcher: guardedAgent(deny), retries: 0 });
  const refused = await reg.request({ method: 'GET', url: '/v2/x/manifests/v1' }).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(isBlockedError(refused), String(refused));
});

test('trusted issuers: a JWKS URL on an internal address is fetched only with allowPrivateNetworks', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = publicKey.export({ format: 'jwk' });
  const kid = await calculateJwkThumbprint(jwk as never);
  let fetched = 0;
  const jwks = await start(t, '127.0.0.1', (_req, res) => {
    fetched++;
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] }));
  });
  const issuer = 'https://ci.example';
  const now = Math.floor(Date.now() / 1000);
  const id = await new SignJWT({ iss: issuer, aud: 'berth', sub: 'pipeline', iat: now, exp: now + 300 })
    .setProtectedHeader({ alg: 'RS256', kid })
    .sign(privateKey);
  const auth = (extra: Record<string, unknown>) => ({
    mode: 'token',
    oidc: [{ name: 'ci', issuer, audience: 'berth', ...extra }],
    acl: [{ repositories: ['ci/**'], subjects: ['oidc:ci'], actions: ['pull'] }],
  });
  const scopes = ['repository:ci/app:pull'];

  // A name that resolves to loopback passes any start-up check: the connection itself is refused.
  const byName = makeRegistry(auth({ jwksUrl: `http://localhost:${jwks.port}/jwks` }));
  assert.equal((await getToken(byName.app, basic('ci', id), scopes)).status, 401);
  assert.equal(fetched, 0, 'the internal JWKS URL was never fetched');
  const literal = makeRegistry(auth({ jwksUrl: `${jwks.url}/jwks` }));
  assert.notEqual((await getToken(literal.app, basic('ci', id), scopes)).status, 200);
  await assert.rejects(literal.registry.auth!.ready, /allowPrivateNetworks/);
  assert.equal(fetched, 0);

  const allowed = makeRegistry(auth({ jwksUrl: `http://localhost:${jwks.port}/jwks`, allowPrivateNetworks: true }));
  const tok = await getToken(allowed.app, basic('ci', id), scopes);
  assert.equal(tok.status, 200, JSON.stringify(tok.body));
  assert.equal(fetched, 1);
});
