// `berth append`: one new layer on top of an existing image (or every platform of an index), like `crane append`.
// The layer comes from
//   - a tarball, used as it is: a gzip or zstd archive is the layer blob byte for byte (compression kept, unless
//     another is asked for); a plain tar is compressed with the pinned settings of compress.ts;
//   - a directory, made into a layer reproducibly by the builder's own pipeline (plan.ts + layers.ts): sorted
//     members, owner 0:0, modes 0644/0755 from the executable bit, times at the epoch (SOURCE_DATE_EPOCH) — the
//     same directory gives the same layer digest on any machine.
// The layer is staged in a temp directory (never held in memory), then client/mutate.ts writes the image:
// diff_ids and history grow by one entry, existing layers are not re-uploaded.
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Digester, type Digest } from '../spec/digest.js';
import type { Compression } from '../spec/build-spec.js';
import type { Descriptor } from '../spec/manifest.js';
import { DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_LAYER_GZIP, OCI_LAYER_ZSTD } from '../spec/media-types.js';
import type { ImageSource, ImageTarget } from '../client/copy.js';
import { MutateError, rewrite, type RewriteOptions, type RewriteResult } from '../client/mutate.js';
import { BlobDir } from './blobs.js';
import { compressor, decompressor } from './compress.js';
import { Context, ContextError } from './context.js';
import { epochTime } from './image.js';
import { buildLayer } from './layers.js';
import { planLayer } from './plan.js';
import { BuildOptionError, BuildSpecError, type LoadedSpec } from './spec.js';

export interface NewLayer {
  /** OCI media type (gzip or zstd); written as Docker's gzip type into a Docker schema 2 manifest. */
  mediaType: string;
  digest: Digest;
  size: number;
  diffId: Digest;
  /** The staged blob. */
  path: string;
  compression: Compression;
}

export interface LayerInput {
  /** A tar, tar.gz or tar.zst file. */
  tarball?: string;
  /** A directory whose contents become the layer's root. */
  dir?: string;
  /** Default: the tarball's own compression, else gzip. */
  compression?: Compression;
  /** Seconds since 1970 for a directory's member times (SOURCE_DATE_EPOCH); default 0. */
  epoch?: number;
}

/** Makes the layer `input` describes under `staging` (a directory the caller removes). */
export async function makeLayer(input: LayerInput, staging: string): Promise<NewLayer> {
  if (!!input.tarball === !!input.dir) throw new MutateError('give exactly one of a tarball or a directory');
  const blobs = new BlobDir(join(staging, 'blobs'));
  if (input.dir) return _fromDir(resolve(input.dir), input, blobs);
  return _fromTarball(resolve(input.tarball!), input, blobs);
}

async function _fromDir(dir: string, input: LayerInput, blobs: BlobDir): Promise<NewLayer> {
  const compression = input.compression ?? 'gzip';
  let ctx: Context;
  try {
    ctx = await Context.open(dir);
  } catch (e) {
    throw new MutateError(`directory ${dir}: ${(e as Error).message}`);
  }
  // The directory as a one-entry build spec: everything in it, placed at the image root.
  const loaded: LoadedSpec = {
    spec: { apiVersion: 'berth/v1', kind: 'Image', layers: [{ name: 'append', files: [{ src: '.', dest: '/' }] }] },
    file: dir,
    error: (_path, message) => new BuildSpecError(`directory ${dir}: ${message}`),
  };
  let plan: Awaited<ReturnType<typeof planLayer>>;
  try {
    plan = await planLayer(loaded, 0, { os: 'linux', architecture: 'amd64' }, ctx);
  } catch (e) {
    if (e instanceof ContextError) throw new MutateError(`directory ${dir}: ${e.message}`);
    throw e;
  }
  if (!plan.members.length) throw new MutateError(`directory ${dir} is empty; an empty layer is not appended`);
  const built = await buildLayer(plan, { epoch: input.epoch ?? 0, compression, blobs });
  const d = built.layer.descriptor;
  return { ...d, diffId: built.layer.diffId, path: blobs.path(d.digest), compression };
}

