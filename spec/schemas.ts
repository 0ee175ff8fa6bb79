// JSON Schemas for the documents berth accepts, validated with ajv. Shapes follow image-spec (manifest.md,
// image-index.md, descriptor.md, config.md) and Docker's manifest v2 schema 2 / manifest list.
//
// The schemas every CLI run validates are precompiled (ajv standalone, spec/generated/validators.ts): compiling the
// build spec alone cost 60–70 ms per `berth build`. The rest (the server config) compile on first use.
import { createRequire } from 'node:module';
import type { Ajv, Options, ValidateFunction, ErrorObject } from 'ajv';
import { buildSpecSchema } from './build-spec.js';
import * as generated from './generated/validators.js';

const digestPattern = '^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$';
const mediaTypePattern = '^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$';
const stringMap = { type: 'object', additionalProperties: { type: 'string' } };

const platform = {
  type: 'object',
  required: ['architecture', 'os'],
  properties: {
    architecture: { type: 'string' },
    os: { type: 'string' },
    'os.version': { type: 'string' },
    'os.features': { type: 'array', items: { type: 'string' } },
    variant: { type: 'string' },
    features: { type: 'array', items: { type: 'string' } },
  },
};

export const descriptorSchema = {
  $id: 'descriptor',
  type: 'object',
  required: ['mediaType', 'digest', 'size'],
  properties: {
    mediaType: { type: 'string', pattern: mediaTypePattern },
    digest: { type: 'string', pattern: digestPattern },
    size: { type: 'integer', minimum: 0 },
    urls: { type: 'array', items: { type: 'string' } },
    annotations: stringMap,
    data: { type: 'string', contentEncoding: 'base64' },
    artifactType: { type: 'string', pattern: mediaTypePattern },
    platform,
  },
} as const;

export const ociManifestSchema = {
  $id: 'oci-manifest',
  type: 'object',
  required: ['schemaVersion', 'config', 'layers'],
  properties: {
    schemaVersion: { const: 2 },
    mediaType: { const: 'application/vnd.oci.image.manifest.v1+json' },
    artifactType: { type: 'string', pattern: mediaTypePattern },
    config: { $ref: 'descriptor' },
    layers: { type: 'array', items: { $ref: 'descriptor' } },
    subject: { $ref: 'descriptor' },
    annotations: stringMap,
  },
} as const;

export const ociIndexSchema = {
  $id: 'oci-index',
  type: 'object',
  required: ['schemaVersion', 'manifests'],
  properties: {
    schemaVersion: { const: 2 },
    mediaType: { const: 'application/vnd.oci.image.index.v1+json' },
    artifactType: { type: 'string', pattern: mediaTypePattern },
    manifests: { type: 'array', items: { $ref: 'descriptor' } },
    subject: { $ref: 'descriptor' },
    annotations: stringMap,
  },
} as const;

export const dockerManifestSchema = {
  $id: 'docker-manifest',
  type: 'object',
  required: ['schemaVersion', 'mediaType', 'config', 'layers'],
  properties: {
    schemaVersion: { const: 2 },
    mediaType: { const: 'application/vnd.docker.distribution.manifest.v2+json' },
    config: { $ref: 'descriptor' },
    layers: { type: 'array', items: { $ref: 'descriptor' } },
  },
} as const;

export const dockerManifestListSchema = {
  $id: 'docker-manifest-list',
  type: 'object',
  required: ['schemaVersion', 'mediaType', 'manifests'],
  properties: {
    schemaVersion: { const: 2 },
    mediaType: { const: 'application/vnd.docker.distribution.manifest.list.v2+json' },
    manifests: { type: 'array', items: { $ref: 'descriptor' } },
  },
} as const;

export const imageConfigSchema = {
  $id: 'image-config',
  type: 'object',
  required: ['architecture', 'os', 'rootfs'],
  properties: {
    created: { type: 'string' },
    author: { type: 'string' },
    architecture: { type: 'string' },
    os: { type: 'string' },
    variant: { type: 'string' },
    config: {
      type: 'object',
      properties: {
        User: { type: 'string' },
        ExposedPorts: { type: 'object' },
        Env: { type: 'array', items: { type: 'string' } },
        Entrypoint: { type: ['array', 'null'], items: { type: 'string' } },
        Cmd: { type: ['array', 'null'], items: { type: 'string' } },
        Volumes: { type: 'object' },
        WorkingDir: { type: 'string' },
        Labels: { type: ['object', 'null'], additionalProperties: { type: 'string' } },
        StopSignal: { type: 'string' },
      },
    },
    rootfs: {
      type: 'object',
      required: ['type', 'diff_ids'],
      properties: {
        type: { const: 'layers' },
        diff_ids: { type: 'array', items: { type: 'string', pattern: digestPattern } },
      },
    },
    history: { type: 'array', items: { type: 'object' } },
  },
} as const;

/** How berth's ajv compiles, at run time and in spec/standalone.ts: the precompiled code must match. */
export const ajvOptions = { allErrors: false, strict: false } as const satisfies Options;

/** Export name in spec/generated/validators.ts → schema. Regenerate after changing one: `npm run gen:validators`. */
export const precompiledSchemas = {
  validateBuildSpec: buildSpecSchema,
  validateOciManifest: ociManifestSchema,
  validateOciIndex: ociIndexSchema,
  validateDockerManifest: dockerManifestSchema,
  validateDockerManifestList: dockerManifestListSchema,
} as const;

let _ajv: Ajv | undefined;
/** One shared ajv instance with the descriptor schema registered, so other schemas can `$ref` it. */
export function ajv(): Ajv {
  if (!_ajv) {
    // Loaded on first use: importing ajv costs ~40 ms, which a CLI run using only precompiled validators skips.
    const { Ajv } = createRequire(import.meta.url)('ajv') as typeof import('ajv');
    _ajv = new Ajv({ ...ajvOptions });
    _ajv.addSchema(descriptorSchema);
  }
  return _ajv;
}

const _compiled = new Map<object, ValidateFunction>();
for (const [name, schema] of Object.entries(precompiledSchemas)) {
  // Missing only until the file is regenerated (spec/standalone.test.ts fails meanwhile): compile at run time then.
  const v = (generated as Record<string, unknown>)[name] as ValidateFunction | undefined;
  if (v) _compiled.set(schema, v);
}
export function validator(schema: object): ValidateFunction {
  let v = _compiled.get(schema);
  if (!v) {
    v = ajv().compile(schema);
    _compiled.set(schema, v);
  }
  return v;
}

/** Formats the first ajv error as `path: message`, e.g. `/layers/0/size: must be integer`. */
export function describeErrors(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'invalid document';
  const where = e.instancePath || '/';
  const extra = e.keyword === 'const' ? ` ${JSON.stringify(e.params.allowedValue)}` : '';
  return `${where}: ${e.message}${extra}`;
}
