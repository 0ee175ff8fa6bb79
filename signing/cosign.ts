// cosign's "simple signing" format: a signature image tagged `sha256-<hex>.sig` in the image's repository, one layer
// per signature. Each layer is the JSON payload naming the image digest, and carries its base64 signature in the
// `dev.cosignproject.cosign/signature` annotation. Signing again appends a layer.
// spec: cosign specs/SIGNATURE_SPEC.md; payload: sigstore/sigstore pkg/signature/payload (SimpleContainerImage).
import type { KeyObject } from 'node:crypto';
import { parseDigest, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageManifest } from '../spec/manifest.js';
import { OCI_CONFIG, OCI_MANIFEST } from '../spec/media-types.js';
import { keyId, signBytes, verifyBytes } from './keys.js';
import { ARTIFACT_LIMIT, MAX_SIGNATURES, type SignatureReader, type SignatureWriter } from './source.js';
import type { SignatureCheck } from './types.js';

export const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const PAYLOAD_TYPE = 'cosign container image signature';

/** The tag cosign keeps signatures under: `sha256:abc…` → `sha256-abc….sig`. */
export function signatureTag(digest: Digest): string {
  const { algorithm, encoded } = parseDigest(digest);
  return `${algorithm}-${encoded}.sig`;
}

/** The payload cosign signs: the image digest and the repository it was signed in (`docker-reference`). */
export function simpleSigningPayload(digest: Digest, dockerReference: string): Buffer {
  const doc = {
    critical: {
      identity: { 'docker-reference': dockerReference },
      image: { 'docker-manifest-digest': digest },
      type: PAYLOAD_TYPE,
    },
    optional: null,
  };
  return Buffer.from(JSON.stringify(doc));
}

/** Signs `digest` and appends the signature to the `.sig` image (created when absent; a duplicate is not added). */
export async function signCosign(
  target: SignatureWriter,
  digest: Digest,
  key: KeyObject,
  dockerReference: string,
): Promise<{ manifest: Digest; tag: string }> {
  const tag = signatureTag(digest);
  const payload = simpleSigningPayload(digest, dockerReference);
  const signature = signBytes(key, payload).toString('base64');
  const layers = await _existingLayers(target, tag);
  const blob = await target.putBlob(payload);
  const layer: Descriptor = { mediaType: SIMPLE_SIGNING, ...blob, annotations: { [SIGNATURE_ANNOTATION]: signature } };
  layers.push(layer);
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      history: layers.map(() => ({ created: '0001-01-01T00:00:00Z' })),
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    }),
  );
  const configDesc = await target.putBlob(config);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, ...configDesc },
    layers,
  };
  const put = await target.putManifest(tag, Buffer.from(JSON.stringify(manifest)), OCI_MANIFEST);
  return { manifest: put.digest, tag };
}

async function _existingLayers(source: SignatureReader, tag: string): Promise<Descriptor[]> {
  const m = await source.manifest(tag);
  if (!m) return [];
  const doc = JSON.parse(m.bytes.toString('utf8')) as ImageManifest;
  return Array.isArray(doc.layers) ? doc.layers : [];
}

/** Checks every simple-signing layer of the `.sig` image against the trusted keys. */
export async function verifyCosign(
  source: SignatureReader,
  digest: Digest,
  keys: KeyObject[],
): Promise<SignatureCheck[]> {
  const m = await source.manifest(signatureTag(digest));
  if (!m) return [];
  let doc: ImageManifest;
  try {
    doc = JSON.parse(m.bytes.toString('utf8')) as ImageManifest;
  } catch {
    return [{ format: 'cosign', manifest: m.digest, verified: false, error: 'the signature manifest is not JSON' }];
  }
  const checks: SignatureCheck[] = [];
  for (const layer of (Array.isArray(doc.layers) ? doc.layers : []).slice(0, MAX_SIGNATURES)) {
    if (layer.mediaType !== SIMPLE_SIGNING) continue;
    checks.push(await _checkLayer(source, digest, layer, keys, m.digest));
  }
  return checks;
}

async function _checkLayer(
  source: SignatureReader,
  digest: Digest,
  layer: Descriptor,
  keys: KeyObject[],
  manifest: Digest,
): Promise<SignatureCheck> {
  const base = { format: 'cosign' as const, manifest, layer: layer.digest };
  const b64 = layer.annotations?.[SIGNATURE_ANNOTATION];
  if (!b64) return { ...base, verified: false, error: `layer has no ${SIGNATURE_ANNOTATION} annotation` };
  let payload: Buffer;
  try {
    payload = await source.blob(layer, ARTIFACT_LIMIT);
  } catch (e) {
    return { ...base, verified: false, error: `cannot read the payload: ${(e as Error).message}` };
  }
  const signature = Buffer.from(b64, 'base64');
  const key = keys.find((k) => verifyBytes(k, payload, signature));
  if (!key) return { ...base, verified: false, error: 'the signature does not match any trusted key' };
  const claim = _claim(payload);
  if (claim.error) return { ...base, verified: false, signer: keyId(key), error: claim.error };
  if (claim.digest !== digest)
    return { ...base, verified: false, signer: keyId(key), error: `the payload signs ${claim.digest}, not ${digest}` };
  return { ...base, verified: true, signer: keyId(key), identity: claim.reference };
}

function _claim(payload: Buffer): { digest?: string; reference?: string; error?: string } {
  try {
    const doc = JSON.parse(payload.toString('utf8'));
    if (doc?.critical?.type !== PAYLOAD_TYPE) return { error: `the payload type is not "${PAYLOAD_TYPE}"` };
    return {
      digest: doc.critical.image?.['docker-manifest-digest'],
      reference: doc.critical.identity?.['docker-reference'],
    };
  } catch {
    return { error: 'the payload is not JSON' };
  }
}