async function _fromTarball(file: string, input: LayerInput, blobs: BlobDir): Promise<NewLayer> {
  const format = await _format(file);
  const want: Compression = input.compression ?? (format === 'tar' ? 'gzip' : format);
  if (format === want) {
    // Already compressed as wanted: the file is the blob; only the diffID needs a pass through the decompressor.
    const blob = new Digester();
    const diff = new Digester();
    await Promise.all([
      pipeline(createReadStream(file), _hashInto(blob)),
      decompressor(want).then((d) => pipeline(createReadStream(file), d, _hashInto(diff))),
    ]).catch((e) => {
      throw new MutateError(`${file} is not a readable ${want}-compressed tar: ${(e as Error).message}`);
    });
    return {
      mediaType: _oci(want),
      digest: blob.digest(),
      size: blob.size,
      diffId: diff.digest(),
      path: file,
      compression: want,
    };
  }
  const tmp = await blobs.staging();
  const blob = new Digester();
  const diff = new Digester();
  const decode = format === 'tar' ? [] : [await decompressor(format)];
  const encode = await compressor(want);
  try {
    await pipeline([
      createReadStream(file),
      ...decode,
      _tap(diff),
      ...encode,
      _tap(blob),
      createWriteStream(tmp),
    ] as unknown as [NodeJS.ReadableStream, NodeJS.WritableStream]);
  } catch (e) {
    throw new MutateError(`cannot read ${file} as a tar: ${(e as Error).message}`);
  }
  const digest = blob.digest();
  const path = blobs.path(digest);
  await rename(tmp, path);
  return { mediaType: _oci(want), digest, size: blob.size, diffId: diff.digest(), path, compression: want };
}

function _oci(c: Compression): string {
  return c === 'gzip' ? OCI_LAYER_GZIP : OCI_LAYER_ZSTD;
}

async function _format(file: string): Promise<'tar' | Compression> {
  let head = Buffer.alloc(0);
  try {
    if (!(await stat(file)).isFile()) throw new Error('not a regular file');
    const fh = await open(file, 'r');
    try {
      const { buffer, bytesRead } = await fh.read(Buffer.alloc(512), 0, 512, 0);
      head = buffer.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw new MutateError(`tarball ${file}: ${(e as Error).message}`);
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  // POSIX ustar / GNU tar: "ustar" at offset 257 (an empty archive is 1024 zero bytes and is refused too).
  if (head.length === 512 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
  throw new MutateError(`tarball ${file} is not a tar, tar.gz or tar.zst archive`);
}

export interface AppendOptions extends RewriteOptions {
  /** `created_by` of the new history entry. */
  createdBy?: string;
  epoch?: number;
}

/** Appends `layer` to `reference` of `src` and writes the result to `dst` under `tag` (empty: by digest only). */
export function appendLayer(
  src: ImageSource,
  reference: string,
  dst: ImageTarget,
  tag: string | undefined,
  layer: NewLayer,
  opts: AppendOptions = {},
): Promise<RewriteResult> {
  const created = epochTime(opts.epoch ?? 0);
  return rewrite(
    src,
    reference,
    dst,
    tag,
    (img) => {
      const docker = img.manifest.mediaType === DOCKER_MANIFEST;
      if (docker && layer.compression !== 'gzip')
        throw new BuildOptionError(
          'compression',
          `${src.label} is a Docker schema 2 image, whose layers are gzip; append a gzip layer`,
        );
      const desc: Descriptor = {
        mediaType: docker ? DOCKER_LAYER_GZIP : layer.mediaType,
        digest: layer.digest,
        size: layer.size,
      };
      const doc = structuredClone(img.doc);
      doc.layers = [...doc.layers, desc];
      const config = structuredClone(img.config);
      config.rootfs = { type: 'layers', diff_ids: [...config.rootfs.diff_ids, layer.diffId] };
      config.history = [
        ...(config.history ?? []),
        { created, created_by: opts.createdBy ?? 'berth append', comment: 'berth' },
      ];
      const origin = {
        open: (offset: number) => createReadStream(layer.path, { start: offset, highWaterMark: 1 << 20 }),
      };
      return { doc, config, origins: new Map([[layer.digest, origin]]) };
    },
    opts,
  );
}

function _tap(d: Digester): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      d.update(chunk);
      cb(null, chunk);
    },
  });
}

function _hashInto(d: Digester): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      d.update(chunk);
      cb();
    },
  });
}
