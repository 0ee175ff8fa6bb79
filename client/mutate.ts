// Registry-level image edits (after go-containerregistry's `mutate`): read an image or index from any ImageSource,
// change its config, layers or annotations, and write the result to any ImageTarget — per platform for an index.
// Only what changed is written: layers stay where they are (HEAD → skip), come by cross-repository mount when the
// origin is another repository of the same registry, and are streamed otherwise; never held in memory.
// Order is bottom-up (blobs → config → platform manifests by digest → the root under its tag), so a reader never
// sees a tag pointing at something incomplete, and a failure half-way leaves the tag where it was.
// spec: image-spec manifest.md, image-index.md, config.md; distribution-spec end-11 (mount).
import { Readable } from 'node:stream';
import pLimit, { type LimitFunction } from 'p-limit';
import { canonicalBytes } from '../spec/canonical-json.js';
import { digestOf, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex, ImageManifest, Platform } from '../spec/manifest.js';
import { DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { copy, type ImageSource, type ImageTarget } from './copy.js';
import type { BlobSource, FetchedManifest, PushResult } from './remote.js';

export const BASE_NAME = 'org.opencontainers.image.base.name';
export const BASE_DIGEST = 'org.opencontainers.image.base.digest';

/** Config documents are small; a larger one is refused rather than buffered. */
const CONFIG_LIMIT = 8 << 20;

/** The image config (image-spec config.md), loosely typed: unknown fields are kept as they are. */
export interface ConfigDoc {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
  config?: Record<string, unknown>;
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
  [k: string]: unknown;
}

/** One platform image as read: its manifest (bytes and document), its config, and where its blobs live. */
export interface LoadedImage {
  source: ImageSource;
  manifest: FetchedManifest;
  doc: ImageManifest;
  configBytes: Buffer;
  config: ConfigDoc;
  /** From the index entry that led here, else from the config. */
  platform: Platform;
}

/** Where a blob that is not in the image's own source comes from. */
export type BlobOrigin = ImageSource | { open: BlobSource };

/** The result of an edit: the new documents, and origins for blobs the image did not have. */
export interface EditedImage {
  doc: ImageManifest;
  config: ConfigDoc;
  origins?: Map<Digest, BlobOrigin>;
}

export type EditFn = (img: LoadedImage) => Promise<EditedImage> | EditedImage;

export interface RewriteOptions {
  /** Edit only these platforms of an index (the others are kept as they are); default all. */
  platforms?: Platform[];
  /** Changes the index's own annotations (an index root only). */
  indexAnnotations?: (a: Record<string, string>) => Record<string, string>;
  /** Blobs in flight at once (default 4). */
  concurrency?: number;
}

export interface ImageChange {
  platform: string;
  from: Digest;
  to: Digest;
}

export interface RewriteResult {
  digest: Digest;
  mediaType: string;
  size: number;
  /** The root's digest before the edit. */
  from: Digest;
  images: ImageChange[];
  blobs: { uploaded: number; mounted: number; existed: number };
}

/** A user-facing problem with the images asked for (wrong platform, not an image, broken prefix…). */
export class MutateError extends Error {}

export function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new MutateError(`${what} is not valid JSON`);
  }
}

