// Keys and certificates for signing: cosign-compatible ECDSA P-256 key pairs (cosign's encrypted private-key PEM,
// or plain PKCS#8), public keys, and X.509 certificates for notation-style signatures.
// spec: cosign pkg/cosign/keys.go ("ENCRYPTED SIGSTORE PRIVATE KEY"), go-securesystemslib encrypted/encrypted.go
// (JSON {kdf: scrypt, cipher: nacl/secretbox, ciphertext} over the PKCS#8 DER).
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  scryptSync,
  sign,
  verify,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { pem, selfSignedCertificate, type CertificateOptions } from './der.js';
import { NONCE_BYTES, open, seal } from './secretbox.js';

/** A key, certificate or signature that cannot be used; the message names the problem and the fix. */
export class SigningError extends Error {}

export const ENCRYPTED_PEM = 'ENCRYPTED SIGSTORE PRIVATE KEY';
const ENCRYPTED_PEM_LEGACY = 'ENCRYPTED COSIGN PRIVATE KEY';

// go-securesystemslib's three accepted scrypt strengths (CheckParams); "standard" is its default, and cosign's.
const SCRYPT_ACCEPTED = [
  { N: 32768, r: 8, p: 1 },
  { N: 65536, r: 8, p: 1 },
  { N: 131072, r: 8, p: 1 },
];
const SCRYPT_DEFAULT = SCRYPT_ACCEPTED[1];

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** A new ECDSA P-256 key pair (what cosign generate-key-pair makes). */
export function generateKeyPair(): KeyPair {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

/** The public key as PEM ("PUBLIC KEY", SubjectPublicKeyInfo) — cosign.pub. */
export function publicKeyPem(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

/** The private key as plain PKCS#8 PEM ("PRIVATE KEY"), readable by openssl, notation and cosign. */
export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** cosign's encrypted private key: scrypt-derived key, NaCl secretbox over the PKCS#8 DER, as JSON in a PEM. */
export function encryptPrivateKey(key: KeyObject, password: string): string {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const salt = randomBytes(32);
  const nonce = randomBytes(NONCE_BYTES);
  const box = seal(der, nonce, _scrypt(password, salt, SCRYPT_DEFAULT));
  const doc = {
    kdf: { name: 'scrypt', params: SCRYPT_DEFAULT, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: box.toString('base64'),
  };
  return pem(ENCRYPTED_PEM, Buffer.from(JSON.stringify(doc)));
}

/**
 * Reads a private key PEM: cosign's encrypted format (needs `password`, cosign's COSIGN_PASSWORD), PKCS#8
 * ("PRIVATE KEY"), or SEC 1 ("EC PRIVATE KEY"). `source` names the file in error messages.
 */
export function loadPrivateKey(text: string, password: string | undefined, source = 'the key'): KeyObject {
  const block = _pemBlock(text);
  if (!block) throw new SigningError(`${source} is not a PEM private key`);
  if (block.label === ENCRYPTED_PEM || block.label === ENCRYPTED_PEM_LEGACY) {
    if (password === undefined)
      throw new SigningError(`${source} is encrypted: set COSIGN_PASSWORD (an empty value for no password)`);
    return createPrivateKey({ key: _decrypt(block.der, password, source), format: 'der', type: 'pkcs8' });
  }
  try {
    return createPrivateKey(text);
  } catch (e) {
    throw new SigningError(`${source} is not a usable private key (${(e as Error).message})`);
  }
}

function _decrypt(json: Buffer, password: string, source: string): Buffer {
  let doc: any;
  try {
    doc = JSON.parse(json.toString('utf8'));
  } catch {
    throw new SigningError(`${source}: the encrypted key is not cosign's JSON format`);
  }
  const params = doc?.kdf?.params;
  if (doc?.kdf?.name !== 'scrypt' || doc?.cipher?.name !== 'nacl/secretbox')
    throw new SigningError(`${source}: unsupported key encryption (want scrypt + nacl/secretbox)`);
  if (!SCRYPT_ACCEPTED.some((a) => a.N === params?.N && a.r === params?.r && a.p === params?.p))
    throw new SigningError(`${source}: unsupported scrypt parameters ${JSON.stringify(params)}`);
  const salt = Buffer.from(String(doc.kdf.salt), 'base64');
  const nonce = Buffer.from(String(doc.cipher.nonce), 'base64');
  if (nonce.length !== NONCE_BYTES) throw new SigningError(`${source}: the nonce is not ${NONCE_BYTES} bytes`);
  const plain = open(Buffer.from(String(doc.ciphertext), 'base64'), nonce, _scrypt(password, salt, params));
  if (!plain) throw new SigningError(`${source}: wrong password (COSIGN_PASSWORD) or a damaged key`);
  return plain;
}

function _scrypt(password: string, salt: Buffer, p: { N: number; r: number; p: number }): Buffer {
  return scryptSync(Buffer.from(password, 'utf8'), salt, 32, { N: p.N, r: p.r, p: p.p, maxmem: 512 << 20 });
}

/** A public key from PEM: "PUBLIC KEY", or the key of a certificate. */
export function loadPublicKey(text: string, source = 'the key'): KeyObject {
  try {
    if (/-----BEGIN CERTIFICATE-----/.test(text)) return new X509Certificate(text).publicKey;
    const key = createPublicKey(text);
    return key;
  } catch (e) {
    throw new SigningError(`${source} is not a PEM public key or certificate (${(e as Error).message})`);
  }
}

/** Every certificate in a PEM bundle (or one DER certificate). */
export function loadCertificates(text: string | Buffer, source = 'the certificate file'): X509Certificate[] {
  const s = Buffer.isBuffer(text) ? text.toString('latin1') : text;
  const blocks = s.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  try {
    if (!blocks) return [new X509Certificate(Buffer.isBuffer(text) ? text : Buffer.from(text))];
    return blocks.map((b) => new X509Certificate(b));
  } catch (e) {
    throw new SigningError(`${source} holds no readable X.509 certificate (${(e as Error).message})`);
  }
}

/** A self-signed code-signing certificate (PEM) for the key pair, as `notation cert generate-test` makes. */
export function selfSignedCertificatePem(pair: KeyPair, o: CertificateOptions): string {
  try {
    return pem('CERTIFICATE', selfSignedCertificate(pair.privateKey, pair.publicKey, o));
  } catch (e) {
    throw new SigningError((e as Error).message);
  }
}

/** sigstore's key hint: base64 of the SHA-256 of the DER public key (bundle verificationMaterial.publicKey.hint). */
export function keyHint(key: KeyObject): string {
  return createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('base64');
}

/** A short, stable name for a public key in results: `sha256:<hex of the SPKI DER>`. */
export function keyId(key: KeyObject): string {
  return `sha256:${createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('hex')}`;
}

function _pemBlock(text: string): { label: string; der: Buffer } | undefined {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(text);
  return m ? { label: m[1], der: Buffer.from(m[2].replace(/\s+/g, ''), 'base64') } : undefined;
}

/** The hash cosign and JWS pair with a key: SHA-256 for P-256 and RSA, SHA-384/512 for P-384/P-521, none for Ed25519. */
export function hashFor(key: KeyObject): string | null {
  if (key.asymmetricKeyType === 'ed25519') return null;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'secp384r1') return 'sha384';
  if (curve === 'secp521r1') return 'sha512';
  return 'sha256';
}

/** Signs with the key's own hash; ECDSA signatures are DER (cosign, DSSE) or r‖s (`ieee-p1363`, JWS). */
export function signBytes(key: KeyObject, data: Uint8Array, dsaEncoding: 'der' | 'ieee-p1363' = 'der'): Buffer {
  if (key.type !== 'private') throw new SigningError('signing needs a private key');
  return sign(hashFor(key), data, { key, dsaEncoding });
}

/** Verifies a cosign/DSSE signature (ECDSA DER, RSA PKCS#1 v1.5, Ed25519); false for any mismatch or junk. */
export function verifyBytes(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(hashFor(key), data, { key, dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}
