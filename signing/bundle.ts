// cosign's sigstore-bundle format (cosign v3's default; v2 with --new-bundle-format): a bundle v0.3 whose DSSE
// envelope carries an in-toto statement naming the image digest (predicate https://sigstore.dev/cosign/sign/v1),
// stored as an OCI 1.1 referrer of the image — the referrers API, else the referrers tag scheme.
// spec: cosign specs/BUNDLE_SPEC.md; sigstore protobuf-specs sigstore_bundle.proto; cosign v3 cli/sign signDigestBundle.
import type { KeyObject } from 'node:crypto';
import { digestOf, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageManifest } from '../spec/manifest.js';
import { OCI_EMPTY, OCI_MANIFEST } from '../spec/media-types.js';
import {
  INTOTO_PAYLOAD_TYPE,
  openEnvelope,
  signEnvelope,
  STATEMENT_V1,
  type Envelope,
  type Statement,
} from './dsse.js';
import { keyHint } from './keys.js';
import { ARTIFACT_LIMIT, MAX_SIGNATURES, type SignatureReader, type SignatureWriter } from './source.js';
import type { SignatureCheck } from './types.js';

export const BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';

/** Signs `subject` as cosign v3 does and attaches the bundle as a referrer. */
export async function signBundle(
  target: SignatureWriter,
  subject: Descriptor,
  key: KeyObject,
  publicKey: KeyObject,
  created: Date,
): Promise<{ manifest: Digest; fallback: boolean }> {
  const statement = signatureStatement(subject.digest);
  return attachReferrer(target, subject, {
    artifactType: BUNDLE_V03,
    layerMediaType: BUNDLE_V03,
    content: signedBundle(statement, key, publicKey),
    annotations: bundleAnnotations(COSIGN_SIGN_PREDICATE, created),
  });
}

/** The statement DSSE-signed and wrapped in a key-based sigstore bundle v0.3 (no tlog entry), as JSON bytes. */
export function signedBundle(statement: Statement, key: KeyObject, publicKey: KeyObject): Buffer {
  const envelope = signEnvelope(Buffer.from(JSON.stringify(statement)), INTOTO_PAYLOAD_TYPE, key);
  const bundle = {
    mediaType: BUNDLE_V03,
    verificationMaterial: { publicKey: { hint: keyHint(publicKey) } },
    dsseEnvelope: envelope,
  };
  return Buffer.from(JSON.stringify(bundle));
}

/** The referrer annotations cosign v3 writes on a bundle (write.go WriteAttestationNewBundleFormat). */
export function bundleAnnotations(predicateType: string, created: Date): Record<string, string> {
  return {
    'org.opencontainers.image.created': _rfc3339(created),
    'dev.sigstore.bundle.content': 'dsse-envelope',
    'dev.sigstore.bundle.predicateType': predicateType,
  };
}

/** The in-toto statement that a cosign v3 signature is: `subject` signed, empty predicate. */
export function signatureStatement(digest: Digest): Statement {
  const [alg, hex] = digest.split(':');
  return {
    _type: STATEMENT_V1,
    subject: [{ digest: { [alg]: hex } }],
    predicateType: COSIGN_SIGN_PREDICATE,
    predicate: {},
  };
}

/**
 * Pushes an artifact manifest (empty config, one layer) whose subject is `subject`; when the registry does not
 * index subjects (no OCI-Subject header) the subject's fallback tag index is updated too.
 */
export async function attachReferrer(
  target: SignatureWriter,
  subject: Descriptor,
  a: { artifactType: string; layerMediaType: string; content: Buffer; annotations: Record<string, string> },
): Promise<{ manifest: Digest; fallback: boolean }> {
  const layer = await target.putBlob(a.content);
  const config = await target.putBlob(Buffer.from('{}'));
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: a.artifactType,
    config: { mediaType: OCI_EMPTY, ...config },
    layers: [{ mediaType: a.layerMediaType, ...layer }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: a.annotations,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const { digest, subjectAccepted } = await target.putManifest(digestOf(bytes), bytes, OCI_MANIFEST);
  if (!subjectAccepted)
    await target.addReferrerFallback(subject.digest, {
      mediaType: OCI_MANIFEST,
      digest,
      size: bytes.length,
      artifactType: a.artifactType,
      annotations: a.annotations,
    });
  return { manifest: digest, fallback: !subjectAccepted };
}

/** Checks every bundle referrer of `digest` against the trusted keys. */
export async function verifyBundles(
  source: SignatureReader,
  digest: Digest,
  keys: KeyObject[],
): Promise<SignatureCheck[]> {
  // Attestations (provenance, SBOM…) are bundles too; their predicate type is on the referrer descriptor.
  const refs = (await source.referrers(digest, BUNDLE_V03)).filter((r) => {
    const predicate = r.annotations?.['dev.sigstore.bundle.predicateType'];
    return r.artifactType === BUNDLE_V03 && (!predicate || predicate === COSIGN_SIGN_PREDICATE);
  });
  const checks: SignatureCheck[] = [];
  for (const ref of refs.slice(0, MAX_SIGNATURES)) checks.push(await _check(source, digest, ref.digest, keys));
  return checks;
}

async function _check(
  source: SignatureReader,
  digest: Digest,
  manifest: Digest,
  keys: KeyObject[],
): Promise<SignatureCheck> {
  const base = { format: 'cosign-bundle' as const, manifest };
  let bundle: any;
  try {
    const m = await source.manifest(manifest);
    if (!m) return { ...base, verified: false, error: 'the referrer manifest is missing' };
    const doc = JSON.parse(m.bytes.toString('utf8')) as ImageManifest;
    const layer = doc.layers?.find((l) => l.mediaType === BUNDLE_V03);
    if (!layer) return { ...base, verified: false, error: `the referrer has no ${BUNDLE_V03} layer` };
    bundle = JSON.parse((await source.blob(layer, ARTIFACT_LIMIT)).toString('utf8'));
  } catch (e) {
    return { ...base, verified: false, error: `cannot read the bundle: ${(e as Error).message}` };
  }
  const env = bundle?.dsseEnvelope as Envelope | undefined;
  if (!env)
    return { ...base, verified: false, error: 'only DSSE bundles are supported (this one holds a message signature)' };
  if (env.payloadType !== INTOTO_PAYLOAD_TYPE)
    return { ...base, verified: false, error: `the envelope's payloadType is ${env.payloadType}` };
  const opened = openEnvelope(env, keys);
  if (opened.error) return { ...base, verified: false, error: opened.error };
  const signer = opened.signer;
  let st: Statement;
  try {
    st = JSON.parse(opened.payload.toString('utf8'));
  } catch {
    return { ...base, verified: false, signer, error: 'the statement is not JSON' };
  }
  const [alg, hex] = digest.split(':');
  if (!Array.isArray(st?.subject) || !st.subject.some((s) => s?.digest?.[alg] === hex))
    return { ...base, verified: false, signer, error: `the statement's subject is not ${digest}` };
  if (st.predicateType !== COSIGN_SIGN_PREDICATE)
    return { ...base, verified: false, signer, error: `the predicate is ${st.predicateType}, not a signature` };
  return { ...base, verified: true, signer };
}

function _rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