/** Reads a small blob (a config) fully, verified by the source. */
export async function readSmallBlob(src: ImageSource, desc: Descriptor, limit = CONFIG_LIMIT): Promise<Buffer> {
  if (desc.size > limit)
    throw new MutateError(`blob ${desc.digest} is ${desc.size} bytes; a config is at most ${limit} bytes`);
  const parts: Buffer[] = [];
  for await (const c of (await src.blob(desc, 0)) as Readable) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Loads the image manifest `m` of `src` with its config. */
export async function loadImage(src: ImageSource, m: FetchedManifest, platform?: Platform): Promise<LoadedImage> {
  if (isIndexType(m.mediaType)) throw new MutateError(`${src.label}@${m.digest} is an index, not an image`);
  const doc = parseJson<ImageManifest>(m.bytes, `manifest ${m.digest}`);
  if (!doc.config || !Array.isArray(doc.layers))
    throw new MutateError(`${src.label}@${m.digest} is not an image manifest (no config or layers)`);
  const configBytes = await readSmallBlob(src, doc.config);
  const config = parseJson<ConfigDoc>(configBytes, `config ${doc.config.digest}`);
  if (!config.rootfs || !Array.isArray(config.rootfs.diff_ids) || typeof config.os !== 'string')
    throw new MutateError(
      `${src.label}@${m.digest} has a config (${doc.config.mediaType}) that is not an image config; it may be an artifact`,
    );
  return { source: src, manifest: m, doc, configBytes, config, platform: platform ?? platformOf(config) };
}

/** The platform an image config describes (image-spec config.md: architecture, os, variant, os.version…). */
export function platformOf(config: ConfigDoc): Platform {
  const p: Platform = { architecture: config.architecture, os: config.os };
  if (config.variant) p.variant = config.variant;
  if (config['os.version']) p['os.version'] = config['os.version'];
  if (config['os.features']?.length) p['os.features'] = config['os.features'];
  return p;
}

/** True for index entries that are images of a real platform (not attestations listed as unknown/unknown). */
function _isPlatformImage(d: Descriptor): boolean {
  return !!d.platform && d.platform.os !== 'unknown' && !isIndexType(d.mediaType);
}

/**
 * Reads `reference` from `src`, applies `edit` to its image (or to every selected platform image of its index),
 * and writes the result to `dst` under `tag` (or by digest only when `tag` is empty).
 */
export async function rewrite(
  src: ImageSource,
  reference: string,
  dst: ImageTarget,
  tag: string | undefined,
  edit: EditFn,
  opts: RewriteOptions = {},
): Promise<RewriteResult> {
  const w = new _Writer(dst, opts.concurrency ?? 4);
  const root = await src.manifest(reference);
  const result = (r: FetchedManifest, images: ImageChange[]): RewriteResult => ({
    digest: r.digest,
    mediaType: r.mediaType,
    size: r.bytes.length,
    from: root.digest,
    images,
    blobs: w.stats,
  });
  if (!isIndexType(root.mediaType)) {
    const img = await loadImage(src, root);
    if (opts.platforms?.length && !opts.platforms.some((p) => platformMatches(img.platform, p)))
      throw new MutateError(
        `${src.label} is a single ${formatPlatform(img.platform)} image; drop --platform or name that platform`,
      );
    const out = await w.image(img, await edit(img));
    await dst.putManifest(tag || out.digest, out, { root: true });
    return result(out, [{ platform: formatPlatform(img.platform), from: root.digest, to: out.digest }]);
  }
  const index = parseJson<ImageIndex>(root.bytes, `index ${root.digest}`);
  const wanted = opts.platforms;
  if (wanted?.length) {
    const missing = wanted.filter((p) => !index.manifests.some((d) => platformMatches(d.platform, p)));
    if (missing.length) throw _noPlatform(src.label, missing, index);
  }
  // Reported in the index's order, whichever platform finishes first.
  const changed: (ImageChange | undefined)[] = [];
  const manifests = await Promise.all(
    index.manifests.map(async (d, i): Promise<Descriptor> => {
      const selected = _isPlatformImage(d) && (!wanted?.length || wanted.some((p) => platformMatches(d.platform, p)));
      if (!selected) {
        await w.keep(src, d);
        return d;
      }
      const img = await loadImage(src, await src.manifest(d.digest), d.platform);
      const out = await w.image(img, await edit(img));
      changed[i] = { platform: formatPlatform(img.platform), from: d.digest, to: out.digest };
      return { ...d, mediaType: out.mediaType, digest: out.digest, size: out.bytes.length };
    }),
  );
  const images = changed.filter((c): c is ImageChange => c !== undefined);
  if (!images.length) throw new MutateError(`${src.label} lists no platform images to change`);
  const doc: ImageIndex = { ...index, manifests };
  if (opts.indexAnnotations) {
    const a = opts.indexAnnotations({ ...(index.annotations ?? {}) });
    if (root.mediaType === DOCKER_MANIFEST_LIST && Object.keys(a).length)
      throw new MutateError(`${src.label} is a Docker manifest list, which has no annotations; annotate an OCI index`);
    if (Object.keys(a).length) doc.annotations = a;
    else delete doc.annotations;
  }
  const out = _document(root, doc);
  await dst.putManifest(tag || out.digest, out, { root: true });
  return result(out, images);
}

/** Manifest bytes for `doc`: the original bytes when nothing changed (so the digest stays), else fresh JSON. */
function _document(original: FetchedManifest, doc: object): FetchedManifest {
  const before = parseJson<object>(original.bytes, 'manifest');
  if (canonicalBytes(before).equals(canonicalBytes(doc))) return original;
  const bytes = Buffer.from(JSON.stringify(doc));
  return { bytes, mediaType: original.mediaType, digest: digestOf(bytes) };
}

/** Writes edited images to one target: blobs first (skip, mount or stream), then config, then the manifest. */
class _Writer {
  stats = { uploaded: 0, mounted: 0, existed: 0 };
  private blobs = new Map<string, Promise<PushResult>>();
  private readonly _slot: LimitFunction;

  constructor(
    readonly dst: ImageTarget,
    readonly limit: number,
  ) {
    this._slot = pLimit(Math.max(1, limit));
  }

  /** An index entry left as it is: present in the target already, or copied there (mounting where it can). */
  async keep(src: ImageSource, d: Descriptor): Promise<void> {
    if ((await this.dst.resolve(d.digest)) === d.digest) return;
    const r = await copy(src, d.digest, this.dst, '', { concurrency: this.limit });
    this.stats.uploaded += r.blobs.uploaded;
    this.stats.mounted += r.blobs.mounted;
    this.stats.existed += r.blobs.existed;
  }

  async image(img: LoadedImage, edited: EditedImage): Promise<FetchedManifest> {
    const doc = structuredClone(edited.doc);
    if (img.manifest.mediaType === DOCKER_MANIFEST && doc.annotations && Object.keys(doc.annotations).length)
      throw new MutateError(
        `${img.source.label}@${img.manifest.digest} is a Docker schema 2 manifest, which has no annotations; annotate an OCI image`,
      );
    if (edited.config.rootfs.diff_ids.length !== doc.layers.length)
      throw new MutateError(
        `the edited image lists ${doc.layers.length} layers but ${edited.config.rootfs.diff_ids.length} diff_ids`,
      );
    await Promise.all(
      doc.layers.filter((l) => !_isForeign(l)).map((l) => this.blob(l, edited.origins?.get(l.digest) ?? img.source)),
    );
    let configBytes = img.configBytes;
    if (!canonicalBytes(img.config).equals(canonicalBytes(edited.config))) configBytes = canonicalBytes(edited.config);
    const configDesc = { ...doc.config, digest: digestOf(configBytes), size: configBytes.length };
    if (configDesc.digest !== img.doc.config.digest) {
      const bytes = configBytes;
      await this.blob(configDesc, { open: () => Readable.from([bytes]) });
    } else {
      await this.blob(configDesc, img.source);
    }
    doc.config = configDesc;
    const out = _document(img.manifest, doc);
    await this.dst.putManifest(out.digest, out);
    return out;
  }

  blob(d: Descriptor, origin: BlobOrigin): Promise<PushResult> {
    let p = this.blobs.get(d.digest);
    if (!p) {
      p = this._slot(() => this._push(d, origin));
      this.blobs.set(d.digest, p);
    }
    return p;
  }

  private async _push(d: Descriptor, origin: BlobOrigin): Promise<PushResult> {
    let how: PushResult;
    if ('open' in origin) {
      how = await this.dst.pushBlob(d, origin.open, {});
    } else {
      const same = origin.remote && this.dst.remote && origin.remote.host === this.dst.remote.host;
      how = await this.dst.pushBlob(d, (offset) => origin.blob(d, offset, { verify: !this.dst.verifiesBlobs }), {
        mountFrom: same ? origin.remote!.name : undefined,
        localFile: origin.localFile?.(d),
      });
    }
    if (how === 'uploaded') this.stats.uploaded++;
    else if (how === 'mounted') this.stats.mounted++;
    else this.stats.existed++;
    return how;
  }
}

function _isForeign(d: Descriptor): boolean {
  return d.mediaType.includes('foreign') || d.mediaType.includes('nondistributable');
}

function _noPlatform(label: string, wanted: Platform[], index: ImageIndex): MutateError {
  const have = index.manifests.filter(_isPlatformImage).map((d) => formatPlatform(d.platform!));
  return new MutateError(
    `${label} has no image for ${wanted.map(formatPlatform).join(', ')}; it has ${have.join(', ') || 'none'} — pick one of those with --platform`,
  );
}

// ---- config edits ------------------------------------------------------------------------------------------

/** What `berth mutate` can change in an image config (image-spec config.md "config" field). */
export interface ConfigEdits {
  labels?: Record<string, string>;
  /** `KEY=VALUE`; merged by name over the image's Env (a new KEY goes last). */
  env?: string[];
  /** Replaces Entrypoint; an empty list removes it. As in docker, a new entrypoint drops Cmd unless cmd is given. */
  entrypoint?: string[];
  cmd?: string[];
  user?: string;
  workdir?: string;
  /** `PORT[/PROTO]`, protocol tcp when omitted. */
  exposedPorts?: string[];
}

/** Applies `edits` to a copy of `config` (a pure function). */
export function editConfig(config: ConfigDoc, edits: ConfigEdits): ConfigDoc {
  const out = structuredClone(config);
  const c: Record<string, unknown> = { ...(out.config ?? {}) };
  if (edits.labels && Object.keys(edits.labels).length)
    c.Labels = { ...((c.Labels as Record<string, string> | null) ?? {}), ...edits.labels };
  if (edits.env?.length) {
    const env = new Map<string, string>();
    for (const kv of (c.Env as string[] | null) ?? []) {
      const i = kv.indexOf('=');
      env.set(i < 0 ? kv : kv.slice(0, i), i < 0 ? '' : kv.slice(i + 1));
    }
    for (const kv of edits.env) {
      const i = kv.indexOf('=');
      if (i <= 0) throw new MutateError(`env "${kv}" must be KEY=VALUE`);
      env.set(kv.slice(0, i), kv.slice(i + 1));
    }
    c.Env = [...env].map(([k, v]) => `${k}=${v}`);
  }
  if (edits.entrypoint) {
    if (edits.entrypoint.length) c.Entrypoint = edits.entrypoint;
    else delete c.Entrypoint;
    if (!edits.cmd) delete c.Cmd;
  }
  if (edits.cmd) {
    if (edits.cmd.length) c.Cmd = edits.cmd;
    else delete c.Cmd;
  }
  if (edits.user !== undefined) c.User = edits.user;
  if (edits.workdir !== undefined) c.WorkingDir = edits.workdir;
  if (edits.exposedPorts?.length) {
    const ports: Record<string, object> = { ...((c.ExposedPorts as Record<string, object> | null) ?? {}) };
    for (const p of edits.exposedPorts) {
      const m = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/.exec(p);
      if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535)
        throw new MutateError(`port "${p}" must be PORT[/tcp|udp|sctp] with PORT 1-65535`);
      ports[`${m[1]}/${m[2] ?? 'tcp'}`] = {};
    }
    c.ExposedPorts = ports;
  }
  out.config = c;
  return out;
}

/** Annotations set over `a` (a copy). */
export function withAnnotations(a: Record<string, string> | undefined, set: Record<string, string>) {
  return { ...(a ?? {}), ...set };
}

/** The `berth mutate` edit: config changes and manifest annotations. */
export function mutateEdit(edits: ConfigEdits, annotations: Record<string, string> = {}): EditFn {
  return (img) => {
    const doc = structuredClone(img.doc);
    if (Object.keys(annotations).length) doc.annotations = withAnnotations(doc.annotations, annotations);
    return { doc, config: editConfig(img.config, edits) };
  };
}
