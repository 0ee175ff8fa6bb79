// Tiny runnable test images written as OCI image layouts (image-spec image-layout.md) without docker or any
// builder: one gzip layer holding Debian's static busybox as /bin/busybox and /bin/sh -> busybox. Every tar header
// and JSON document is fixed, so the same inputs always give the same digests. makeLayeredLayout writes a larger
// image of random layers (for progress and resume tests).
// https://github.com/opencontainers/image-spec/blob/main/image-layout.md
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import type { Digest } from '../../spec/digest.js';
import type { Descriptor, ImageIndex, ImageManifest, Platform } from '../../spec/manifest.js';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST } from '../../spec/media-types.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
const EPOCH = new Date(0);
export const DEFAULT_CMD = ['/bin/sh', '-c', 'echo hello-from-berth'];

export interface BusyboxOptions {
  /** Tag recorded in index.json (`org.opencontainers.image.ref.name`); default `latest`. */
  tag?: string;
  /** Default: prints `hello-from-berth`. */
  cmd?: string[];
  /** Extra regular files, path → content; e.g. a marker to make a test's image unique. */
  files?: Record<string, string>;
  /** The static busybox binary; default Debian busybox-static's `/bin/busybox`. */
  busybox?: string;
}

export interface LayoutImage {
  dir: string;
  tag: string;
  /** `oci:DIR:TAG`, the skopeo source/destination name. */
  ref: string;
  manifest: Descriptor;
  config: Descriptor;
  layer: Descriptor;
  /** sha256 of the uncompressed layer (the config's rootfs.diff_ids[0]). */
  diffId: Digest;
}

export interface LayoutIndex {
  dir: string;
  tag: string;
  ref: string;
  /** The image index (what `skopeo copy --all` must preserve). */
  index: Descriptor;
  /** Its per-platform image manifests, amd64 first. */
  images: Descriptor[];
}

/** Writes (or adds to) an OCI layout at `dir` with a single-layer linux/amd64 busybox image tagged `tag`. */
export async function makeBusyboxLayout(dir: string, opts: BusyboxOptions = {}): Promise<LayoutImage> {
  const tag = opts.tag ?? 'latest';
  await _initLayout(dir);
  const { layer, diffId } = await _writeBusyboxLayer(dir, opts);
  const { manifest, config } = await _writeImage(dir, layer, diffId, { architecture: 'amd64', os: 'linux' }, opts.cmd);
  await _addToIndex(dir, manifest, tag);
  return { dir, tag, ref: `oci:${dir}:${tag}`, manifest, config, layer, diffId };
}

/**
 * Writes (or adds to) an OCI layout at `dir` with an image index of linux/amd64 and linux/arm64/v8 images. Both
 * carry the same (amd64) layer: the arm64 image only has to be structurally valid, for `copy --all` round trips.
 */
export async function makeMultiArchLayout(dir: string, opts: BusyboxOptions = {}): Promise<LayoutIndex> {
  const tag = opts.tag ?? 'latest';
  await _initLayout(dir);
  const { layer, diffId } = await _writeBusyboxLayer(dir, opts);
  const platforms: Platform[] = [
    { architecture: 'amd64', os: 'linux' },
    { architecture: 'arm64', os: 'linux', variant: 'v8' },
  ];
  const images: Descriptor[] = [];
  for (const platform of platforms) {
    const { manifest } = await _writeImage(dir, layer, diffId, platform, opts.cmd);
    images.push({ ...manifest, platform });
  }
  const doc: ImageIndex = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: images };
  const index = await _writeJsonBlob(dir, OCI_INDEX, doc);
  await _addToIndex(dir, index, tag);
  return { dir, tag, ref: `oci:${dir}:${tag}`, index, images };
}

async function _initLayout(dir: string): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

/** Writes the config and manifest of one platform image whose only layer is `layer`. */
async function _writeImage(dir: string, layer: Descriptor, diffId: Digest, platform: Platform, cmd = DEFAULT_CMD) {
  const configDoc = {
    created: EPOCH.toISOString(),
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: ['PATH=/bin'], Cmd: cmd },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: EPOCH.toISOString(), created_by: 'berth test/oci-layouts.ts' }],
  };
  const config = await _writeJsonBlob(dir, OCI_CONFIG, configDoc);
  const doc: ImageManifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] };
  const manifest = await _writeJsonBlob(dir, OCI_MANIFEST, doc);
  return { manifest, config };
}

/** Points index.json's entry for `tag` at `desc`, keeping other tags (so one layout can hold several images). */
async function _addToIndex(dir: string, desc: Descriptor, tag: string): Promise<void> {
  const path = join(dir, 'index.json');
  let index: ImageIndex = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
  try {
    index = JSON.parse(await readFile(path, 'utf8')) as ImageIndex;
  } catch {
    // a fresh layout
  }
  index.manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
  index.manifests.push({
    mediaType: desc.mediaType,
    digest: desc.digest,
    size: desc.size,
    annotations: { [REF_NAME]: tag },
  });
  await writeFile(path, JSON.stringify(index));
}

