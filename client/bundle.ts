// Air-gapped bundles: many images (with their referrers) in one OCI image layout — a directory, or that directory
// packed into a tar — to carry into a network that cannot reach the source registry, and load there.
//
//   index.json    one entry per image, `org.opencontainers.image.ref.name: <repository>:<tag>` (image-layout.md
//                 allows a full reference there; skopeo reads it as oci:DIR:<repository>:<tag>), plus one untagged
//                 entry per referrer (signature, SBOM), as client/layout.ts lists them;
//                 `dev.berth.bundle.since`: the digest of the previous bundle's index.json when incremental.
//   blobs/…       every blob the images need — except, in an incremental bundle, those the previous bundle had.
//
// Both ways every digest is checked: writing hashes each blob as it lands (layout.ts), loading first re-hashes every
// blob in the bundle (a damaged bundle stores nothing), then the registry verifies each upload again.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import pLimit from 'p-limit';
import tar from 'tar-stream';
import type { Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex, Platform } from '../spec/manifest.js';
import { isValidName, isValidTag } from '../spec/reference.js';
import { copy, type CopyResult, type ImageSource, type ImageTarget } from './copy.js';
import { OciLayout, REF_NAME } from './layout.js';
import { packTar, unpackTar } from './transports.js';

export const SINCE = 'dev.berth.bundle.since';

export class BundleError extends Error {}

export interface BundleImage {
  source: ImageSource;
  /** What to ask the source for (tag or digest). */
  reference: string;
  /** Where it goes: repository and tag (the loader adds the target registry and an optional prefix). */
  repository: string;
  tag: string;
}

export interface BundleOptions {
  /** A previous bundle (directory or tar): blobs it holds are left out of this one. */
  since?: string;
  platforms?: Platform[];
  referrers?: boolean;
  concurrency?: number;
  onImage?: (image: string, r: CopyResult | Error) => void;
}

export interface BundleResult {
  images: number;
  failed: number;
  blobs: { written: number; skipped: number };
  bytes: number;
  referrers: number;
  errors: string[];
}

/** Writes `images` into a new bundle at `out` (a directory, or a tar when `out` ends in `.tar`). */
export async function createBundle(
  out: string,
  images: BundleImage[],
  opts: BundleOptions = {},
): Promise<BundleResult> {
  const asTar = out.endsWith('.tar');
  if (await _exists(asTar ? out : join(out, 'index.json')))
    throw new BundleError(`${out} exists already; name a new ${asTar ? 'file' : 'directory'} for the bundle`);
  for (const i of images)
    if (!isValidName(i.repository) || !isValidTag(i.tag))
      throw new BundleError(`"${i.repository}:${i.tag}" is not a valid repository:tag`);
  const previous = opts.since ? await _previous(opts.since) : undefined;
  const dir = asTar ? await mkdtemp(join(dirname(out), '.berth-bundle-')) : out;
  try {
    const layout = await OciLayout.create(dir);
    const result = _emptyResult();
    const target = _skipping(layout, previous?.blobs, result);
    const roots: Descriptor[] = [];
    for (const img of images) {
      const name = `${img.repository}:${img.tag}`;
      try {
        // By digest: the layout lists it untagged; the named entry is written below, once per repository:tag.
        const r = await copy(img.source, img.reference, target, '', {
          platforms: opts.platforms,
          referrers: opts.referrers ?? true,
          concurrency: opts.concurrency,
        });
        roots.push({ mediaType: r.mediaType, digest: r.digest, size: r.size, annotations: { [REF_NAME]: name } });
        result.images++;
        result.bytes += r.blobs.bytes;
        result.referrers += r.referrers;
        opts.onImage?.(name, r);
      } catch (e) {
        result.failed++;
        result.errors.push(`${name}: ${(e as Error).message}`);
        opts.onImage?.(name, e as Error);
      }
    }
    const index = await layout.index();
    const rootDigests = new Set(roots.map((d) => d.digest));
    // Untagged root entries give way to the named ones; referrer entries stay.
    index.manifests = [...roots, ...index.manifests.filter((d) => !rootDigests.has(d.digest))];
    if (previous) index.annotations = { ...index.annotations, [SINCE]: previous.index };
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));
    if (asTar) await packTar(dir, out);
    return result;
  } finally {
    if (asTar) await rm(dir, { recursive: true, force: true });
  }
}

