// OCI 1.1 artifacts that refer to an image (an SBOM, a signature…): an image manifest with `artifactType`, the
// empty config `{}` and one layer holding the document, whose `subject` is the image it describes. Stored next to
// the image in any ImageTarget: a registry serves it from its referrers API (or, lacking one, the client keeps the
// fallback tag index — client/copy.ts remoteTarget), an OCI layout lists it in index.json.
// https://github.com/opencontainers/image-spec/blob/main/manifest.md#guidelines-for-artifact-usage
import { Readable } from 'node:stream';
import { canonicalBytes } from '../spec/canonical-json.js';
import { digestOf } from '../spec/digest.js';
import type { Descriptor, ImageManifest } from '../spec/manifest.js';
import { OCI_EMPTY, OCI_MANIFEST } from '../spec/media-types.js';
import type { ImageTarget } from '../client/copy.js';
import type { FetchedManifest } from '../client/remote.js';

/** image-spec "Guidance for an empty descriptor": `{}`, with its bytes inline (`data`) as the spec suggests. */
const TITLE = 'org.opencontainers.image.title';
const EMPTY_BYTES = Buffer.from('{}');
export const EMPTY_DESCRIPTOR: Descriptor = {
  mediaType: OCI_EMPTY,
  digest: digestOf(EMPTY_BYTES),
  size: 2,
  data: EMPTY_BYTES.toString('base64'),
};

export interface Artifact {
  manifest: FetchedManifest;
  /** The image this artifact refers to. */
  subject: Descriptor;
  /** The config and layer blobs, by digest. */
  blobs: Map<string, Buffer>;
}

export interface ArtifactInput {
  artifactType: string;
  /** The document and its media type (the one layer). */
  data: Buffer;
  mediaType: string;
  /** The document's file name, which `oras pull` needs to save a layer (its `org.opencontainers.image.title`). */
  title?: string;
  subject: Descriptor;
  annotations?: Record<string, string>;
}

/** The artifact manifest, canonical JSON so the same inputs give the same digest. */
export function artifact(input: ArtifactInput): Artifact {
  const layer: Descriptor = { mediaType: input.mediaType, digest: digestOf(input.data), size: input.data.length };
  if (input.title) layer.annotations = { [TITLE]: input.title };
  const doc: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: input.artifactType,
    config: EMPTY_DESCRIPTOR,
    layers: [layer],
    // The subject descriptor carries only what identifies the manifest (no platform, no annotations).
    subject: { mediaType: input.subject.mediaType, digest: input.subject.digest, size: input.subject.size },
    ...(input.annotations ? { annotations: input.annotations } : {}),
  };
  const bytes = canonicalBytes(doc);
  return {
    manifest: { bytes, mediaType: OCI_MANIFEST, digest: digestOf(bytes) },
    subject: doc.subject!,
    blobs: new Map([
      [EMPTY_DESCRIPTOR.digest, EMPTY_BYTES],
      [layer.digest, input.data],
    ]),
  };
}

/**
 * Stores artifacts in `target` after their subjects are there: blobs, then the manifest by digest (as a referrer,
 * so the target lists it for its subject). One already findable from its subject is skipped. Returns how many
 * were written.
 */
export async function putArtifacts(target: ImageTarget, artifacts: Artifact[]): Promise<number> {
  let written = 0;
  for (const a of artifacts) {
    if ((await target.resolve(a.manifest.digest, { referrer: true })) === a.manifest.digest) continue;
    for (const [digest, bytes] of a.blobs) {
      await target.pushBlob(
        { mediaType: 'application/octet-stream', digest: digest as Descriptor['digest'], size: bytes.length },
        (offset) => Readable.from([bytes.subarray(offset)]),
        {},
      );
    }
    await target.putManifest(a.manifest.digest, a.manifest, { subject: a.subject });
    written++;
  }
  return written;
}