async function _writeJsonBlob(dir: string, mediaType: string, doc: unknown): Promise<Descriptor> {
  const bytes = Buffer.from(JSON.stringify(doc));
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
  await writeFile(_blobPath(dir, digest), bytes);
  return { mediaType, digest, size: bytes.length };
}

function _blobPath(dir: string, digest: Digest): string {
  return join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

// ---------------------------------------------------------------------------------------------------------------
// The layer: tar → (hash = diffID) → gzip → (hash = digest) → blob file, streamed

type Entry = { header: Partial<tar.Header> & { name: string }; source?: string; content?: Buffer };

async function _writeBusyboxLayer(dir: string, opts: BusyboxOptions): Promise<{ layer: Descriptor; diffId: Digest }> {
  const busybox = opts.busybox ?? '/bin/busybox';
  const entries = await _busyboxEntries(busybox, opts.files ?? {});
  const tarHash = new _HashTap();
  const gzHash = new _HashTap();
  const tmp = join(dir, 'blobs', 'sha256', `.tmp-${process.pid}-${Date.now()}`);
  const pack = tar.pack();
  const writing = pipeline(pack, tarHash, createGzip({ level: 6 }), gzHash, createWriteStream(tmp));
  await _packEntries(pack, entries);
  await writing;
  const digest = gzHash.digest();
  await rename(tmp, _blobPath(dir, digest));
  return { layer: { mediaType: OCI_LAYER_GZIP, digest, size: gzHash.size }, diffId: tarHash.digest() };
}

/** Sorted, parents first, with fixed owner, mode and mtime — the same bytes on every machine. */
async function _busyboxEntries(busybox: string, files: Record<string, string>): Promise<Entry[]> {
  const fixed = { uid: 0, gid: 0, uname: '', gname: '', mtime: EPOCH };
  const entries: Entry[] = [
    { header: { ...fixed, name: 'bin/', type: 'directory', mode: 0o755 } },
    {
      header: { ...fixed, name: 'bin/busybox', type: 'file', mode: 0o755, size: (await stat(busybox)).size },
      source: busybox,
    },
    { header: { ...fixed, name: 'bin/sh', type: 'symlink', linkname: 'busybox', mode: 0o777 } },
  ];
  const dirs = new Set(['bin/']);
  for (const [path, text] of Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const name = path.replace(/^\/+/, '');
    for (const parent of _parents(name)) {
      if (dirs.has(parent)) continue;
      dirs.add(parent);
      entries.push({ header: { ...fixed, name: parent, type: 'directory', mode: 0o755 } });
    }
    const content = Buffer.from(text);
    entries.push({ header: { ...fixed, name, type: 'file', mode: 0o644, size: content.length }, content });
  }
  return entries;
}

/** `a/b/c` → [`a/`, `a/b/`] */
function _parents(name: string): string[] {
  const parts = name.split('/').slice(0, -1);
  return parts.map((_, i) => `${parts.slice(0, i + 1).join('/')}/`);
}

async function _packEntries(pack: tar.Pack, entries: Entry[]): Promise<void> {
  for (const { header, source, content } of entries) {
    if (source) {
      const sink = pack.entry(header);
      await pipeline(createReadStream(source), sink);
    } else {
      await new Promise<void>((resolve, reject) =>
        pack.entry(header, content ?? '', (e) => (e ? reject(e) : resolve())),
      );
    }
  }
  pack.finalize();
}

/** A pass-through that hashes and counts what flows through it. */
class _HashTap extends Transform {
  private hash = createHash('sha256');
  size = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    done(null, chunk);
  }

  digest(): Digest {
    return `sha256:${this.hash.digest('hex')}` as Digest;
  }
}

/**
 * An OCI layout (image-layout.md) with one image of `layers` layers of `layerBytes` random bytes each (random so
 * every layer is a distinct blob and nothing compresses), tagged `tag`. Written as streams, never held in memory.
 */
export async function makeLayeredLayout(
  dir: string,
  opts: { layers: number; layerBytes: number; tag?: string },
): Promise<{ dir: string; tag: string; bytes: number; layers: { digest: string; size: number }[]; manifest: string }> {
  const tag = opts.tag ?? 'v1';
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (data: Buffer) => {
    const hex = createHash('sha256').update(data).digest('hex');
    await writeFile(join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const layers = [];
  for (let i = 0; i < opts.layers; i++) {
    const tmp = join(blobs, `.layer-${i}`);
    const hash = createHash('sha256');
    const file = createWriteStream(tmp);
    for (let left = opts.layerBytes; left > 0; left -= 1 << 20) {
      const chunk = randomBytes(Math.min(left, 1 << 20));
      hash.update(chunk);
      if (!file.write(chunk)) await new Promise<void>((r) => file.once('drain', () => r()));
    }
    await new Promise<void>((r) => file.end(() => r()));
    const hex = hash.digest('hex');
    await rename(tmp, join(blobs, hex));
    layers.push({
      mediaType: 'application/vnd.oci.image.layer.v1.tar',
      digest: `sha256:${hex}`,
      size: opts.layerBytes,
    });
  }
  const config = await put(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
        config: {},
      }),
    ),
  );
  const manifest = await put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers,
      }),
    ),
  );
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return { dir, tag, bytes: opts.layers * opts.layerBytes, layers, manifest: manifest.digest };
}
