// `berth build` as a function: spec → per-platform layer plans → layer blobs (cached) → images → (index).
// The result is an ImageSource (client/copy.ts), so every output — OCI layout, registry push, docker-archive —
// is the same `copy` the transfer verbs use, and the builder has no writer of its own.
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import type { Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex, ImageManifest, Platform } from '../spec/manifest.js';
import { OCI_INDEX, OCI_MANIFEST, isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import type { ImageSource } from '../client/copy.js';
import type { FetchedManifest } from '../client/remote.js';
import { BlobDir } from './blobs.js';
import { LayerCache } from './cache.js';
import { Context, ContextError } from './context.js';
import {
  annotate,
  appendLayers,
  epochTime,
  fromBase,
  imageIndex,
  scratch,
  serializeImage,
  withConfig,
  type Image,
  type ImageConfig,
  type Layer,
} from './image.js';
import { DebRepo } from './deb-repo.js';
import { accountMembers, debArch, debianInputs, debianLayer, type DebianLock, type LockedDeb } from './debian.js';
import { buildLayer, type BuiltLayer, type RemoteLayerCache } from './layers.js';
import { finishMembers, planLayer, type LayerPlan } from './plan.js';
import { goPreset } from './preset-go.js';
import { nodePreset } from './preset-node.js';
import { pythonPreset } from './preset-python.js';
import type { Preset } from './preset.js';
import { defaultCacheDir } from './cache-dir.js';
import { loadSpec, BuildSpecError, specPlatforms, type LoadedSpec } from './spec.js';

const run = promisify(execFile);

export const ANNOTATION = {
  created: 'org.opencontainers.image.created',
  source: 'org.opencontainers.image.source',
  revision: 'org.opencontainers.image.revision',
  baseName: 'org.opencontainers.image.base.name',
  baseDigest: 'org.opencontainers.image.base.digest',
} as const;

export interface BuildOptions {
  /** Path to berth.yaml. */
  file: string;
  /** Build context; default: the spec file's directory. */
  context?: string;
  /** Build only these platforms (must be in the spec's list). */
  platforms?: Platform[];
  /** SOURCE_DATE_EPOCH as given in the environment (wins over the spec's epoch). */
  sourceDateEpoch?: string;
  /** Layer cache + blob directory; default $XDG_CACHE_HOME/berth or ~/.cache/berth. `false` = a fresh temp dir. */
  cacheDir?: string | false;
  /** Resolves `base:` (already pinned by the lock, if any) to a source; needed only when base is not scratch. */
  resolveBase?: (ref: string) => Promise<{ source: ImageSource; reference: string; name: string }>;
  /** The base digest pinned by berth.lock (lock.ts); the base is then fetched by digest, not by tag. */
  baseDigest?: Digest;
  /**
   * Layers the local cache lacks are looked up here by key (registry-cache.ts) before they are built; a hit is
   * used where it lies, its bytes read from `source` only by outputs that need them.
   */
  registryCache?: RemoteLayerCache & { source: ImageSource };
  /** The Debian package sets pinned by berth.lock; used when its inputs match the spec's packages.debian. */
  debianLock?: DebianLock;
  /** Don't look up git for .source/.revision annotations. */
  noGit?: boolean;
  /** A layer's build starts (a cache lookup, else tar + compression): progress for the slow part of a build. */
  onLayerStart?: (platform: Platform, name: string, compression: string) => void;
  onLayer?: (platform: Platform, layer: BuiltLayer) => void;
}

export interface PlatformImage {
  platform: Platform;
  image: Image;
  manifest: FetchedManifest;
  layers: BuiltLayer[];
  plans: LayerPlan[];
  /** The Debian packages in the image's package layer (packages.debian). */
  debs?: LockedDeb[];
}

export interface BuildResult {
  spec: LoadedSpec;
  /** The top manifest: an index for several platforms, else the one image manifest. */
  root: FetchedManifest;
  images: PlatformImage[];
  /** All built manifests and blobs, as a copy() source. */
  source: ImageSource;
  base?: { name: string; digest: Digest };
  blobs: BlobDir;
  /** The package sets used, to be written to berth.lock. */
  debian?: DebianLock;
}

/** SOURCE_DATE_EPOCH, else the spec's epoch, else 0 (reproducible-builds.org/specs/source-date-epoch). */
export function resolveEpoch(spec: LoadedSpec, sourceDateEpoch?: string): number {
  if (sourceDateEpoch !== undefined && sourceDateEpoch !== '') {
    if (!/^\d{1,11}$/.test(sourceDateEpoch))
      throw new BuildSpecError(`SOURCE_DATE_EPOCH must be a whole number of seconds, not "${sourceDateEpoch}"`);
    return Number(sourceDateEpoch);
  }
  return spec.spec.epoch ?? 0;
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  const loaded = await loadSpec(opts.file);
  const { spec } = loaded;
  const epoch = resolveEpoch(loaded, opts.sourceDateEpoch);
  const created = epochTime(epoch);
  const compression = spec.compression ?? 'gzip';
  const ctx = await Context.open(opts.context ?? dirname(resolve(opts.file))).catch((e) => {
    throw e instanceof ContextError ? new BuildSpecError(e.message) : e;
  });
  const cacheRoot =
    opts.cacheDir === false
      ? join(tmpdir(), `berth-build-${process.pid}-${Date.now()}`)
      : (opts.cacheDir ?? defaultCacheDir());
  const blobs = new BlobDir(join(cacheRoot, 'blobs'));
  const tarInputs = new BlobDir(join(cacheRoot, 'tar-inputs')); // `tar:` entries' file contents (tar-input.ts)
  const cache = await LayerCache.open(cacheRoot);
  const platforms = specPlatforms(loaded, opts.platforms);
  const preset = await _preset(loaded, ctx, resolve(opts.file), cacheRoot, platforms);

  const src = new _BuiltSource(blobs);
  let baseInfo: { name: string; digest: Digest } | undefined;
  let baseSource: { source: ImageSource; reference: string; name: string; root: FetchedManifest } | undefined;
  if (spec.base && spec.base !== 'scratch') {
    if (!opts.resolveBase)
      throw loaded.error(['base'], 'a base image needs registry access: give the build a client or resolveBase');
    const r = await opts.resolveBase(spec.base);
    const reference = opts.baseDigest ?? r.reference;
    const root = await r.source.manifest(reference).catch((e) => {
      throw loaded.error(
        ['base'],
        `cannot fetch ${spec.base}${opts.baseDigest ? ` (locked to ${opts.baseDigest} by berth.lock)` : ''}: ${(e as Error).message}`,
      );
    });
    baseSource = { ...r, root };
    baseInfo = { name: r.name, digest: root.digest };
  }

  const auto: Record<string, string> = { [ANNOTATION.created]: created };
  if (!opts.noGit) Object.assign(auto, await _gitAnnotations(ctx.dir));
  if (baseInfo) Object.assign(auto, { [ANNOTATION.baseName]: baseInfo.name, [ANNOTATION.baseDigest]: baseInfo.digest });
  const annotations = { ...auto, ...(spec.annotations ?? {}) };

  const debSpec = spec.packages?.debian;
  const debian: DebianLock | undefined = debSpec ? { inputs: debianInputs(debSpec), architectures: {} } : undefined;
  const locked = debian && opts.debianLock?.inputs === debian.inputs ? opts.debianLock : undefined;
  const repo = debSpec ? new DebRepo(new BlobDir(join(cacheRoot, 'debian')), ctx.dir) : undefined;

  const images: PlatformImage[] = [];
  for (const platform of platforms) {
    let img = baseSource ? await _baseImage(loaded, baseSource, platform, src) : scratch(platform, epoch);
    const plans: LayerPlan[] = [];
    let debs: LockedDeb[] | undefined;
    if (debian && repo) {
      const arch = debArch(platform) ?? '';
      const d = await debianLayer(loaded, platform, {
        repo,
        staging: tarInputs,
        locked: locked?.architectures[arch],
        unpacked: join(cacheRoot, 'debian', 'unpacked'),
      });
      plans.push(d.plan);
      debs = d.packages;
      debian.architectures[arch] = d.packages;
    } else if (spec.accounts) {
      const fail = (msg: string) => loaded.error(['accounts'], msg);
      plans.push({
        name: 'accounts',
        members: finishMembers(new Map(accountMembers(loaded, spec.accounts).map((m) => [m.path, m])), fail),
        origins: new Map(),
      });
    }
    if (preset) plans.push(...(await preset.layers(platform)));
    for (let i = 0; i < (spec.layers ?? []).length; i++)
      plans.push(await planLayer(loaded, i, platform, ctx, { tarInputs }));
    // Layers build concurrently: zlib runs on libuv's thread pool, so this uses every core.
    const built = await Promise.all(
      plans.map(async (p) => {
        const slot = `${ctx.real}\0${formatPlatform(platform)}\0${p.name}`;
        opts.onLayerStart?.(platform, p.name, compression);
        // The registry cache names the slot without the context's directory: CI runners check out to different ones.
        const remoteSlot = `${formatPlatform(platform)} ${p.name}`;
        const remote = opts.registryCache;
        const b = await buildLayer(p, { epoch, compression, blobs, cache, slot, remote, remoteSlot });
        if (b.remote) src.addRemote(b.layer.descriptor, opts.registryCache!.source);
        opts.onLayer?.(platform, b);
        return b;
      }),
    );
    await cache.save();
    img = appendLayers(
      img,
      built.map((b) => ({
        layer: b.layer,
        history: { created, created_by: `berth build: layer ${b.name}`, comment: 'berth' },
      })),
    );
    img = withConfig(withConfig(img, preset?.config), spec.config, created);
    img = annotate(img, annotations);
    const { config, manifest } = serializeImage(img);
    src.addBytes(config.descriptor.digest, config.bytes);
    const m: FetchedManifest = { bytes: manifest.bytes, mediaType: OCI_MANIFEST, digest: manifest.descriptor.digest };
    src.addManifest(m);
    images.push({ platform, image: img, manifest: m, layers: built, plans, debs });
  }
  let root: FetchedManifest;
  if (images.length === 1) {
    root = images[0].manifest;
  } else {
    const descs: Descriptor[] = images.map((i) => ({
      mediaType: OCI_MANIFEST,
      digest: i.manifest.digest,
      size: i.manifest.bytes.length,
      platform: i.platform,
    }));
    const idx = imageIndex(descs, annotations);
    root = { bytes: idx.bytes, mediaType: OCI_INDEX, digest: idx.descriptor.digest };
    src.addManifest(root);
  }
  return { spec: loaded, root, images, source: src, base: baseInfo, blobs, debian };
}

async function _preset(
  loaded: LoadedSpec,
  ctx: Context,
  specFile: string,
  cacheRoot: string,
  platforms: Platform[],
): Promise<Preset | undefined> {
  const { spec } = loaded;
  if (spec.go && spec.preset !== 'go')
    throw loaded.error(['go'], 'go: sets up preset: go; add preset: go or remove it');
  if (spec.python && spec.preset !== 'python')
    throw loaded.error(['python'], 'python: sets up preset: python; add preset: python or remove it');
  if (spec.preset === 'go') return goPreset(loaded, ctx, { outDir: join(cacheRoot, 'go-build'), platforms });
  if (spec.preset === 'python')
    return pythonPreset(loaded, ctx, { outDir: join(cacheRoot, 'python-build'), exclude: [specFile, cacheRoot] });
  if (spec.preset !== 'node') return undefined;
  // preset: node's layers and config defaults are the same for every platform (node_modules is used as installed).
  const node = await nodePreset(loaded, ctx, { exclude: [specFile, cacheRoot] });
  return { layerNames: ['dependencies', 'app'], layers: async () => node.layers, config: node.config };
}

async function _baseImage(
  loaded: LoadedSpec,
  base: { source: ImageSource; root: FetchedManifest; name: string },
  platform: Platform,
  out: _BuiltSource,
): Promise<Image> {
  let m = base.root;
  if (isIndexType(m.mediaType)) {
    const index = JSON.parse(m.bytes.toString('utf8')) as ImageIndex;
    const hit = index.manifests.find((d) => platformMatches(d.platform, platform));
    if (!hit) {
      const have = index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : '?')).join(', ');
      throw loaded.error(['base'], `${base.name} has no image for ${formatPlatform(platform)} (it has ${have})`);
    }
    m = await base.source.manifest(hit.digest);
  }
  const doc = JSON.parse(m.bytes.toString('utf8')) as ImageManifest;
  const config = JSON.parse((await _readAll(await base.source.blob(doc.config, 0))).toString('utf8')) as ImageConfig;
  if (config.os !== platform.os || config.architecture !== platform.architecture) {
    throw loaded.error(
      ['base'],
      `${base.name} is ${config.os}/${config.architecture}, not ${formatPlatform(platform)}; build for its platform or use a multi-platform base`,
    );
  }
  const layers: Layer[] = doc.layers.map((d, i) => {
    out.addRemote(d, base.source);
    return { descriptor: d, diffId: config.rootfs.diff_ids[i], open: async () => base.source.blob(d, 0) };
  });
  return fromBase(platform, config, layers);
}

