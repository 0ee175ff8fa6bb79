// Manifest and index documents: types, parsing and validation of what a client PUTs.
// Ambiguity rules (CVE-2021-41190, image-spec v1.0.2): an image manifest must not carry `manifests`, an index must
// not carry `config`/`layers`, and a `mediaType` field must agree with the Content-Type it was pushed with.
import type { Digest } from './digest.js';
import {
  OCI_MANIFEST,
  OCI_INDEX,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  baseMediaType,
  isManifestType,
  type ManifestMediaType,
} from './media-types.js';
import {
  validator,
  describeErrors,
  ociManifestSchema,
  ociIndexSchema,
  dockerManifestSchema,
  dockerManifestListSchema,
} from './schemas.js';
import { JsonError, parseStrictJson } from './json.js';

export interface Platform {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  features?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  data?: string;
  artifactType?: string;
  platform?: Platform;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export class ManifestError extends Error {}

/** What the registry needs to know about a pushed manifest. */
export interface ParsedManifest {
  mediaType: ManifestMediaType;
  /** Blobs the manifest references (config + layers); must exist in the repository. */
  blobs: Descriptor[];
  /** Child manifests of an index; must exist in the repository. */
  manifests: Descriptor[];
  subject?: Descriptor;
  /** The referrers API's artifactType: the manifest's artifactType, else its config media type. */
  artifactType?: string;
  annotations?: Record<string, string>;
  document: ImageManifest | ImageIndex;
}

/** Content-Types that say nothing about the manifest kind; the document's own mediaType (or shape) decides. */
const GENERIC_TYPES = new Set(['application/json', 'application/octet-stream']);

const SCHEMAS: Record<ManifestMediaType, object> = {
  [OCI_MANIFEST]: ociManifestSchema,
  [OCI_INDEX]: ociIndexSchema,
  [DOCKER_MANIFEST]: dockerManifestSchema,
  [DOCKER_MANIFEST_LIST]: dockerManifestListSchema,
};

export interface ParseManifestOptions {
  /**
   * Refuse bytes that different JSON parsers read differently (spec/json.ts: invalid UTF-8, duplicate keys, …).
   * On for what clients push; off for documents stored before the check existed (GC must still read them).
   */
  strict?: boolean;
}

/**
 * Parses and validates manifest bytes pushed with `contentType`. Throws ManifestError with a message that names
 * the offending field. The type comes from Content-Type, else the document's own `mediaType`.
 */
export function parseManifest(
  bytes: Uint8Array,
  contentType?: string | null,
  opts: ParseManifestOptions = {},
): ParsedManifest {
  let doc: any;
  try {
    doc = opts.strict ? parseStrictJson(bytes) : JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new ManifestError(e instanceof JsonError ? `manifest ${e.message}` : 'manifest is not valid JSON');
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new ManifestError('manifest must be a JSON object');
  const header = baseMediaType(contentType);
  const field = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  if (doc.mediaType !== undefined && typeof doc.mediaType !== 'string')
    throw new ManifestError('/mediaType: must be string');
  if (doc.schemaVersion === 1) throw new ManifestError('schema 1 manifests are not supported; push schema 2 or OCI');
  let mediaType: string;
  if (header && isManifestType(header)) {
    if (field && field !== header) {
      throw new ManifestError(`mediaType "${field}" in the document contradicts Content-Type "${header}"`);
    }
    mediaType = header;
  } else if (header && !GENERIC_TYPES.has(header)) {
    throw new ManifestError(`unsupported manifest media type "${header}" (Content-Type)`);
  } else if (field && isManifestType(field)) {
    mediaType = field;
  } else if (!field) {
    // No declared type anywhere: an OCI document may omit mediaType; infer from its shape.
    mediaType = Array.isArray(doc.manifests) ? OCI_INDEX : OCI_MANIFEST;
  } else {
    throw new ManifestError(`unsupported manifest media type "${field ?? header}"`);
  }
  const isIndex = mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST;
  if (isIndex && ('config' in doc || 'layers' in doc)) {
    throw new ManifestError('ambiguous document: an index must not have "config" or "layers"');
  }
  if (!isIndex && 'manifests' in doc) {
    throw new ManifestError('ambiguous document: an image manifest must not have "manifests"');
  }
  const validate = validator(SCHEMAS[mediaType as ManifestMediaType]);
  if (!validate(doc)) throw new ManifestError(describeErrors(validate.errors));
  // Descriptor digests must name a supported algorithm for the blobs we check.
  if (isIndex) {
    const index = doc as ImageIndex;
    return {
      mediaType: mediaType as ManifestMediaType,
      blobs: [],
      manifests: index.manifests,
      subject: index.subject,
      artifactType: index.artifactType,
      annotations: index.annotations,
      document: index,
    };
  }
  const manifest = doc as ImageManifest;
  return {
    mediaType: mediaType as ManifestMediaType,
    blobs: [manifest.config, ...manifest.layers],
    manifests: [],
    subject: manifest.subject,
    artifactType: manifest.artifactType ?? manifest.config.mediaType,
    annotations: manifest.annotations,
    document: manifest,
  };
}
