// `berth rebase`: swap an image's base layers for a newer base without rebuilding the layers on top (after
// `crane rebase`). The old base is what the image says it was built FROM — the annotations
// `org.opencontainers.image.base.name` / `.base.digest` (image-spec annotations.md), which `berth build` records —
// or what the caller names. The image must start with exactly the old base's layers; then
//   layers   = new base layers + the image's own layers
//   diff_ids = new base diff_ids + the image's own diff_ids
//   history  = new base history + the image's history after the old base's
// and the rest of the image's config stays. The base annotations are updated to the new base.
import type { Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex, Platform } from '../spec/manifest.js';
import { isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import type { ImageSource, ImageTarget } from './copy.js';
import {
  BASE_DIGEST,
  BASE_NAME,
  MutateError,
  loadImage,
  parseJson,
  rewrite,
  type BlobOrigin,
  type LoadedImage,
  type RewriteResult,
} from './mutate.js';
import type { FetchedManifest } from './remote.js';

/** A base image: where it lives, and the tag or digest to read. */
export interface BaseRef {
  source: ImageSource;
  reference: string;
  /** Recorded as `org.opencontainers.image.base.name` (a reference without digest). */
  name: string;
}

export interface RebaseOptions {
  /** The base the image was built on; default: from its base annotations. */
  oldBase?: BaseRef;
  /** The base to put under it; default: the newest digest of the old base's name (its tag, read now). */
  newBase?: BaseRef;
  /** Opens a base named in an annotation (a registry reference, for the source to read it from). */
  openBase: (name: string) => BaseRef;
  platforms?: Platform[];
}

export interface RebaseResult extends RewriteResult {
  oldBase: { name: string; digest: Digest };
  newBase: { name: string; digest: Digest };
}

/** Rebases `reference` of `src` and writes the result to `dst` under `tag` (empty: by digest only). */
export async function rebase(
  src: ImageSource,
  reference: string,
  dst: ImageTarget,
  tag: string | undefined,
  opts: RebaseOptions,
): Promise<RebaseResult> {
  const root = await src.manifest(reference);
  const rootAnnotations = parseJson<{ annotations?: Record<string, string> }>(root.bytes, 'manifest').annotations ?? {};
  const oldBase = opts.oldBase ?? _fromAnnotations(src.label, rootAnnotations, opts.openBase);
  const newBase = opts.newBase ?? { ...opts.openBase(oldBase.name) };
  if (!opts.newBase && /^sha(256|512):/.test(newBase.reference))
    throw new MutateError(`the old base ${oldBase.name} is pinned by digest; name the new base with --new-base`);
  const oldRoot = await _fetch(oldBase, 'old base');
  const newRoot = await _fetch(newBase, 'new base');
  const annotations = { [BASE_NAME]: newBase.name, [BASE_DIGEST]: newRoot.digest };
  const result = await rewrite(
    src,
    root.digest,
    dst,
    tag,
    async (img) => {
      const before = await _platformImage(oldBase, oldRoot, img.platform, 'old base');
      const after = await _platformImage(newBase, newRoot, img.platform, 'new base');
      return _swap(img, before, after, annotations);
    },
    {
      platforms: opts.platforms,
      indexAnnotations: (a) => (a[BASE_DIGEST] || a[BASE_NAME] ? { ...a, ...annotations } : a),
    },
  );
  return {
    ...result,
    oldBase: { name: oldBase.name, digest: oldRoot.digest },
    newBase: { name: newBase.name, digest: newRoot.digest },
  };
}

function _fromAnnotations(label: string, a: Record<string, string>, open: (name: string) => BaseRef): BaseRef {
  const name = a[BASE_NAME];
  const digest = a[BASE_DIGEST];
  if (!name || !digest)
    throw new MutateError(
      `${label} does not record its base (no ${BASE_NAME}/${BASE_DIGEST} annotations; berth build writes them when it builds FROM a base); name it with --old-base`,
    );
  return { ...open(name), reference: digest };
}

async function _fetch(base: BaseRef, what: string): Promise<FetchedManifest> {
  try {
    return await base.source.manifest(base.reference);
  } catch (e) {
    throw new MutateError(`cannot read the ${what} ${base.name} (${base.reference}): ${(e as Error).message}`);
  }
}

/** The base's image for `platform` (an index is descended; a single image must be that platform). */
async function _platformImage(
  base: BaseRef,
  root: FetchedManifest,
  platform: Platform,
  what: string,
): Promise<LoadedImage> {
  let m = root;
  if (isIndexType(root.mediaType)) {
    const index = parseJson<ImageIndex>(root.bytes, `${what} index`);
    const hit = index.manifests.find((d: Descriptor) => platformMatches(d.platform, platform));
    if (!hit)
      throw new MutateError(`the ${what} ${base.name} has no ${formatPlatform(platform)} image to rebase this one on`);
    m = await base.source.manifest(hit.digest);
  }
  const img = await loadImage(base.source, m);
  if (img.platform.os !== platform.os || img.platform.architecture !== platform.architecture)
    throw new MutateError(
      `the ${what} ${base.name} is ${formatPlatform(img.platform)}, the image is ${formatPlatform(platform)}`,
    );
  return img;
}

function _swap(img: LoadedImage, before: LoadedImage, after: LoadedImage, annotations: Record<string, string>) {
  const n = before.doc.layers.length;
  for (let i = 0; i < n; i++) {
    const have = img.doc.layers[i]?.digest;
    if (have !== before.doc.layers[i].digest)
      throw new MutateError(
        `${img.source.label}@${img.manifest.digest} does not start with the layers of the old base ${before.source.label}@${before.manifest.digest} ` +
          `(layer ${i} is ${have ?? 'missing'}, the base has ${before.doc.layers[i].digest}); name the base it was built on with --old-base`,
      );
  }
  const oldHistory = before.config.history ?? [];
  const history = img.config.history ?? [];
  const config = structuredClone(img.config);
  config.rootfs = {
    type: 'layers',
    diff_ids: [...after.config.rootfs.diff_ids, ...img.config.rootfs.diff_ids.slice(n)],
  };
  if (history.length || after.config.history?.length)
    config.history = [...(after.config.history ?? []), ...history.slice(Math.min(oldHistory.length, history.length))];
  const doc = structuredClone(img.doc);
  doc.layers = [...after.doc.layers, ...img.doc.layers.slice(n)];
  const isOci = img.manifest.mediaType !== 'application/vnd.docker.distribution.manifest.v2+json';
  if (isOci) doc.annotations = { ...(doc.annotations ?? {}), ...annotations };
  const origins = new Map<Digest, BlobOrigin>();
  for (const l of after.doc.layers) origins.set(l.digest, after.source);
  return { doc, config, origins };
}
