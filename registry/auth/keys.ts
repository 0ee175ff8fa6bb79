// Signing and verification keys. berth signs with one private key (ES256 by default; RS256 or EdDSA selectable) and
// verifies with every key it holds (rotation). Keys come from a directory of PEM files (`auth.token.keys`) or, by
// default, from the storage (generated once on first start, shared by every replica). `kid` = JWK thumbprint.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { AuthStore } from '../../storage/index.js';
import type { SigningAlgorithm } from './config.js';

export interface VerifyKey {
  kid: string;
  alg: string;
  key: KeyObject;
  /** Public JWK (with kid, alg, use) for the JWKS document. */
  jwk: JWK;
}

export interface KeyRing {
  signing: VerifyKey & { privateKey: KeyObject };
  /** Every verification key, the signing key's public half included, by kid. */
  verify: Map<string, VerifyKey>;
  jwks: { keys: JWK[] };
}

export class KeyError extends Error {}

/** The JOSE algorithm a key is for; RSA → RS256 unless `preferred` names another RSA algorithm. */
export function algorithmOf(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const crv = key.asymmetricKeyDetails?.namedCurve;
    if (crv === 'prime256v1') return 'ES256';
    if (crv === 'secp384r1') return 'ES384';
    if (crv === 'secp521r1') return 'ES512';
  }
  if (type === 'rsa') return 'RS256';
  if (type === 'ed25519') return 'EdDSA';
  throw new KeyError(
    `unsupported key type ${type}${type === 'ec' ? ` (${key.asymmetricKeyDetails?.namedCurve})` : ''}: use EC P-256, RSA (≥ 2048 bits) or Ed25519`,
  );
}

export function generatePem(alg: SigningAlgorithm): string {
  const pkcs8 = { type: 'pkcs8', format: 'pem' } as const;
  const spki = { type: 'spki', format: 'pem' } as const;
  if (alg === 'RS256')
    return generateKeyPairSync('rsa', { modulusLength: 3072, privateKeyEncoding: pkcs8, publicKeyEncoding: spki })
      .privateKey;
  if (alg === 'EdDSA')
    return generateKeyPairSync('ed25519', { privateKeyEncoding: pkcs8, publicKeyEncoding: spki }).privateKey;
  return generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: pkcs8, publicKeyEncoding: spki })
    .privateKey;
}

/** Parses a PEM public or private key into a verification key (the public half). */
export async function verifyKeyFromPem(pem: string, where: string): Promise<VerifyKey & { privateKey?: KeyObject }> {
  let privateKey: KeyObject | undefined;
  let publicKey: KeyObject;
  try {
    if (/-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----/.test(pem)) {
      privateKey = createPrivateKey(pem);
      publicKey = createPublicKey(privateKey);
    } else {
      publicKey = createPublicKey(pem);
    }
  } catch (e) {
    throw new KeyError(
      `${where}: not a PEM key (${(e as Error).message}); expected PKCS#8 "PRIVATE KEY" or SPKI "PUBLIC KEY"`,
    );
  }
  const alg = algorithmOf(publicKey);
  if (alg === 'RS256' && (publicKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
    throw new KeyError(`${where}: RSA keys need at least 2048 bits`);
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk);
  return { kid, alg, key: publicKey, jwk: { ...jwk, kid, alg, use: 'sig' }, privateKey };
}

/** Where PEM files live: a local directory, or the storage. */
interface PemSource {
  list(): Promise<string[]>;
  read(name: string): Promise<string | undefined>;
  write(name: string, pem: string): Promise<void>;
  describe(name: string): string;
}

export function dirSource(dir: string): PemSource {
  return {
    list: async () => (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.pem')).sort(),
    read: (name) => readFile(join(dir, name), 'utf8').catch(() => undefined),
    write: async (name, pem) => {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      // `wx`: two processes starting together never overwrite each other's key.
      await writeFile(join(dir, name), pem, { mode: 0o600, flag: 'wx' }).catch((e) => {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      });
    },
    describe: (name) => join(dir, name),
  };
}

export function storageSource(store: AuthStore): PemSource {
  return {
    list: async () => (await store.list('keys')).filter((f) => f.endsWith('.pem')).sort(),
    read: async (name) => (await store.read('keys', name))?.toString('utf8'),
    write: (name, pem) => store.write('keys', name, pem),
    describe: (name) => store.describe('keys', name),
  };
}

/** Loads the key ring; generates `signing.pem` when there is none yet. */
export async function loadKeyRing(source: PemSource, alg: SigningAlgorithm): Promise<KeyRing> {
  let signingPem = await source.read('signing.pem');
  if (signingPem === undefined) {
    await source.write('signing.pem', generatePem(alg));
    // Re-read: another replica may have written its key at the same time; everyone uses whichever was stored.
    signingPem = await source.read('signing.pem');
    if (signingPem === undefined) throw new KeyError(`cannot create ${source.describe('signing.pem')}`);
  }
  const signing = await verifyKeyFromPem(signingPem, source.describe('signing.pem'));
  if (!signing.privateKey)
    throw new KeyError(`${source.describe('signing.pem')} holds a public key; the signing key must be a private key`);
  const verify = new Map<string, VerifyKey>([[signing.kid, signing]]);
  for (const name of await source.list()) {
    if (name === 'signing.pem') continue;
    const pem = await source.read(name);
    if (pem === undefined) continue;
    const k = await verifyKeyFromPem(pem, source.describe(name));
    verify.set(k.kid, { kid: k.kid, alg: k.alg, key: k.key, jwk: k.jwk });
  }
  return {
    signing: { ...signing, privateKey: signing.privateKey },
    verify,
    jwks: { keys: [...verify.values()].map((k) => k.jwk) },
  };
}
