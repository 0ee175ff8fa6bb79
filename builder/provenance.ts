// `berth build --sign KEY`: every image of the build (each platform image and the index above them) gets a cosign
// v3-style signature, and each platform image a SLSA v1 provenance statement — both in-toto statements, DSSE-signed,
// wrapped in sigstore bundles v0.3 and attached as OCI 1.1 referrers of the manifest they describe (never as fake
// `unknown/unknown` platforms in the index, which is what BuildKit does). The images themselves are untouched, so
// their digests are the same as an unsigned build's. `cosign verify` and `cosign verify-attestation --type
// slsaprovenance1` (v3) read them; so does `berth verify`.
// spec: https://slsa.dev/spec/v1.0/provenance, cosign specs/BUNDLE_SPEC.md.
import { createHash, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { canonicalBytes } from '../spec/canonical-json.js';
import type { Digest } from '../spec/digest.js';
import type { ImageManifest } from '../spec/manifest.js';
import type { FetchedManifest } from '../client/remote.js';
import {
  BUNDLE_V03,
  bundleAnnotations,
  COSIGN_SIGN_PREDICATE,
  signatureStatement,
  signedBundle,
  type Statement,
} from '../signing/index.js';
import { formatPlatform } from '../spec/platform.js';
import { artifact, type Artifact } from './artifact.js';
import type { BuildResult, PlatformImage } from './build.js';
import { epochTime } from './image.js';

export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
/** in-toto's predicate type for an SPDX document: what `cosign verify-attestation --type spdxjson` looks for. */
export const SPDX_PREDICATE = 'https://spdx.dev/Document';
/** What `buildType` names: how to read externalParameters (README "Signing builds"). */
export const BUILD_TYPE = 'https://berth.dev/build/v1';

export interface SignBuildOptions {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The spec file as given (its bytes are digested). */
  specFile: string;
  /** berth's version: the builder in the provenance. */
  toolVersion: string;
  /** The build's SBOM artifacts: each is attested too (its SPDX document as the predicate, signed). */
  sboms?: Artifact[];
}

/** The signature and provenance artifacts of a build (signatures for every manifest, provenance per platform). */
export async function buildAttestations(
  result: BuildResult,
  o: SignBuildOptions,
): Promise<{ signatures: Artifact[]; provenance: Artifact[]; sbom: Artifact[] }> {
  const spec = await readFile(o.specFile);
  const specDigest = createHash('sha256').update(spec).digest('hex');
  const created = _created(result);
  const signatures: Artifact[] = [];
  const manifests: FetchedManifest[] = [result.root, ...result.images.map((i) => i.manifest)];
  const seen = new Set<string>();
  for (const m of manifests) {
    if (seen.has(m.digest)) continue; // a single-platform build: the root is the image
    seen.add(m.digest);
    signatures.push(_bundleArtifact(m, signatureStatement(m.digest), COSIGN_SIGN_PREDICATE, o, created));
  }
  const provenance = result.images.map((img) => {
    const statement = provenanceStatement(result, img, {
      specFile: o.specFile,
      specDigest,
      toolVersion: o.toolVersion,
    });
    return _bundleArtifact(img.manifest, statement, SLSA_PROVENANCE_V1, o, created);
  });
  // The unsigned SPDX referrer stays (oras, scanners read it); the attestation is the same document, signed.
  const sbom = (o.sboms ?? []).flatMap((a) => {
    const img = result.images.find((i) => i.manifest.digest === a.subject.digest);
    const layer = (JSON.parse(a.manifest.bytes.toString('utf8')) as ImageManifest).layers[0];
    const doc = layer && a.blobs.get(layer.digest);
    if (!img || !doc) return [];
    const [alg, hex] = img.manifest.digest.split(':');
    const statement: Statement = {
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: formatPlatform(img.platform), digest: { [alg]: hex } }],
      predicateType: SPDX_PREDICATE,
      predicate: JSON.parse(doc.toString('utf8')),
    };
    return [_bundleArtifact(img.manifest, statement, SPDX_PREDICATE, o, created)];
  });
  return { signatures, provenance, sbom };
}

/**
 * The SLSA v1 provenance of one platform image: the spec (file and digest) and platform as external parameters;
 * the base image (by digest) and the context — the digests of the layers built from it — as resolved dependencies;
 * berth and its version as the builder. No wall-clock time: it is as reproducible as the image.
 */
export function provenanceStatement(
  result: BuildResult,
  img: PlatformImage,
  o: { specFile: string; specDigest: string; toolVersion: string },
): Statement {
  const [alg, hex] = img.manifest.digest.split(':');
  const contextLayers = img.layers.map((l) => ({ name: l.name, digest: l.layer.descriptor.digest }));
  const contextDigest = createHash('sha256').update(canonicalBytes(contextLayers)).digest('hex');
  const deps: { uri: string; digest: Record<string, string>; name?: string; annotations?: unknown }[] = [];
  if (result.base) {
    const [balg, bhex] = result.base.digest.split(':');
    deps.push({ uri: `docker://${result.base.name}`, digest: { [balg]: bhex }, name: 'base' });
  }
  deps.push({
    uri: 'context',
    digest: { sha256: contextDigest },
    name: 'context',
    annotations: { layers: contextLayers },
  });
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: formatPlatform(img.platform), digest: { [alg]: hex } }],
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: {
          spec: { path: o.specFile, digest: { sha256: o.specDigest } },
          platform: formatPlatform(img.platform),
        },
        internalParameters: { created: _created(result).toISOString() },
        resolvedDependencies: deps,
      },
      runDetails: { builder: { id: 'https://berth.dev/builder', version: { berth: o.toolVersion } } },
    },
  };
}

function _bundleArtifact(
  subject: FetchedManifest,
  statement: Statement,
  predicateType: string,
  o: SignBuildOptions,
  created: Date,
): Artifact {
  return artifact({
    artifactType: BUNDLE_V03,
    mediaType: BUNDLE_V03,
    data: signedBundle(statement, o.privateKey, o.publicKey),
    subject: { mediaType: subject.mediaType, digest: subject.digest as Digest, size: subject.bytes.length },
    annotations: bundleAnnotations(predicateType, created),
  });
}

/** The build's `created` (from the epoch), for annotations: the same on every rebuild. */
function _created(result: BuildResult): Date {
  const cfg = result.images[0]?.image.config as { created?: string } | undefined;
  return new Date(cfg?.created ?? epochTime(0));
}
