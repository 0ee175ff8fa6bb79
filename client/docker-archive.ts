// The docker-archive medium: the tar `docker save` writes and `docker load` reads — `manifest.json`
// ([{Config, RepoTags, Layers}]), the config JSON and one file per layer (plain tar, or gzip/zstd: docker load
// decompresses). Reading indexes the tar once and then reads entries in place (no extraction, no buffering);
// writing streams blobs straight into the tar. Lives in client/ for the same reason as layout.ts.
// Format: moby image/spec/v1.2.md "Combined Image JSON + Filesystem Changeset Format" and image/tarexport.
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { Digester, digestOf, parseDigest, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageManifest } from '../spec/manifest.js';
import {
  DOCKER_CONFIG,
  DOCKER_LAYER_GZIP,
  DOCKER_MANIFEST,
  OCI_CONFIG,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_LAYER_ZSTD,
  OCI_MANIFEST,
  isIndexType,
} from '../spec/media-types.js';
import type { ImageSource } from './copy.js';
import type { FetchedManifest } from './remote.js';
import { tempBeside } from './temp.js';
import { VerifyStream, countBytes, verifyBytes } from './verify.js';

export const DOCKER_LAYER_PLAIN = 'application/vnd.docker.image.rootfs.diff.tar';

export class ArchiveError extends Error {}

interface Entry {
  offset: number;
  size: number;
}

/** Lists a tar's regular files with their data offsets: reads only headers (ustar, pax `path`, GNU long names). */
export async function indexTar(file: string): Promise<Map<string, Entry>> {
  const fh = await open(file, 'r');
  const entries = new Map<string, Entry>();
  try {
    const { size: total } = await fh.stat();
    const block = Buffer.alloc(512);
    let pos = 0;
    let longName: string | undefined;
    while (pos + 512 <= total) {
      await fh.read(block, 0, 512, pos);
      if (block.every((b) => b === 0)) break;
      if (pos === 0 && block[0] === 0x1f && block[1] === 0x8b)
        throw new ArchiveError(
          `${file} is gzip-compressed; decompress it first (gunzip) — docker-archive files are plain tar`,
        );
      const cksum = _octal(block.subarray(148, 156));
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : block[i];
      if (cksum !== sum) throw new ArchiveError(`${file} is not a tar archive (bad header checksum at byte ${pos})`);
      const type = String.fromCharCode(block[156] || 48);
      const size = _size(block.subarray(124, 136));
      const data = pos + 512;
      const prefix = _str(block.subarray(345, 500));
      let name =
        longName ??
        (prefix && block.subarray(257, 262).toString() === 'ustar'
          ? `${prefix}/${_str(block.subarray(0, 100))}`
          : _str(block.subarray(0, 100)));
      longName = undefined;
      if (type === 'L' || type === 'x') {
        const body = Buffer.alloc(size);
        await fh.read(body, 0, size, data);
        if (type === 'L') longName = _str(body);
        else longName = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString('utf8'))?.[1];
      } else if (type === '0' || type === '7') {
        name = name.replace(/^\.\//, '');
        entries.set(name, { offset: data, size });
      }
      pos = data + Math.ceil(size / 512) * 512;
    }
  } finally {
    await fh.close();
  }
  return entries;
}

function _str(b: Buffer): string {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('utf8');
}
function _octal(b: Buffer): number {
  return parseInt(_str(b).trim() || '0', 8);
}
function _size(b: Buffer): number {
  if (b[0] & 0x80) {
    // GNU base-256 for entries ≥ 8 GiB.
    let n = 0;
    for (let i = 1; i < b.length; i++) n = n * 256 + b[i];
    return n;
  }
  return _octal(b);
}

interface ArchiveImage {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/** A docker-archive as an ImageSource: each image's registry manifest is synthesised from its files. */
export class DockerArchive implements ImageSource {
  readonly label: string;
  private blobs = new Map<string, Entry>();
  private built = new Map<string, FetchedManifest>();

  private constructor(
    readonly file: string,
    private readonly entries: Map<string, Entry>,
    readonly images: ArchiveImage[],
  ) {
    this.label = `docker-archive:${file}`;
  }

