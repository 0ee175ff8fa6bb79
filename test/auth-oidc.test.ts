// CI workload identity end to end: a local OIDC issuer (a JWKS server on loopback) mints ID tokens like a CI system
// would; a pipeline uses one as the password at berth's token endpoint — no stored secret — and may push only where
// the ACL maps its claims (`ci/${claim.repository}/**`). Checked in-process and through `berth serve` with crane.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SignJWT, calculateJwkThumbprint } from 'jose';
import { basic, getToken, makeRegistry, pushImage } from './support/auth-fixtures.js';
import { makeClients } from './support/clients.js';
import { makeBusyboxLayout } from './support/oci-layouts.js';
import { ok, requirePeer } from './support/peers.js';
import { startBerth } from './support/berth.js';

interface Issuer {
  url: string;
  mint(claims: Record<string, unknown>, opts?: { key?: KeyObject; kid?: string }): Promise<string>;
  requests: number;
}

/** A minimal OIDC issuer: serves its JWKS at /jwks and signs RS256 ID tokens. Stopped when the test ends. */
async function startIssuer(t: TestContext): Promise<Issuer> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = publicKey.export({ format: 'jwk' });
  const kid = await calculateJwkThumbprint(jwk as never);
  const issuer = { url: '', requests: 0 } as Issuer;
  const server: Server = createServer((req, res) => {
    issuer.requests++;
    if (req.url !== '/jwks') return res.writeHead(404).end();
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  issuer.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  issuer.mint = (claims, opts = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: issuer.url, aud: 'berth', iat: now, nbf: now, exp: now + 300, ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: opts.kid ?? kid })
      .sign(opts.key ?? privateKey);
  };
  return issuer;
}

function authConfig(issuerUrl: string) {
  return {
    mode: 'token',
    oidc: [
      {
        name: 'ci',
        issuer: issuerUrl,
        audience: 'berth',
        jwksUrl: `${issuerUrl}/jwks`,
        allowPrivateNetworks: true,
        claims: { repository_owner: 'myorg', ref: 'refs/heads/*' },
        subject: '${repository}@${ref}',
      },
    ],
    acl: [{ repositories: ['ci/${claim.repository}/**'], subjects: ['oidc:ci'], actions: ['pull', 'push'] }],
  };
}

const pipeline = {
  sub: 'repo:myorg/app:ref:refs/heads/main',
  repository: 'myorg/app',
  repository_owner: 'myorg',
  ref: 'refs/heads/main',
};

test('CI identity (in-process): an ID token as the password, claims → namespace', async (t) => {
  const issuer = await startIssuer(t);
  const { app } = makeRegistry(authConfig(issuer.url));
  const id = await issuer.mint(pipeline);
  const tok = await getToken(app, basic('ci', id), [
    'repository:ci/myorg/app/img:pull,push',
    'repository:ci/myorg/other/img:pull,push',
  ]);
  assert.equal(tok.status, 200, JSON.stringify(tok.body));
  const claims = JSON.parse(Buffer.from(tok.body.token.split('.')[1], 'base64url').toString());
  assert.equal(claims.sub, 'oidc:ci:myorg/app@refs/heads/main');
  assert.deepEqual(claims.access, [{ type: 'repository', name: 'ci/myorg/app/img', actions: ['pull', 'push'] }]);
  assert.equal(tok.body.refresh_token, undefined, 'no long-lived secret for a pipeline');
  assert.deepEqual((await pushImage(app, `Bearer ${tok.body.token}`, 'ci/myorg/app/img')).statuses, [201, 201, 201]);
  assert.deepEqual((await pushImage(app, `Bearer ${tok.body.token}`, 'ci/myorg/other/img')).statuses, [401, 401, 401]);

  const refused = {
    'another owner': await issuer.mint({ ...pipeline, repository: 'evil/app', repository_owner: 'evil' }),
    'a tag ref, not a branch': await issuer.mint({ ...pipeline, ref: 'refs/tags/v1' }),
    'wrong audience': await issuer.mint({ ...pipeline, aud: 'someone-else' }),
    expired: await issuer.mint({ ...pipeline, iat: 1, nbf: 1, exp: 100 }),
    'signed by another key': await issuer.mint(pipeline, {
      key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
    }),
  };
  for (const [why, token] of Object.entries(refused)) {
    assert.equal((await getToken(app, basic('ci', token), ['repository:ci/myorg/app/img:push'])).status, 401, why);
  }
  assert.ok(issuer.requests >= 1, 'keys came from the JWKS URL');
});

test('CI identity through berth serve: crane logs in with the ID token and pushes', async (t) => {
  if (!requirePeer(t, 'crane', 'busybox')) return;
  const issuer = await startIssuer(t);
  const yaml = JSON.stringify({ auth: authConfig(issuer.url) });
  const berth = await startBerth(t, { config: yaml });
  const clients = await makeClients(t);
  const dir = await mkdtemp('/tmp/berth-oidc-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const image = await makeBusyboxLayout(join(dir, 'img'), { tag: 'v1' });
  ok(await clients.crane(['auth', 'login', berth.host, '-u', 'ci', '-p', await issuer.mint(pipeline)]));
  ok(await clients.crane(['push', '--insecure', image.dir, `${berth.host}/ci/myorg/app/busybox:v1`]));
  assert.equal(
    ok(await clients.crane(['digest', '--insecure', `${berth.host}/ci/myorg/app/busybox:v1`])).trim(),
    image.manifest.digest,
  );
  const denied = await clients.crane([
    'copy',
    '--insecure',
    `${berth.host}/ci/myorg/app/busybox:v1`,
    `${berth.host}/ci/myorg/other/busybox:v1`,
  ]);
  assert.notEqual(denied.code, 0);
  assert.match(denied.stderr, /UNAUTHORIZED|denied|401/i);
});
