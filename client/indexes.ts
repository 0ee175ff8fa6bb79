// Making and amending multi-platform indexes from per-platform images (`berth index create|add|remove`), like
// `docker buildx imagetools create` and `crane index append`: each entry's platform is read from its image config
// (image-spec image-index.md: `platform` describes the image's config), an index source contributes its platform
// images, and every child is copied into the target repository first (mounted when it lives on the same registry),
// so the index is written last and never names a manifest the repository lacks.
import { digestOf, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex } from '../spec/manifest.js';
import { OCI_INDEX, isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import type { Platform } from '../spec/manifest.js';
import { copy, type ImageSource, type ImageTarget } from './copy.js';
import { MutateError, loadImage, parseJson } from './mutate.js';
import type { FetchedManifest } from './remote.js';

export interface IndexInput {
  source: ImageSource;
  /** Tag or digest in that source. */
  reference: string;
}

export interface IndexEdit {
  /** The index to amend (its entries are kept unless replaced or removed); none = a new index. */
  base?: FetchedManifest;
  /** Images (or indexes, for all their platforms) to list; an entry replaces one of the same platform. */
  add?: IndexInput[];
  /** Entries to drop, by platform or by digest; each must match one. */
  removePlatforms?: Platform[];
  removeDigests?: Digest[];
  /** Annotations set on the index itself. */
  annotations?: Record<string, string>;
  concurrency?: number;
}

export interface IndexResult {
  digest: Digest;
  mediaType: string;
  size: number;
  manifests: { platform: string; digest: Digest }[];
  blobs: { uploaded: number; mounted: number; existed: number };
}

/** The platform descriptors `reference` contributes: the image with its config's platform, or an index's images. */
export async function indexEntries(input: IndexInput): Promise<Descriptor[]> {
  const m = await input.source.manifest(input.reference);
  if (isIndexType(m.mediaType)) {
    const idx = parseJson<ImageIndex>(m.bytes, `index ${m.digest}`);
    const list = idx.manifests.filter((d) => d.platform && d.platform.os !== 'unknown' && !isIndexType(d.mediaType));
    if (!list.length)
      throw new MutateError(`${input.source.label}:${input.reference} is an index with no platform images`);
    return list.map((d) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size, platform: d.platform }));
  }
  const img = await loadImage(input.source, m);
  return [{ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, platform: img.platform }];
}

/** Writes the index `edit` describes to `dst` under `tag` (or by digest only when `tag` is empty). */
export async function writeIndex(dst: ImageTarget, tag: string | undefined, edit: IndexEdit): Promise<IndexResult> {
  const stats = { uploaded: 0, mounted: 0, existed: 0 };
  const base = edit.base ? parseJson<ImageIndex>(edit.base.bytes, 'index') : undefined;
  if (edit.base && !isIndexType(edit.base.mediaType))
    throw new MutateError(`the reference to amend is an image, not an index; use \`berth index create\``);
  let manifests: Descriptor[] = [...(base?.manifests ?? [])];
  for (const p of edit.removePlatforms ?? []) {
    if (!manifests.some((d) => platformMatches(d.platform, p)))
      throw new MutateError(`the index has no ${formatPlatform(p)} entry to remove; it has ${_platforms(manifests)}`);
    manifests = manifests.filter((d) => !platformMatches(d.platform, p));
  }
  for (const digest of edit.removeDigests ?? []) {
    if (!manifests.some((d) => d.digest === digest)) throw new MutateError(`the index has no entry ${digest}`);
    manifests = manifests.filter((d) => d.digest !== digest);
  }
  const added: { desc: Descriptor; input: IndexInput }[] = [];
  for (const input of edit.add ?? []) {
    for (const desc of await indexEntries(input)) {
      const twin = added.find((a) => _samePlatform(a.desc.platform!, desc.platform!));
      if (twin && twin.desc.digest !== desc.digest)
        throw new MutateError(
          `two images for ${formatPlatform(desc.platform!)}: ${twin.input.source.label}:${twin.input.reference} and ${input.source.label}:${input.reference}; list one image per platform`,
        );
      if (!twin) added.push({ desc, input });
    }
  }
  // Children first: the registry refuses (or a later GC would break) an index that names missing manifests.
  const limit = Math.max(1, edit.concurrency ?? 4);
  for (const { desc, input } of added) {
    if ((await dst.resolve(desc.digest)) === desc.digest) continue;
    const r = await copy(input.source, desc.digest, dst, '', { concurrency: limit });
    stats.uploaded += r.blobs.uploaded;
    stats.mounted += r.blobs.mounted;
    stats.existed += r.blobs.existed;
  }
  for (const { desc } of added) {
    const at = manifests.findIndex((d) => d.platform && _samePlatform(d.platform, desc.platform!));
    if (at >= 0) manifests[at] = desc;
    else manifests.push(desc);
  }
  if (!manifests.length) throw new MutateError('the index would have no entries; an empty index is not written');
  const doc: ImageIndex = base ? { ...base, manifests } : { schemaVersion: 2, mediaType: OCI_INDEX, manifests };
  if (edit.annotations && Object.keys(edit.annotations).length)
    doc.annotations = { ...(doc.annotations ?? {}), ...edit.annotations };
  const mediaType = edit.base?.mediaType ?? OCI_INDEX;
  const bytes = Buffer.from(JSON.stringify(doc));
  const out: FetchedManifest = { bytes, mediaType, digest: digestOf(bytes) };
  await dst.putManifest(tag || out.digest, out, { root: true });
  return {
    digest: out.digest,
    mediaType,
    size: bytes.length,
    manifests: manifests.map((d) => ({ platform: d.platform ? formatPlatform(d.platform) : '?', digest: d.digest })),
    blobs: stats,
  };
}

/** Exact platform identity for replacing entries (variant and os.version count; arm64's v8 is its default). */
function _samePlatform(a: Platform, b: Platform): boolean {
  return platformMatches(a, b) && platformMatches(b, a) && (a['os.version'] ?? '') === (b['os.version'] ?? '');
}

function _platforms(list: Descriptor[]): string {
  return list.map((d) => (d.platform ? formatPlatform(d.platform) : '?')).join(', ') || 'none';
}