/** A layout target that does not write blobs the previous bundle holds (and counts what it does). */
function _skipping(layout: OciLayout, skip: Set<string> | undefined, result: BundleResult): ImageTarget {
  return {
    label: layout.label,
    verifiesBlobs: true,
    resolve: (reference, o) => layout.resolve(reference, o),
    async pushBlob(d, source, o) {
      if (skip?.has(d.digest)) {
        result.blobs.skipped++;
        return 'exists';
      }
      const how = await layout.pushBlob(d, source, o);
      if (how === 'uploaded') result.blobs.written++;
      return how;
    },
    putManifest: (reference, m, o) => layout.putManifest(reference, m, o),
  };
}

/** The blob digests and the index.json digest of a previous bundle (a directory or a tar; a tar is only listed). */
async function _previous(path: string): Promise<{ blobs: Set<string>; index: Digest }> {
  const blobs = new Set<string>();
  let index: Digest | undefined;
  const note = (name: string) => {
    const m = /^blobs\/(sha256|sha512)\/([0-9a-f]+)$/.exec(name);
    if (m) blobs.add(`${m[1]}:${m[2]}`);
  };
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new BundleError(`--since ${path}: no such bundle`);
  if (info.isDirectory()) {
    for (const alg of await readdir(join(path, 'blobs')).catch(() => []))
      for (const hex of await readdir(join(path, 'blobs', alg))) note(`blobs/${alg}/${hex}`);
    index = _sha256(await readFile(join(path, 'index.json')).catch(() => Buffer.alloc(0)));
  } else {
    const ex = tar.extract();
    const feed = pipeline(createReadStream(path), ex as unknown as NodeJS.WritableStream);
    feed.catch(() => {});
    for await (const entry of ex) {
      const name = entry.header.name.replace(/^\.\//, '');
      if (name === 'index.json') {
        const chunks: Buffer[] = [];
        for await (const c of entry) chunks.push(c as Buffer);
        index = _sha256(Buffer.concat(chunks));
      } else {
        note(name);
        entry.resume();
      }
    }
    await feed;
  }
  if (!index || !blobs.size) throw new BundleError(`--since ${path}: not a bundle (no index.json or no blobs)`);
  return { blobs, index };
}

// ---- loading --------------------------------------------------------------------------------------------------

export interface LoadedImage {
  repository: string;
  tag: string;
  digest: Digest;
}

export interface OpenedBundle {
  layout: OciLayout;
  images: LoadedImage[];
  /** The previous bundle this one builds on (its index.json digest), when incremental. */
  since?: Digest;
  close(): Promise<void>;
}

/** Opens a bundle (directory or tar, unpacked beside it) and re-hashes every blob in it. */
export async function openBundle(path: string, opts: { concurrency?: number } = {}): Promise<OpenedBundle> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new BundleError(`${path}: no such bundle`);
  let dir = path;
  let temp: string | undefined;
  if (!info.isDirectory()) {
    temp = await mkdtemp(join(dirname(path), '.berth-bundle-'));
    dir = temp;
  }
  const close = async () => {
    if (temp) await rm(temp, { recursive: true, force: true });
  };
  try {
    if (temp) await unpackTar(path, temp);
    await verifyBlobs(dir, opts.concurrency ?? 2);
    const layout = await OciLayout.open(dir);
    const index = await layout.index();
    const images: LoadedImage[] = [];
    for (const d of index.manifests) {
      const name = d.annotations?.[REF_NAME];
      if (!name) continue; // a referrer: it travels with its subject
      const i = name.lastIndexOf(':');
      const repository = name.slice(0, i);
      const tag = name.slice(i + 1);
      if (i <= 0 || !isValidName(repository) || !isValidTag(tag))
        throw new BundleError(`${path}: entry "${name}" is not <repository>:<tag>; was this bundle written by berth?`);
      images.push({ repository, tag, digest: d.digest });
    }
    return { layout, images, since: (index as ImageIndex).annotations?.[SINCE] as Digest | undefined, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Re-hashes every file under blobs/ against its name; throws naming the first that does not match. */
export async function verifyBlobs(dir: string, concurrency = 2): Promise<{ blobs: number; bytes: number }> {
  const files: Array<{ alg: string; hex: string }> = [];
  for (const alg of await readdir(join(dir, 'blobs')).catch(() => [])) {
    if (alg !== 'sha256' && alg !== 'sha512') throw new BundleError(`${dir}/blobs/${alg}: unknown digest algorithm`);
    for (const hex of await readdir(join(dir, 'blobs', alg))) files.push({ alg, hex });
  }
  let bytes = 0;
  const limit = pLimit(concurrency);
  await Promise.all(
    files.map((f) =>
      limit(async () => {
        const h = createHash(f.alg);
        const file = join(dir, 'blobs', f.alg, f.hex);
        for await (const c of createReadStream(file, { highWaterMark: 1 << 20 })) {
          h.update(c as Buffer);
          bytes += (c as Buffer).length;
        }
        if (h.digest('hex') !== f.hex)
          throw new BundleError(
            `blob ${f.alg}:${f.hex} in the bundle does not match its digest; the bundle is damaged`,
          );
      }),
    ),
  );
  return { blobs: files.length, bytes };
}

/** Loads every image of an opened bundle into the targets `target(repository)` names. */
export async function loadBundle(
  bundle: OpenedBundle,
  target: (repository: string) => ImageTarget,
  opts: { concurrency?: number; onImage?: (image: string, r: CopyResult | Error) => void } = {},
): Promise<BundleResult> {
  const result = _emptyResult();
  const source = _explainMissing(bundle);
  for (const img of bundle.images) {
    const name = `${img.repository}:${img.tag}`;
    try {
      const r = await copy(source, img.digest, target(img.repository), img.tag, {
        referrers: true,
        concurrency: opts.concurrency,
      });
      result.images++;
      result.blobs.written += r.blobs.uploaded + r.blobs.mounted;
      result.blobs.skipped += r.blobs.existed;
      result.bytes += r.blobs.bytes;
      result.referrers += r.referrers;
      opts.onImage?.(name, r);
    } catch (e) {
      result.failed++;
      result.errors.push(`${name}: ${(e as Error).message}`);
      opts.onImage?.(name, e as Error);
    }
  }
  return result;
}

/** The layout as a source whose missing blobs (left out of an incremental bundle) fail with what to do. */
function _explainMissing(bundle: OpenedBundle): ImageSource {
  const layout = bundle.layout;
  return {
    label: layout.label,
    manifest: (reference) => layout.manifest(reference),
    referrers: (digest) => layout.referrers(digest),
    async blob(d, offset, o) {
      if (!(await _exists(layout.blobPath(d.digest))))
        throw new BundleError(
          `blob ${d.digest} is not in this bundle${bundle.since ? ` (it is incremental: it builds on the bundle whose index.json is ${bundle.since})` : ''} and the registry does not have it; load the previous bundle first`,
        );
      return layout.blob(d, offset, o);
    },
  };
}

function _sha256(b: Buffer): Digest {
  return `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;
}

async function _exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

function _emptyResult(): BundleResult {
  return { images: 0, failed: 0, blobs: { written: 0, skipped: 0 }, bytes: 0, referrers: 0, errors: [] };
}