async function _readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function _gitAnnotations(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  try {
    const rev = (await run('git', ['-C', dir, 'rev-parse', 'HEAD'], { timeout: 5000 })).stdout.trim();
    if (/^[0-9a-f]{40,64}$/.test(rev)) out[ANNOTATION.revision] = rev;
    const url = (
      await run('git', ['-C', dir, 'config', '--get', 'remote.origin.url'], { timeout: 5000 })
    ).stdout.trim();
    // Never publish credentials embedded in a remote URL.
    if (url) out[ANNOTATION.source] = url.replace(/\/\/[^@/]+@/, '//');
  } catch {
    // Not a git checkout, or no remote: no annotations.
  }
  return out;
}

/** The build's output as an ImageSource: manifests in memory, layer blobs in the blob dir, base blobs upstream. */
class _BuiltSource implements ImageSource {
  readonly label = 'berth build';
  private manifests = new Map<string, FetchedManifest>();
  private bytes = new Map<string, Buffer>();
  private remote_ = new Map<string, ImageSource>();

  constructor(private readonly blobs: BlobDir) {}

  addManifest(m: FetchedManifest): void {
    this.manifests.set(m.digest, m);
  }
  addBytes(d: Digest, b: Buffer): void {
    this.bytes.set(d, b);
  }
  addRemote(d: Descriptor, s: ImageSource): void {
    this.remote_.set(d.digest, s);
  }

