// What a test checks of an image, in one place: validateImage() reads an image from a plain-HTTP loopback registry
// or an OCI layout and checks that it is whole and consistent — the manifest's own digest, the config and every
// layer against their descriptors (digest and size, streamed, never held in memory), the config's diff_ids against
// the uncompressed layers (gzip, zstd or plain), and the platform (index entry vs config, and an expected one). An
// index is checked child by child. It throws an AssertionError naming the blob and what differs; it returns what it
// read, for the test's own assertions.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { loadZstd } from '../../builder/zstd.js';

const INDEX_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
];
const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
];
const ACCEPT = [...INDEX_TYPES, ...MANIFEST_TYPES].join(', ');

export interface ValidLayer {
  mediaType: string;
  digest: string;
  size: number;
  /** sha256 of the uncompressed layer; equals the config's diff_id at the same position. */
  diffId: string;
}

export interface ValidImage {
  /** Digest of the manifest (or index) bytes. */
  digest: string;
  mediaType: string;
  /** The parsed manifest, or the parsed index when `images` is set. */
  manifest: any;
  /** The parsed config (undefined for an index). */
  config?: any;
  layers: ValidLayer[];
  /** `os/architecture[/variant]` of the config (undefined for an index). */
  platform?: string;
  /** For an index: every child image, validated, in index order. */
  images?: ValidImage[];
}

export interface ValidateOptions {
  /** The platform the image must have (`linux/amd64`, `linux/arm64/v8`); for an index, one child must have it. */
  platform?: string;
  /** How many layers the image (each child of an index) must have. */
  layers?: number;
}

/**
 * Validates the image at `ref`: `oci:DIR[:TAG]` / `oci:DIR@DIGEST` (an OCI layout), or `HOST/REPO:TAG` /
 * `HOST/REPO@DIGEST` (a registry on plain HTTP, e.g. `127.0.0.1:PORT/app:v1`). `headers` (e.g. Authorization) are
 * sent with every registry request.
 */
export async function validateImage(
  ref: string,
  opts: ValidateOptions = {},
  headers: Record<string, string> = {},
): Promise<ValidImage> {
  const source = ref.startsWith('oci:') ? _layout(ref.slice(4)) : _registry(ref, headers);
  const top = await source.top();
  return _validate(source, top.bytes, top.mediaType, top.expected, opts, undefined);
}

interface Source {
  top(): Promise<{ bytes: Buffer; mediaType?: string; expected?: string }>;
  manifest(digest: string): Promise<Buffer>;
  blob(digest: string): Promise<Readable>;
}

async function _validate(
  source: Source,
  bytes: Buffer,
  mediaType: string | undefined,
  expected: string | undefined,
  opts: ValidateOptions,
  indexPlatform: any,
): Promise<ValidImage> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (expected) assert.equal(digest, expected, `manifest bytes hash to ${digest}, not ${expected}`);
  const manifest = JSON.parse(bytes.toString('utf8'));
  const type = manifest.mediaType ?? mediaType;
  assert.equal(manifest.schemaVersion, 2, `${digest}: schemaVersion`);
  if (INDEX_TYPES.includes(type) || Array.isArray(manifest.manifests)) {
    const images: ValidImage[] = [];
    for (const d of manifest.manifests) {
      if (!MANIFEST_TYPES.includes(d.mediaType)) continue; // an attestation or nested index is not an image here
      const child = await source.manifest(d.digest);
      assert.equal(child.length, d.size, `${d.digest}: size ${child.length}, index says ${d.size}`);
      images.push(await _validate(source, child, d.mediaType, d.digest, { layers: opts.layers }, d.platform));
    }
    assert.ok(images.length > 0, `${digest}: an index without images`);
    if (opts.platform) {
      const have = images.map((i) => i.platform);
      assert.ok(have.includes(opts.platform), `${digest}: no image for ${opts.platform}; it has ${have.join(', ')}`);
    }
    return { digest, mediaType: type, manifest, layers: [], images };
  }
  assert.ok(MANIFEST_TYPES.includes(type), `${digest}: not an image manifest (${type})`);
  const configBytes = await _read(await source.blob(manifest.config.digest));
  _checkBlob(manifest.config, configBytes.length, `sha256:${createHash('sha256').update(configBytes).digest('hex')}`);
  const config = JSON.parse(configBytes.toString('utf8'));
  assert.equal(config.rootfs?.type, 'layers', `${manifest.config.digest}: rootfs.type`);
  const diffIds: string[] = config.rootfs.diff_ids ?? [];
  assert.equal(
    diffIds.length,
    manifest.layers.length,
    `${digest}: ${manifest.layers.length} layers, ${diffIds.length} diff_ids`,
  );
  if (opts.layers !== undefined) assert.equal(manifest.layers.length, opts.layers, `${digest}: layer count`);
  const layers: ValidLayer[] = [];
  for (const [i, d] of manifest.layers.entries()) {
    const { size, digest: got, diffId } = await _measureLayer(await source.blob(d.digest), d.mediaType);
    _checkBlob(d, size, got);
    assert.equal(diffId, diffIds[i], `layer ${i} (${d.digest}): uncompressed ${diffId}, config diff_id ${diffIds[i]}`);
    layers.push({ mediaType: d.mediaType, digest: d.digest, size: d.size, diffId });
  }
  const platform = [config.os, config.architecture, config.variant].filter(Boolean).join('/');
  if (indexPlatform) {
    const listed = [indexPlatform.os, indexPlatform.architecture, indexPlatform.variant].filter(Boolean).join('/');
    assert.equal(platform, listed, `${digest}: config is ${platform}, the index lists ${listed}`);
  }
  if (opts.platform) assert.equal(platform, opts.platform, `${digest}: platform`);
  return { digest, mediaType: type, manifest, config, layers, platform };
}

