// Notary Project signatures as notation writes them: a JWS JSON envelope (x509 certificate chain in `x5c`) signing
// a payload that names the target manifest, stored as an OCI 1.1 referrer with artifactType
// application/vnd.cncf.notary.signature and the chain's thumbprints in an annotation.
// spec: notaryproject/specifications signature-specification.md, signature-envelope-jws.md, trust-store-trust-policy.md;
// notation-core-go signature/jws and x509/codesigning_cert_validations.go.
import {
  constants,
  createHash,
  verify as cryptoVerify,
  sign as cryptoSign,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import type { Digest } from '../spec/digest.js';
import type { Descriptor, ImageManifest } from '../spec/manifest.js';
import { attachReferrer } from './bundle.js';
import { signBytes, SigningError } from './keys.js';
import { ARTIFACT_LIMIT, MAX_SIGNATURES, type SignatureReader, type SignatureWriter } from './source.js';
import type { SignatureCheck } from './types.js';

export const NOTATION_ARTIFACT = 'application/vnd.cncf.notary.signature';
export const JWS_MEDIA_TYPE = 'application/jose+json';
const PAYLOAD_CTY = 'application/vnd.cncf.notary.payload.v1+json';
const THUMBPRINTS = 'io.cncf.notary.x509chain.thumbprint#S256';
const H = {
  scheme: 'io.cncf.notary.signingScheme',
  time: 'io.cncf.notary.signingTime',
  expiry: 'io.cncf.notary.expiry',
  authenticTime: 'io.cncf.notary.authenticSigningTime',
};
const KNOWN_HEADERS = new Set(['alg', 'cty', 'crit', ...Object.values(H)]);

interface Jws {
  payload: string;
  protected: string;
  header: { x5c: string[]; 'io.cncf.notary.signingAgent'?: string; 'io.cncf.notary.timestampSignature'?: string };
  signature: string;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** The JWS algorithm for a key, as notation pairs them (ES256/384/512 by curve, PS256… by RSA size). */
function _alg(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec') {
    const alg = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }[d?.namedCurve ?? ''];
    if (alg) return alg;
  } else if (key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') {
    const bits = d?.modulusLength ?? 0;
    return bits >= 4096 ? 'PS512' : bits >= 3072 ? 'PS384' : 'PS256';
  }
  throw new SigningError(`notation signatures need an ECDSA (P-256/384/521) or RSA key, not ${key.asymmetricKeyType}`);
}

/** Signs `subject` with `key` and its certificate chain (leaf first) and attaches the envelope as a referrer. */
export async function signNotation(
  target: SignatureWriter,
  subject: Descriptor,
  key: KeyObject,
  chain: X509Certificate[],
  signingTime: Date,
  agent = 'berth',
): Promise<{ manifest: Digest; fallback: boolean }> {
  if (!chain.length) throw new SigningError('notation signatures need the signing certificate (--cert)');
  if (!chain[0].checkPrivateKey(key))
    throw new SigningError("the certificate's public key does not belong to the signing key");
  const alg = _alg(key);
  const header = {
    alg,
    crit: [H.scheme],
    cty: PAYLOAD_CTY,
    [H.scheme]: 'notary.x509',
    [H.time]: signingTime.toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
  const payload = { targetArtifact: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size } };
  const protectedB64 = b64url(JSON.stringify(header));
  const payloadB64 = b64url(JSON.stringify(payload));
  const signature = _sign(alg, key, Buffer.from(`${protectedB64}.${payloadB64}`));
  const jws: Jws = {
    payload: payloadB64,
    protected: protectedB64,
    header: { x5c: chain.map((c) => c.raw.toString('base64')), 'io.cncf.notary.signingAgent': agent },
    signature: b64url(signature),
  };
  const thumbprints = chain.map((c) => createHash('sha256').update(c.raw).digest('hex'));
  return attachReferrer(target, subject, {
    artifactType: NOTATION_ARTIFACT,
    layerMediaType: JWS_MEDIA_TYPE,
    content: Buffer.from(JSON.stringify(jws)),
    annotations: {
      [THUMBPRINTS]: JSON.stringify(thumbprints),
      'org.opencontainers.image.created': header[H.time] as string,
    },
  });
}

function _sign(alg: string, key: KeyObject, data: Buffer): Buffer {
  if (alg.startsWith('ES')) return signBytes(key, data, 'ieee-p1363');
  // PSS with the salt as long as the hash, as JWA (RFC 7518 §3.5) and notation require.
  return cryptoSign(`sha${alg.slice(2)}`, data, {
    key,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
  });
}

