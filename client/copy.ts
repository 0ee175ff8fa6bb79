// Copying an image (or index, with its children and optionally its referrers) from any source medium to any
// target medium. Remote, OCI layout and the builder's outputs all adapt to these two small interfaces.
// Order is bottom-up so a registry never sees a manifest before what it references: blobs → child manifests →
// index → referrers (which point at their subject). "Referrers" are both kinds of attached artifact: OCI 1.1 ones
// (found from their subject) and cosign's tag-scheme ones (`sha256-<hex>.sig|.att|.sbom`, found by tag), so
// `cosign verify` works on a copy as it did on the original.
import type { Readable } from 'node:stream';
import pLimit, { type LimitFunction } from 'p-limit';
import type { Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex, ImageManifest, Platform } from '../spec/manifest.js';
import { DOCKER_FOREIGN_LAYER, isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { COSIGN_TAG_KINDS, cosignTag } from '../spec/reference.js';
import { RegistryError } from './registry.js';
import type { BlobSource, FetchedManifest, PushResult, Repository } from './remote.js';

export interface ImageSource {
  /** Human name for messages (`host/repo`, `oci-layout:DIR`). */
  readonly label: string;
  /** A manifest by tag or digest, verified. */
  manifest(reference: string): Promise<FetchedManifest>;
  /**
   * A blob's bytes from `offset`. At offset 0 the stream must verify the digest, unless `verify: false` says the
   * target checks it itself (then hashing here would only cost CPU).
   */
  blob(desc: Descriptor, offset: number, opts?: { verify?: boolean }): Readable | Promise<Readable>;
  /** Referrers of a manifest (signatures, SBOMs); optional. */
  referrers?(digest: Digest): Promise<Descriptor[]>;
  /** The manifest a tag names, or undefined when there is no such tag (cosign's `sha256-<hex>.sig`…); optional. */
  tagged?(tag: string): Promise<FetchedManifest | undefined>;
  /** For cross-repo mounts: where this source lives when it is a registry. */
  readonly remote?: { host: string; name: string };
  /**
   * For cross-repo mounts of a source that mixes media (a build: its own layers local, its base's in a registry):
   * the registry repository one blob came from. Wins over `remote` for that blob.
   */
  blobOrigin?(desc: Descriptor): { host: string; name: string } | undefined;
  /** The blob as a local file, when the source has one (a target on the same disk may hard-link it). */
  localFile?(desc: Descriptor): string | undefined;
  /** That file's bytes were hashed to the digest as this process wrote them: a link of it needs no second read. */
  localFileVerified?(desc: Descriptor): boolean;
}

export interface ImageTarget {
  readonly label: string;
  /**
   * The target checks every blob's digest and size before keeping it (a registry on `PUT ?digest=`, a layout
   * writer that hashes as it writes), so sources need not hash what they send it.
   */
  readonly verifiesBlobs?: boolean;
  /**
   * The digest this reference (tag or digest) currently names, if any — lets a re-copy skip everything.
   * With `referrer`, present means findable from its subject (an OCI layout lists referrers in index.json).
   */
  resolve(reference: string, opts?: { referrer?: boolean }): Promise<Digest | undefined>;
  pushBlob(
    desc: Descriptor,
    source: BlobSource,
    opts: { mountFrom?: string; onBytes?: (n: number) => void; localFile?: string; localFileVerified?: boolean },
  ): Promise<PushResult>;
  /**
   * Stores a manifest under `reference` (a tag or its digest). `root` marks a manifest to list under its name
   * (media such as an OCI layout list it in their index): the top-level image, or a cosign tag-scheme artifact;
   * `subject` is set for referrers.
   */
  putManifest(reference: string, m: FetchedManifest, opts?: { root?: boolean; subject?: Descriptor }): Promise<void>;
  readonly remote?: { host: string; name: string };
}

export interface Progress {
  blobStart(digest: Digest, size: number): void;
  blobBytes(digest: Digest, n: number): void;
  blobDone(digest: Digest, how: PushResult): void;
}

export interface CopyOptions {
  /** Keep only these platforms from an index; one platform copies just that image (like crane --platform). */
  platforms?: Platform[];
  /**
   * Also copy manifests that refer to the copied ones (signatures, SBOMs, attestations): OCI 1.1 referrers and
   * cosign's tag-scheme artifacts.
   */
  referrers?: boolean;
  /** Blobs in flight at once (default 4). */
  concurrency?: number;
  /**
   * A limiter shared with other copies, used instead of one of `concurrency` slots per copy: a sync rule copies
   * several images at once and its `concurrency` bounds the blobs in flight across all of them.
   */
  blobSlots?: LimitFunction;
  /** Copy even when the target already has the digest under that reference. */
  force?: boolean;
  progress?: Progress;
  /**
   * The root manifest is stored (and tagged) only once this settles, and not at all if it rejects: everything under
   * it is copied meanwhile. A build gates its push on its SBOMs being made, so their making overlaps the uploads
   * and a failure to make them leaves the tag where it was.
   */
  rootGate?: Promise<unknown>;
}

export interface CopyResult {
  digest: Digest;
  mediaType: string;
  size: number;
  skipped: boolean;
  manifests: number;
  blobs: { uploaded: number; mounted: number; existed: number; bytes: number };
  referrers: number;
}

export class PlatformError extends Error {}

/** Copies `reference` from `src` to `dst` under `dstReference` (a tag, or empty to push by digest only). */
export async function copy(
  src: ImageSource,
  reference: string,
  dst: ImageTarget,
  dstReference: string | undefined,
  opts: CopyOptions = {},
): Promise<CopyResult> {
  const run = new _Copy(src, dst, opts);
  let root = await src.manifest(reference);
  root = await run.selectPlatform(root);
  const tag = dstReference || root.digest;
  const result: CopyResult = {
    digest: root.digest,
    mediaType: root.mediaType,
    size: root.bytes.length,
    skipped: false,
    manifests: 0,
    blobs: run.stats,
    referrers: 0,
  };
  if (!opts.force && (await dst.resolve(tag)) === root.digest) {
    // Everything under a stored manifest is already there (registries refuse manifests with missing blobs).
    result.skipped = true;
  } else {
    await run.manifest(root);
    await opts.rootGate;
    await dst.putManifest(tag, root, { root: true });
    run.manifests++;
  }
  if (opts.referrers) await run.referrersOf(root);
  result.manifests = run.manifests;
  result.referrers = run.referrerCount;
  return result;
}

class _Copy {
  stats = { uploaded: 0, mounted: 0, existed: 0, bytes: 0 };
  manifests = 0;
  referrerCount = 0;
  private blobs = new Map<string, Promise<PushResult>>();
  /** At most `concurrency` blob transfers in flight across the whole copy (all platforms, all referrers). */
  private readonly _slot: LimitFunction;

  constructor(
    readonly src: ImageSource,
    readonly dst: ImageTarget,
    readonly opts: CopyOptions,
  ) {
    this._slot = opts.blobSlots ?? pLimit(Math.max(1, opts.concurrency ?? 4));
  }

  /** With exactly one wanted platform, an index resolves to that platform's image. */
  async selectPlatform(m: FetchedManifest): Promise<FetchedManifest> {
    const wanted = this.opts.platforms;
    if (!wanted?.length || !isIndexType(m.mediaType)) return m;
    if (wanted.length > 1) return m; // filtered in manifest()
    const index = _json<ImageIndex>(m);
    const hit = index.manifests.find((d) => platformMatches(d.platform, wanted[0]));
    if (!hit) throw _noPlatform(this.src.label, wanted, index);
    return this.src.manifest(hit.digest);
  }

  async manifest(m: FetchedManifest): Promise<void> {
    if (isIndexType(m.mediaType)) {
      const index = _json<ImageIndex>(m);
      const children = index.manifests;
      const wanted = this.opts.platforms;
      if (wanted && wanted.length > 1) {
        // An index must keep all its children (its digest covers them); refuse rather than write a broken index.
        const missing = wanted.filter((w) => !children.some((d) => platformMatches(d.platform, w)));
        if (missing.length) throw _noPlatform(this.src.label, missing, index);
      }
      await Promise.all(
        children.map(async (d) => {
          const child = await this.src.manifest(d.digest);
          if (this.opts.force || (await this.dst.resolve(d.digest)) !== d.digest) {
            await this.manifest(child);
            await this.dst.putManifest(d.digest, child);
            this.manifests++;
          }
          if (this.opts.referrers) await this.referrersOf(child);
        }),
      );
      return;
    }
    const doc = _json<ImageManifest>(m);
    const blobs = [doc.config, ...(doc.layers ?? [])].filter((d) => d && !_isForeign(d));
    await Promise.all(blobs.map((d) => this.blob(d)));
  }

  blob(d: Descriptor): Promise<PushResult> {
    let p = this.blobs.get(d.digest);
    if (!p) {
      p = this._slot(() => this._pushBlob(d));
      this.blobs.set(d.digest, p);
    }
    return p;
  }

  private async _pushBlob(d: Descriptor): Promise<PushResult> {
    const progress = this.opts.progress;
    // spec: end-11 — a blob the destination registry holds in the source's repository is mounted, not re-sent.
    const origin = this.src.blobOrigin?.(d) ?? this.src.remote;
    const sameRegistry = origin && this.dst.remote && origin.host === this.dst.remote.host;
    progress?.blobStart(d.digest, d.size);
    const verify = !this.dst.verifiesBlobs;
    const how = await this.dst.pushBlob(d, (offset) => this.src.blob(d, offset, { verify }), {
      mountFrom: sameRegistry ? origin.name : undefined,
      localFile: this.src.localFile?.(d),
      localFileVerified: this.src.localFileVerified?.(d),
      onBytes: (n) => {
        this.stats.bytes += n;
        progress?.blobBytes(d.digest, n);
      },
    });
    if (how === 'uploaded') this.stats.uploaded++;
    else if (how === 'mounted') this.stats.mounted++;
    else this.stats.existed++;
    progress?.blobDone(d.digest, how);
    return how;
  }

  /**
   * Referrers point at their subject, so they go after it; their own referrers follow recursively. Both kinds:
   * OCI 1.1 referrers and cosign's tag-scheme artifacts.
   */
  async referrersOf(subject: FetchedManifest, depth = 0): Promise<void> {
    if (depth > 8) return;
    await this._cosignTagsOf(subject, depth);
    if (!this.src.referrers) return;
    const subjectDesc: Descriptor = {
      mediaType: subject.mediaType,
      digest: subject.digest,
      size: subject.bytes.length,
    };
    for (const r of await this.src.referrers(subject.digest)) {
      const m = await this.src.manifest(r.digest);
      if (this.opts.force || (await this.dst.resolve(r.digest, { referrer: true })) !== r.digest) {
        await this.manifest(m);
        await this.dst.putManifest(r.digest, m, { subject: subjectDesc });
        this.manifests++;
      }
      this.referrerCount++;
      await this.referrersOf(m, depth + 1);
    }
  }

  /**
   * cosign's tag scheme (what `cosign sign` writes by default): `sha256-<hex>.sig`, `.att` and `.sbom` name the
   * subject only by tag, so they are looked up by tag and copied under the same tag. Like `cosign copy`, the
   * target's tag is replaced by the source's (a target signed separately keeps only the source's signatures).
   */
  private async _cosignTagsOf(subject: FetchedManifest, depth: number): Promise<void> {
    const tagged = this.src.tagged?.bind(this.src);
    if (!tagged) return;
    const tags = COSIGN_TAG_KINDS.map((k) => cosignTag(subject.digest, k)).filter((t): t is string => !!t);
    const found = await Promise.all(tags.map(async (tag) => ({ tag, m: await tagged(tag) })));
    for (const { tag, m } of found) {
      if (!m) continue;
      if (this.opts.force || (await this.dst.resolve(tag)) !== m.digest) {
        await this.manifest(m);
        await this.dst.putManifest(tag, m, { root: true });
        this.manifests++;
      }
      this.referrerCount++;
      await this.referrersOf(m, depth + 1);
    }
  }
}

function _json<T>(m: FetchedManifest): T {
  return JSON.parse(m.bytes.toString('utf8')) as T;
}

function _isForeign(d: Descriptor): boolean {
  // Foreign (Windows base) layers are not redistributable; docker and crane skip them too.
  return (
    d.mediaType === DOCKER_FOREIGN_LAYER ||
    d.mediaType === 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'
  );
}

function _noPlatform(label: string, wanted: Platform[], index: ImageIndex): PlatformError {
  const have = index.manifests
    .map((d) => (d.platform ? formatPlatform(d.platform) : '?'))
    .filter((p) => p !== 'unknown/unknown');
  return new PlatformError(
    `${label} has no image for platform ${wanted.map(formatPlatform).join(', ')}; available: ${have.join(', ') || 'none'} — pick one of those with --platform`,
  );
}

/**
 * How a referrer is listed (referrers API, fallback tag index, OCI layout index.json): its own descriptor plus
 * `artifactType` (the manifest's, else its config's media type) and its annotations (distribution-spec end-12).
 */
export function referrerDescriptor(
  m: FetchedManifest,
  doc: { artifactType?: string; config?: { mediaType?: string }; annotations?: Record<string, string> },
): Descriptor {
  const desc: Descriptor = { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
  const artifactType = doc.artifactType ?? doc.config?.mediaType;
  if (artifactType) desc.artifactType = artifactType;
  if (doc.annotations) desc.annotations = doc.annotations;
  return desc;
}

// ---- the remote medium as a source and a target --------------------------------------------------------------

export function remoteSource(repo: Repository): ImageSource {
  return {
    label: `${repo.host}/${repo.name}`,
    remote: { host: repo.host, name: repo.name },
    manifest: (ref) => repo.getManifest(ref),
    blob: (d, offset, opts) => repo.openBlob(d, offset, opts),
    referrers: (d) => repo.referrers(d),
    async tagged(tag) {
      // HEAD first: most images carry no cosign tags, and a 404 HEAD is the cheapest way to learn that.
      if (!(await repo.headManifest(tag))) return undefined;
      return repo.getManifest(tag);
    },
  };
}

export function remoteTarget(repo: Repository): ImageTarget {
  return {
    label: `${repo.host}/${repo.name}`,
    remote: { host: repo.host, name: repo.name },
    // spec: end-6 — the registry verifies the digest on the closing PUT and stores nothing on a mismatch.
    verifiesBlobs: true,
    async resolve(ref) {
      try {
        return (await repo.headManifest(ref))?.digest;
      } catch (e) {
        // A registry policy may refuse to show what a tag holds (an unsigned image under a signature policy): copy
        // it as if it were not there; the push itself is decided on its own.
        if (e instanceof RegistryError && e.status === 403) return undefined;
        throw e;
      }
    },
    pushBlob: (d, source, opts) => repo.pushBlob(d, source, opts),
    async putManifest(ref, m, opts) {
      const subject = opts?.subject;
      const { subjectAccepted } = await repo.putManifest(ref, m.bytes, m.mediaType);
      if (subject && !subjectAccepted) {
        // No referrers API there: maintain the fallback tag index (distribution-spec "Referrers tag schema").
        await repo.addReferrerFallback(subject.digest, referrerDescriptor(m, JSON.parse(m.bytes.toString('utf8'))));
      }
    },
  };
}
