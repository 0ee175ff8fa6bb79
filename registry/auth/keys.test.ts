// Key ring: generated once (per algorithm), kept, rotated (old keys keep verifying), kid = JWK thumbprint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint } from 'jose';
import { dirSource, loadKeyRing, storageSource } from './keys.js';
import { AccessVerifier, signAccessToken } from './tokens.js';
import { MemoryDriver } from '../../storage/memory.js';
import { AuthStore, paths } from '../../storage/index.js';

const opts = { issuer: 'berth', service: 'berth', ttlSeconds: 300 };
const alice = { kind: 'user' as const, name: 'alice', groups: [] };

test('keys: generated once per algorithm, kept, rotated', async (t) => {
  const dir = await mkdtemp('/tmp/berth-keys-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const alg of ['ES256', 'RS256', 'EdDSA'] as const) {
    const ring = await loadKeyRing(dirSource(join(dir, alg)), alg);
    assert.equal(ring.signing.alg, alg);
    assert.equal(ring.signing.kid, await calculateJwkThumbprint(ring.signing.jwk));
    assert.equal((await stat(join(dir, alg, 'signing.pem'))).mode & 0o777, 0o600);
    assert.equal(
      (await loadKeyRing(dirSource(join(dir, alg)), alg)).signing.kid,
      ring.signing.kid,
      'kept across restarts',
    );
    assert.ok(!JSON.stringify(ring.jwks).includes('"d"'), 'JWKS holds public keys only');
  }
  // Rotation: the old signing key becomes a verification key; tokens it signed stay valid.
  const src = dirSource(join(dir, 'ES256'));
  const before = await loadKeyRing(src, 'ES256');
  const old = await signAccessToken(before, opts, alice, 'alice', [], false);
  await rename(join(dir, 'ES256', 'signing.pem'), join(dir, 'ES256', 'previous.pem'));
  const after = await loadKeyRing(src, 'ES256');
  assert.notEqual(after.signing.kid, before.signing.kid);
  assert.deepEqual([...after.verify.keys()].sort(), [after.signing.kid, before.signing.kid].sort());
  const verifier = new AccessVerifier(
    async () => after,
    opts,
    async () => [],
  );
  assert.equal((await verifier.verify(old.token)).sub, 'alice');
  const fresh = await signAccessToken(after, opts, alice, 'alice', [], false);
  assert.equal((await verifier.verify(fresh.token)).sub, 'alice');
});

test('keys: kept in the storage by default, shared by replicas', async () => {
  const driver = new MemoryDriver();
  const a = await loadKeyRing(storageSource(new AuthStore(driver)), 'ES256');
  const b = await loadKeyRing(storageSource(new AuthStore(driver)), 'ES256');
  assert.equal(a.signing.kid, b.signing.kid);
  // Where the key lives is drawn by storage/paths.ts, like every other prefix; no name escapes its directory.
  assert.equal(paths.authFile('keys', 'signing.pem'), 'auth/keys/signing.pem');
  assert.ok(await driver.stat('auth/keys/signing.pem'));
  assert.throws(() => paths.authFile('keys', '../robots/x.json'), /invalid auth state file name/);
  await assert.rejects(new AuthStore(driver).read('refresh', '..'), /invalid auth state file name/);
});