  static async open(file: string): Promise<DockerArchive> {
    let entries: Map<string, Entry>;
    try {
      entries = await indexTar(file);
    } catch (e) {
      if (e instanceof ArchiveError) throw e;
      throw new ArchiveError(`cannot read ${file}: ${(e as Error).message}`);
    }
    const m = entries.get('manifest.json');
    if (!m) throw new ArchiveError(`${file} has no manifest.json; is it a docker save archive?`);
    const images = JSON.parse((await _read(file, m)).toString('utf8'));
    if (!Array.isArray(images) || !images.length) throw new ArchiveError(`${file}: manifest.json lists no images`);
    return new DockerArchive(file, entries, images);
  }

  private _entry(name: string): Entry {
    const e = this.entries.get(name.replace(/^\.\//, ''));
    if (!e) throw new ArchiveError(`${this.file} lacks ${name}, which manifest.json refers to`);
    return e;
  }

  /** The image named by a RepoTag (`repo:tag`, with or without host), a manifest digest, or — empty — the only one. */
  async manifest(reference: string): Promise<FetchedManifest> {
    if (reference.includes(':') && /^sha(256|512):/.test(reference)) {
      const hit = this.built.get(reference);
      if (hit) return hit;
    }
    let img: ArchiveImage | undefined;
    if (!reference) {
      if (this.images.length !== 1)
        throw new ArchiveError(
          `${this.file} holds ${this.images.length} images; name one (${this.images.flatMap((i) => i.RepoTags ?? []).join(', ')})`,
        );
      img = this.images[0];
    } else {
      img = this.images.find((i) =>
        (i.RepoTags ?? []).some(
          (t) => t === reference || t.endsWith(`/${reference}`) || t.split(':').pop() === reference,
        ),
      );
      if (!img) {
        for (const i of this.images) {
          const m = await this._build(i);
          if (m.digest === reference) return m;
        }
        throw new ArchiveError(
          `${this.file} has no image "${reference}"; it has ${this.images.flatMap((i) => i.RepoTags ?? []).join(', ') || 'untagged images'}`,
        );
      }
    }
    return this._build(img);
  }

  private async _build(img: ArchiveImage): Promise<FetchedManifest> {
    const configEntry = this._entry(img.Config);
    const config = await _read(this.file, configEntry);
    const configDigest = digestOf(config);
    this.blobs.set(configDigest, configEntry);
    let diffIds: string[] = [];
    try {
      diffIds = JSON.parse(config.toString('utf8'))?.rootfs?.diff_ids ?? [];
    } catch {
      throw new ArchiveError(`${this.file}: ${img.Config} is not valid JSON`);
    }
    const layers: Descriptor[] = [];
    let oci = false;
    for (const [i, name] of img.Layers.entries()) {
      const e = this._entry(name);
      const kind = await _sniff(this.file, e);
      let digest: Digest;
      const named = /(?:^|\/)(sha256)[/:]([a-f0-9]{64})$/.exec(name) ?? /^blobs\/(sha256)\/([a-f0-9]{64})$/.exec(name);
      if (named) digest = `${named[1]}:${named[2]}` as Digest;
      else if (kind === 'tar' && diffIds[i])
        digest = parseDigest(diffIds[i]).digest; // plain layer: its digest is the diff_id
      else digest = await _hash(this.file, e);
      if (kind === 'zstd') oci = true;
      this.blobs.set(digest, e);
      layers.push({ mediaType: kind, digest, size: e.size });
    }
    const types = oci
      ? { tar: OCI_LAYER, gzip: OCI_LAYER_GZIP, zstd: OCI_LAYER_ZSTD }
      : { tar: DOCKER_LAYER_PLAIN, gzip: DOCKER_LAYER_GZIP, zstd: OCI_LAYER_ZSTD };
    const doc: ImageManifest = {
      schemaVersion: 2,
      mediaType: oci ? OCI_MANIFEST : DOCKER_MANIFEST,
      config: { mediaType: oci ? OCI_CONFIG : DOCKER_CONFIG, size: config.length, digest: configDigest },
      layers: layers.map((l) => ({ mediaType: types[l.mediaType as 'tar'], size: l.size, digest: l.digest })),
    };
    const bytes = Buffer.from(JSON.stringify(doc, null, 2));
    const m: FetchedManifest = { bytes, mediaType: doc.mediaType!, digest: digestOf(bytes) };
    this.built.set(m.digest, m);
    return m;
  }

  blob(desc: Descriptor, offset: number, opts: { verify?: boolean } = {}): Readable {
    const e = this.blobs.get(desc.digest);
    if (!e) throw new ArchiveError(`${this.file} has no blob ${desc.digest}`);
    const s = createReadStream(this.file, {
      start: e.offset + offset,
      end: e.offset + e.size - 1,
      highWaterMark: 1 << 20,
    });
    if (offset > 0 || opts.verify === false) return s;
    const v = new VerifyStream(desc.digest, desc.size, `${desc.digest} in ${this.file}`);
    s.on('error', (err) => v.destroy(err));
    return s.pipe(v);
  }
}

async function _read(file: string, e: Entry): Promise<Buffer> {
  if (e.size > 64 << 20) throw new ArchiveError(`${file}: metadata entry is too large (${e.size} bytes)`);
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(e.size);
    await fh.read(b, 0, e.size, e.offset);
    return b;
  } finally {
    await fh.close();
  }
}

async function _sniff(file: string, e: Entry): Promise<'tar' | 'gzip' | 'zstd'> {
  const head = await _read(file, { offset: e.offset, size: Math.min(4, e.size) });
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'tar';
}

async function _hash(file: string, e: Entry): Promise<Digest> {
  const d = new Digester();
  for await (const c of createReadStream(file, { start: e.offset, end: e.offset + e.size - 1, highWaterMark: 1 << 20 }))
    d.update(c as Buffer);
  return d.digest();
}

/**
 * Writes one image (an image manifest, not an index: pick a platform first) as a docker-archive that
 * `docker load` accepts. Blobs stream from `src` into the tar; the file appears only when complete.
 */
export async function writeDockerArchive(
  file: string,
  src: ImageSource,
  m: FetchedManifest,
  repoTags: string[],
  opts: {
    onBytes?: (d: Digest, n: number) => void;
    /** The source's blobs were hashed as this process stored them (a staging layout): no second hash. */
    verified?: boolean;
  } = {},
): Promise<void> {
  if (isIndexType(m.mediaType))
    throw new ArchiveError('a docker-archive holds single-platform images; pick one with --platform');
  verifyBytes(m.bytes, m.digest);
  const doc = JSON.parse(m.bytes.toString('utf8')) as ImageManifest;
  const pack = tar.pack();
  const { tmp, done: untrack } = tempBeside(file);
  const done = pipeline(pack, createWriteStream(tmp));
  const mtime = new Date(0); // reproducible archives
  const hex = (d: Digest) => parseDigest(d).encoded;
  const add = async (name: string, desc: Descriptor) => {
    const entry = pack.entry({ name, size: desc.size, mode: 0o644, mtime });
    let s = await src.blob(desc, 0, { verify: !opts.verified });
    if (opts.onBytes) s = countBytes(s, (n) => opts.onBytes!(desc.digest, n));
    await pipeline(s, entry);
  };
  try {
    const configName = `${hex(doc.config.digest)}.json`;
    await add(configName, doc.config);
    const names: string[] = [];
    for (const l of doc.layers) {
      const name = `${hex(l.digest)}.tar`;
      if (!names.includes(name)) await add(name, l);
      names.push(name);
    }
    const manifest = [{ Config: configName, RepoTags: repoTags, Layers: names }];
    pack.entry({ name: 'manifest.json', mode: 0o644, mtime }, JSON.stringify(manifest));
    pack.finalize();
    await done;
    await rename(tmp, file);
  } catch (e) {
    pack.destroy(e as Error);
    await done.catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  } finally {
    untrack();
  }
}