function _verify(alg: string, key: KeyObject, data: Buffer, sig: Buffer): boolean {
  try {
    if (/^ES(256|384|512)$/.test(alg))
      return cryptoVerify(`sha${alg.slice(2)}`, data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    if (/^PS(256|384|512)$/.test(alg))
      return cryptoVerify(
        `sha${alg.slice(2)}`,
        data,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
        sig,
      );
  } catch {
    return false;
  }
  return false;
}

/** Checks every notation referrer of `subject` against the trusted certificates (roots, or self-signed leaves). */
export async function verifyNotation(
  source: SignatureReader,
  digest: Digest,
  trusted: X509Certificate[],
  now: Date,
): Promise<SignatureCheck[]> {
  const checks: SignatureCheck[] = [];
  for (const ref of (await source.referrers(digest, NOTATION_ARTIFACT)).slice(0, MAX_SIGNATURES)) {
    if (ref.artifactType !== NOTATION_ARTIFACT) continue;
    checks.push(await _check(source, digest, ref.digest, trusted, now));
  }
  return checks;
}

async function _check(
  source: SignatureReader,
  digest: Digest,
  manifest: Digest,
  trusted: X509Certificate[],
  now: Date,
): Promise<SignatureCheck> {
  const base = { format: 'notation' as const, manifest };
  let jws: Jws;
  try {
    const m = await source.manifest(manifest);
    if (!m) return { ...base, verified: false, error: 'the referrer manifest is missing' };
    const doc = JSON.parse(m.bytes.toString('utf8')) as ImageManifest;
    const layer = doc.layers?.[0];
    if (layer?.mediaType !== JWS_MEDIA_TYPE)
      return { ...base, verified: false, error: `unsupported envelope ${layer?.mediaType} (berth reads JWS)` };
    jws = JSON.parse((await source.blob(layer, ARTIFACT_LIMIT)).toString('utf8'));
  } catch (e) {
    return { ...base, verified: false, error: `cannot read the envelope: ${(e as Error).message}` };
  }
  const r = checkJws(jws, digest, trusted, now);
  return { ...base, ...r };
}

/** Verifies one JWS envelope: signature, certificate chain up to a trusted certificate, validity, target digest. */
export function checkJws(
  jws: Jws,
  digest: Digest,
  trusted: X509Certificate[],
  now: Date,
): Omit<SignatureCheck, 'format' | 'manifest'> {
  let header: Record<string, any>;
  let chain: X509Certificate[];
  try {
    header = JSON.parse(Buffer.from(jws.protected, 'base64url').toString('utf8'));
    chain = (jws.header?.x5c ?? []).map((c) => new X509Certificate(Buffer.from(c, 'base64')));
  } catch (e) {
    return { verified: false, error: `malformed envelope: ${(e as Error).message}` };
  }
  if (!chain.length) return { verified: false, error: 'the envelope has no certificate chain (x5c)' };
  const signer = chain[0].subject.replace(/\n/g, ', ');
  const fail = (error: string) => ({ verified: false, signer, error });
  const crit: unknown[] = Array.isArray(header.crit) ? header.crit : [];
  if (!crit.includes(H.scheme)) return fail(`the protected header does not mark ${H.scheme} critical`);
  const unknown = crit.find((k) => typeof k !== 'string' || !KNOWN_HEADERS.has(k));
  if (unknown !== undefined) return fail(`unsupported critical header ${String(unknown)}`);
  if (header.cty !== PAYLOAD_CTY) return fail(`unexpected content type ${header.cty}`);
  if (header[H.scheme] !== 'notary.x509')
    return fail(`signing scheme ${header[H.scheme]} is not supported (berth verifies notary.x509)`);
  const signed = Buffer.from(`${jws.protected}.${jws.payload}`);
  if (!_verify(String(header.alg), chain[0].publicKey, signed, Buffer.from(jws.signature, 'base64url')))
    return fail('the signature does not match the signing certificate');
  const chainError = _chain(chain, trusted, header[H.time] ? new Date(header[H.time]) : undefined, now);
  if (chainError) return fail(chainError);
  if (header[H.expiry] && new Date(header[H.expiry]) < now) return fail(`the signature expired at ${header[H.expiry]}`);
  let target: any;
  try {
    target = JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8'))?.targetArtifact;
  } catch {
    return fail('the payload is not JSON');
  }
  if (target?.digest !== digest) return fail(`the payload signs ${target?.digest}, not ${digest}`);
  return { verified: true, signer, signedAt: header[H.time] };
}

/** Why the chain is not trusted, or undefined: each certificate issued by the next, ending at a trusted one. */
function _chain(chain: X509Certificate[], trusted: X509Certificate[], signedAt: Date | undefined, now: Date) {
  for (const [i, cert] of chain.entries()) {
    for (const t of [signedAt, now]) {
      if (t && (t < new Date(cert.validFrom) || t > new Date(cert.validTo)))
        return `certificate "${cert.subject.replace(/\n/g, ', ')}" is not valid at ${t.toISOString()}`;
    }
    const issuer = chain[i + 1];
    if (issuer && !(cert.checkIssued(issuer) && cert.verify(issuer.publicKey)))
      return `certificate ${i} of the chain is not issued by the next one`;
  }
  if (chain.length > 1 && chain.slice(0, -1).some((c) => c.ca)) return 'the signing certificate is a CA certificate';
  const root = chain[chain.length - 1];
  const isTrusted = trusted.some(
    (t) =>
      t.fingerprint256 === root.fingerprint256 ||
      (root.checkIssued(t) && root.verify(t.publicKey) && t.fingerprint256 !== root.fingerprint256),
  );
  if (!isTrusted) return 'the certificate chain does not lead to a trusted certificate (--cert)';
  return undefined;
}
