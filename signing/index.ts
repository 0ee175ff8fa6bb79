/**
 * berth's signing library: sign an image and verify its signatures in the three formats real tools use —
 * cosign simple signing (`sha256-<hex>.sig` tag), cosign's sigstore bundle v0.3 referrer, and notation's JWS
 * referrer — offline, key- and certificate-based (no transparency log, no Fulcio).
 *
 * Everything reaches images through a SignatureReader/SignatureWriter (signing/source.ts): `berth sign/verify`
 * pass one built on client/ (client/signatures.ts), the registry's policy one built on its stores.
 *
 *   const result = await verifyImage(reader, 'sha256:…', { keys: [loadPublicKey(pem)] });
 *   if (!result.verified) deny(result.signatures.map((s) => s.error));
 *
 * Imports only spec/ (DESIGN.md "Allowed imports"), so client/, builder/, registry/ and pkg-cli/ can all use it.
 */
import { createPublicKey, type KeyObject, type X509Certificate } from 'node:crypto';
import type { Digest } from '../spec/digest.js';
import type { Descriptor } from '../spec/manifest.js';
import { signBundle, verifyBundles } from './bundle.js';
import { signCosign, verifyCosign } from './cosign.js';
import { SigningError } from './keys.js';
import { signNotation, verifyNotation } from './notation.js';
import type { SignatureReader, SignatureWriter } from './source.js';
import type { SignatureCheck, SignatureFormat, Trust, VerifyResult } from './types.js';

export * from './keys.js';
export type { SignatureReader, SignatureWriter, StoredManifest } from './source.js';
export { ARTIFACT_LIMIT, MAX_SIGNATURES } from './source.js';
export * from './types.js';
export { BUNDLE_V03, COSIGN_SIGN_PREDICATE, bundleAnnotations, signatureStatement, signedBundle } from './bundle.js';
export { SIGNATURE_ANNOTATION, SIMPLE_SIGNING, signatureTag, simpleSigningPayload } from './cosign.js';
export { NOTATION_ARTIFACT } from './notation.js';
export { INTOTO_PAYLOAD_TYPE, pae, signEnvelope, openEnvelope, type Envelope, type Statement } from './dsse.js';

/**
 * Finds every signature of `digest` in the formats the trust material can check and verifies each one.
 * `verified` is true when at least one signature verifies. Never throws for a bad signature (it is reported in
 * `signatures[].error`); throws only when the source itself fails (registry down, storage error).
 */
export async function verifyImage(source: SignatureReader, digest: Digest, trust: Trust): Promise<VerifyResult> {
  const keys = trust.keys ?? [];
  const certs = trust.certificates ?? [];
  const able: SignatureFormat[] = [
    ...(keys.length ? (['cosign', 'cosign-bundle'] as const) : []),
    ...(certs.length ? (['notation'] as const) : []),
  ];
  const wanted = new Set(trust.formats ?? able);
  const signatures: SignatureCheck[] = [];
  if (wanted.has('cosign')) signatures.push(...(await verifyCosign(source, digest, keys)));
  if (wanted.has('cosign-bundle')) signatures.push(...(await verifyBundles(source, digest, keys)));
  if (wanted.has('notation'))
    signatures.push(...(await verifyNotation(source, digest, certs, trust.now ?? new Date())));
  return { digest, verified: signatures.some((s) => s.verified), signatures };
}

export interface SignOptions {
  format: SignatureFormat;
  privateKey: KeyObject;
  /** The signer's public key (cosign formats; derived from the private key when absent). */
  publicKey?: KeyObject;
  /** notation: the signing certificate first, then any intermediates (and optionally the root). */
  certificates?: X509Certificate[];
  /** cosign simple signing: the repository named in the payload (`host/name`), as cosign writes it. */
  dockerReference?: string;
  /** Signing time for notation and the referrers' created annotation (default now). */
  time?: Date;
}

export interface SignResult {
  format: SignatureFormat;
  /** The signature artifact's manifest digest. */
  manifest: Digest;
  /** cosign simple signing: the tag holding the signatures. */
  tag?: string;
  /** Referrer formats: the registry had no referrers API, so the fallback tag index was updated. */
  fallback?: boolean;
}

/** Signs the manifest `subject` and stores the signature beside it in `target` (the image's repository). */
export async function signImage(target: SignatureWriter, subject: Descriptor, o: SignOptions): Promise<SignResult> {
  const time = o.time ?? new Date();
  switch (o.format) {
    case 'cosign': {
      if (!o.dockerReference) throw new SigningError('cosign signatures name the repository (dockerReference)');
      const r = await signCosign(target, subject.digest, o.privateKey, o.dockerReference);
      return { format: 'cosign', ...r };
    }
    case 'cosign-bundle': {
      const pub = o.publicKey ?? createPublicKey(o.privateKey);
      return { format: 'cosign-bundle', ...(await signBundle(target, subject, o.privateKey, pub, time)) };
    }
    case 'notation':
      return {
        format: 'notation',
        ...(await signNotation(target, subject, o.privateKey, o.certificates ?? [], time)),
      };
    default:
      throw new SigningError(`unknown signature format ${String(o.format)}`);
  }
}