  async manifest(reference: string): Promise<FetchedManifest> {
    const m = this.manifests.get(reference);
    if (!m) throw new Error(`the build produced no manifest ${reference}`);
    return m;
  }

  /** Base layers come from the base's registry repository: a push to that registry mounts them (copy.ts). */
  blobOrigin(desc: Descriptor): { host: string; name: string } | undefined {
    return this.remote_.get(desc.digest)?.remote;
  }

  /** Layers this build wrote (or found in its cache) are files in the blob dir; base layers and configs are not. */
  localFile(desc: Descriptor): string | undefined {
    return this.bytes.has(desc.digest) || this.remote_.has(desc.digest) ? undefined : this.blobs.path(desc.digest);
  }

  /** A layer this very build wrote (not one its cache already held): hashed as it was written. */
  localFileVerified(desc: Descriptor): boolean {
    return this.localFile(desc) !== undefined && this.blobs.publishedHere(desc.digest);
  }

  async blob(desc: Descriptor, offset: number): Promise<Readable> {
    const b = this.bytes.get(desc.digest);
    if (b) return Readable.from([b.subarray(offset)]);
    const upstream = this.remote_.get(desc.digest);
    if (upstream) return upstream.blob(desc, offset);
    return createReadStream(this.blobs.path(desc.digest), { start: offset, highWaterMark: 1 << 20 });
  }
}