function _checkBlob(d: { digest: string; size: number }, size: number, digest: string): void {
  assert.equal(digest, d.digest, `blob ${d.digest} hashes to ${digest}`);
  assert.equal(size, d.size, `blob ${d.digest}: ${size} bytes, descriptor says ${d.size}`);
}

/** Size and digest of the blob as stored, and the digest of its uncompressed content, in one streaming pass. */
async function _measureLayer(
  body: Readable,
  mediaType: string,
): Promise<{ size: number; digest: string; diffId: string }> {
  const outer = createHash('sha256');
  const inner = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      outer.update(chunk);
      cb(null, chunk);
    },
  });
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      inner.update(chunk);
      cb();
    },
  });
  const steps: NodeJS.ReadWriteStream[] = [tap];
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.tar.gzip')) steps.push(createGunzip());
  else if (mediaType.endsWith('+zstd')) steps.push(new (await loadZstd()).DecompressStream());
  await pipeline([body, ...steps, sink]);
  return { size, digest: `sha256:${outer.digest('hex')}`, diffId: `sha256:${inner.digest('hex')}` };
}

async function _read(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function _layout(spec: string): Source {
  const at = spec.lastIndexOf('@');
  const colon = spec.lastIndexOf(':');
  const dir = at > 0 ? spec.slice(0, at) : colon > 0 ? spec.slice(0, colon) : spec;
  const blobPath = (digest: string) => join(dir, 'blobs', ...digest.split(':'));
  return {
    async top() {
      const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
      let d: any;
      if (at > 0) {
        const digest = spec.slice(at + 1);
        d = index.manifests.find((m: any) => m.digest === digest) ?? { digest }; // by digest: any manifest blob
      } else if (colon > 0) {
        const tag = spec.slice(colon + 1);
        d = index.manifests.find((m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
      } else {
        assert.equal(index.manifests.length, 1, `${dir}: name a tag, the layout holds several images`);
        d = index.manifests[0];
      }
      assert.ok(d, `${spec}: not in ${join(dir, 'index.json')}`);
      const bytes = await readFile(blobPath(d.digest));
      if (d.size !== undefined) {
        assert.equal(bytes.length, d.size, `${d.digest}: size ${bytes.length}, index.json says ${d.size}`);
      }
      return { bytes, mediaType: d.mediaType, expected: d.digest };
    },
    manifest: (digest) => readFile(blobPath(digest)),
    blob: async (digest) => createReadStream(blobPath(digest)),
  };
}

function _registry(ref: string, headers: Record<string, string>): Source {
  const slash = ref.indexOf('/');
  const host = ref.slice(0, slash);
  const rest = ref.slice(slash + 1);
  const at = rest.indexOf('@');
  const colon = rest.lastIndexOf(':');
  const [name, reference] =
    at > 0
      ? [rest.slice(0, at), rest.slice(at + 1)]
      : colon > 0
        ? [rest.slice(0, colon), rest.slice(colon + 1)]
        : [rest, 'latest'];
  const base = `http://${host}/v2/${name}`;
  const get = async (path: string, accept?: string) => {
    const res = await fetch(`${base}${path}`, { headers: { ...headers, ...(accept ? { accept } : {}) } });
    assert.equal(res.status, 200, `GET ${base}${path}: HTTP ${res.status}`);
    return res;
  };
  const manifest = async (r: string) => {
    const res = await get(`/manifests/${r}`, ACCEPT);
    return { bytes: Buffer.from(await res.arrayBuffer()), mediaType: res.headers.get('content-type') ?? undefined };
  };
  return {
    async top() {
      const m = await manifest(reference);
      return { ...m, expected: reference.includes(':') ? reference : undefined };
    },
    manifest: async (digest) => (await manifest(digest)).bytes,
    blob: async (digest) => Readable.fromWeb((await get(`/blobs/${digest}`)).body as any),
  };
}
