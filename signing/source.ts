// What the signature formats need from wherever images live — a registry through client/ (berth sign/verify), or
// the registry's own stores (policy). Small on purpose: manifests by tag or digest, small blobs, referrers.
import type { Digest } from '../spec/digest.js';
import type { Descriptor } from '../spec/manifest.js';

/** A manifest as stored: exact bytes, media type, digest. */
export interface StoredManifest {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

/** Read access to one repository. Implementations verify what they return against the digests asked for. */
export interface SignatureReader {
  /** A manifest by tag or digest; undefined when it does not exist. */
  manifest(reference: string): Promise<StoredManifest | undefined>;
  /** A small blob (signature payloads, bundles, envelopes), at most `limit` bytes, verified against `desc`. */
  blob(desc: Pick<Descriptor, 'digest' | 'size'>, limit: number): Promise<Buffer>;
  /** The referrers of `digest` (the referrers API, else the `<alg>-<hex>` fallback tag). */
  referrers(digest: Digest, artifactType?: string): Promise<Descriptor[]>;
}

/** Write access on top, for signing. */
export interface SignatureWriter extends SignatureReader {
  putBlob(bytes: Buffer): Promise<Pick<Descriptor, 'digest' | 'size'>>;
  /** Stores a manifest; `subjectAccepted` is whether the registry indexed its subject (OCI-Subject header). */
  putManifest(
    reference: string,
    bytes: Buffer,
    mediaType: string,
  ): Promise<{ digest: Digest; subjectAccepted: boolean }>;
  /** Adds a referrer to the subject's fallback tag index (registries without the referrers API). */
  addReferrerFallback(subject: Digest, referrer: Descriptor): Promise<void>;
}

/** Signature artifacts are small; anything bigger is refused rather than read (cosign's own limit is similar). */
export const ARTIFACT_LIMIT = 4 << 20;

/**
 * At most this many signatures of one format are checked per image: anyone who can push to a repository can attach
 * referrers, and a verifier (the registry's policy above all) must not be made to fetch without bound.
 */
export const MAX_SIGNATURES = 64;
