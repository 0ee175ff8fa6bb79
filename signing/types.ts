// The result types of signing/ — stable: the registry's signature policy and `berth verify --json` expose them.
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { Digest } from '../spec/digest.js';

/**
 * `cosign`: simple signing under the `sha256-<hex>.sig` tag; `cosign-bundle`: a sigstore bundle v0.3 referrer
 * (cosign v3's default); `notation`: a Notary Project JWS envelope referrer.
 */
export type SignatureFormat = 'cosign' | 'cosign-bundle' | 'notation';
export const SIGNATURE_FORMATS: readonly SignatureFormat[] = ['cosign', 'cosign-bundle', 'notation'];

/** What a verifier trusts. Keys verify the cosign formats; certificates (roots or self-signed leaves) notation. */
export interface Trust {
  keys?: KeyObject[];
  certificates?: X509Certificate[];
  /** Only these formats are looked at (default: every format the trust material can verify). */
  formats?: readonly SignatureFormat[];
  /** The time certificates must be valid at (default: now). */
  now?: Date;
}

/** One signature found for the image, and what checking it gave. */
export interface SignatureCheck {
  format: SignatureFormat;
  /** The signature artifact's manifest (the `.sig` image for cosign, the referrer otherwise). */
  manifest: Digest;
  /** For cosign simple signing: the layer holding this signature. */
  layer?: Digest;
  verified: boolean;
  /** The key (`sha256:` of its DER) or certificate subject that verified it. */
  signer?: string;
  /** What the signature claims: cosign's docker-reference, or notation's signing time. */
  identity?: string;
  signedAt?: string;
  /** Why it did not verify. */
  error?: string;
}

export interface VerifyResult {
  digest: Digest;
  /** At least one signature verified against the trust material. */
  verified: boolean;
  signatures: SignatureCheck[];
}
