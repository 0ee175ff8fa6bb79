// Manifests (stored as blobs, linked per repository with their media type), tags and referrers.
// spec: distribution-spec "Pushing manifests", "Listing referrers"; image-spec manifest.md "subject".
//
// Besides the OCI routes (put/get/delete/tags/referrers/catalog), what registry/ needs beyond them — registry/ never
// touches the driver (issue 15):
//   adopt(name, digest, bytes, {mediaType, tag})  stores a manifest fetched from an upstream (the pull-through
//                                  cache) through the same write order, GC bracket (gc.around) and referrer entry
//                                  as a push; its blobs need not be here; repaired after an overlapping sweep
//   has(name, digest)              whether the repository holds the manifest (revision link)
//   tagged(name, tag)              the digest a tag points at when that manifest is held too, else undefined
//   retag(name, tag, digest)       points a tag at a held manifest (GC-bracketed); false when it is not held
//   untag(name, tag)               removes a tag, whether or not it exists
//   touch(name, digest)            rewrites the revision link: its mtime is the mirror's last pull (eviction)
//   tagNames(name) / tagTimes(name) / tagsOf(name, digest)   tags; with their last write; those at a digest
//   revisionTimes(name)            held manifests with their revision link's mtime (eviction)
//   notePull / lastPull / forgetPull   per-tag last-pull records under pulls/ (retention's keepPulledWithin)
//   mirrorReferrers(name, subject, listed)   makes a subject's referrer entries an upstream's list (pull-through)
import { LRUCache } from 'lru-cache';
import {
  OciError,
  ManifestError,
  parseManifest,
  parseDigest,
  isDigest,
  isValidTag,
  digestOf,
  DOCKER_FOREIGN_LAYER,
  isManifestType,
  type Descriptor,
  type Digest,
  type ParsedManifest,
} from '../spec/index.js';
import type { Driver } from './driver.js';
import { paths } from './paths.js';
import type { BlobStore } from './blobs.js';
import { GcGuard } from './gc.js';
import { linkTimes, listFiles } from './links.js';

/** A referrer descriptor from elsewhere reduced to what a referrers list holds, or undefined when malformed. */
function _referrerEntry(d: Descriptor): Descriptor | undefined {
  if (!d || typeof d !== 'object' || typeof d.digest !== 'string' || !isDigest(d.digest)) return undefined;
  if (typeof d.mediaType !== 'string' || !isManifestType(d.mediaType)) return undefined;
  if (!Number.isSafeInteger(d.size) || d.size < 0) return undefined;
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (typeof d.artifactType === 'string' && d.artifactType.length <= 255) out.artifactType = d.artifactType;
  const a = d.annotations;
  if (a && typeof a === 'object' && !Array.isArray(a)) {
    const entries = Object.entries(a).filter(([, v]) => typeof v === 'string');
    if (entries.length) out.annotations = Object.fromEntries(entries) as Record<string, string>;
  }
  return out;
}

/**
 * Non-distributable ("foreign") layers live outside the registry (image-spec layer.md, deprecated but still pushed),
 * so they are not required to exist in the repository.
 */
function isNonDistributable(d: Descriptor): boolean {
  return d.mediaType.includes('.nondistributable.') || d.mediaType === DOCKER_FOREIGN_LAYER;
}

export interface StoredManifest {
  digest: Digest;
  mediaType: string;
  bytes: Buffer;
}

export interface PutManifestResult {
  digest: Digest;
  subject?: Digest;
}

export interface ManifestStoreOptions {
  /** Largest manifest accepted, in bytes (413 above). */
  maxManifestBytes: number;
}

export class ManifestStore {
  /** Manifest bytes by digest: immutable, cached by total size. */
  private readonly bytes = new LRUCache<string, Buffer>({
    maxSize: 64 * 1024 * 1024,
    sizeCalculation: (b) => b.length || 1,
  });
  private readonly descriptors = new LRUCache<string, Descriptor>({ max: 50_000 });
  private readonly knownRepositories = new Set<string>();
  /**
   * Tag and revision-link contents, each with the version its driver's stat reported when it was read. A hit costs
   * one stat instead of a read (open, fstat, read, close); a tag is never served stale because every use stats the
   * file first (another process or replica may have moved it). Drivers whose stat has no `version` are read always.
   */
  private readonly smallFiles = new LRUCache<string, { version: unknown; data: Buffer }>({ max: 20_000 });
  private readonly gc: GcGuard;
  /** Set by the registry: refuses tag writes a policy forbids (immutable tags); runs before anything is written. */
  tagPolicy?: (name: string, tags: string[], digest: Digest) => Promise<void>;
  /** Told when this process changes a repository's manifests or tags (createStore: the browse caches forget it). */
  changed?: (name: string) => void;

  constructor(
    private readonly driver: Driver,
    private readonly blobs: BlobStore,
    readonly options: ManifestStoreOptions,
  ) {
    this.gc = new GcGuard(driver);
  }

  /**
   * Stores a manifest under a tag or a digest. `extraTags` are the `?tag=` parameters of a push by digest
   * (distribution-spec "Pushing Manifests with tags"); all are validated before anything is written.
   */
  async put(
    name: string,
    reference: string,
    body: Buffer,
    contentType: string | undefined,
    extraTags: string[] = [],
  ): Promise<PutManifestResult> {
    const byDigest = isDigest(reference);
    for (const tag of byDigest ? extraTags : [reference]) {
      if (!isValidTag(tag))
        throw new OciError(
          'TAG_INVALID',
          `invalid tag "${tag.slice(0, 200)}": allowed [A-Za-z0-9_][A-Za-z0-9._-]{0,127}`,
        );
    }
    let parsed: ParsedManifest;
    try {
      parsed = parseManifest(body, contentType, { strict: true });
    } catch (e) {
      if (e instanceof ManifestError) throw new OciError('MANIFEST_INVALID', `manifest invalid: ${e.message}`);
      throw e;
    }
    const algorithm = byDigest ? parseDigest(reference).algorithm : 'sha256';
    const digest = digestOf(body, algorithm);
    if (byDigest && digest !== reference) {
      throw new OciError('DIGEST_INVALID', `manifest digest ${digest} does not match reference ${reference}`);
    }
    const tags = byDigest ? extraTags : [reference];
    if (tags.length && this.tagPolicy) await this.tagPolicy(name, tags, digest);
    // Checks and writes bracketed by the GC protocol (storage/gc.ts): if a sweep overlapped, re-check afterwards.
    await this.gc.around(
      async () => {
        await this._checkReferences(name, parsed);
        await this._write(name, digest, body, parsed, tags);
      },
      () => this._verifyAfterGc(name, digest, parsed, tags),
    );
    return { digest, subject: parsed.subject?.digest };
  }

  private async _write(
    name: string,
    digest: Digest,
    body: Buffer,
    parsed: ParsedManifest,
    tags: string[],
  ): Promise<void> {
    // Order matters for crash safety: content, then revision link, then referrer entry, then tag.
    await this.blobs.putSmall(digest, body);
    this.bytes.set(digest, body);
    await this.driver.put(paths.manifestRevision(name, digest), parsed.mediaType);
    if (parsed.subject) {
      const descriptor: Descriptor = {
        mediaType: parsed.mediaType,
        digest,
        size: body.length,
        ...(parsed.artifactType ? { artifactType: parsed.artifactType } : {}),
        ...(parsed.annotations ? { annotations: parsed.annotations } : {}),
      };
      await this.driver.put(paths.referrer(name, parsed.subject.digest, digest), JSON.stringify(descriptor));
    }
    try {
      for (const tag of tags) await this.driver.put(paths.tag(name, tag), digest);
      await this._addToCatalog(name);
    } finally {
      this.changed?.(name);
    }
  }

  /**
   * Stores a manifest as an upstream served it (pull-through cache), tagged `tag` when given. Unlike a push the
   * blobs and child manifests it references need not be here (they are fetched when asked for) and no tag policy
   * applies (the mirror follows its upstream); otherwise the same as put: the document is parsed (a ManifestError
   * propagates, for the caller to name who sent it), the bytes must hash to `digest`, the write order, the referrer
   * entry and the GC bracket are the push's. When a GC overlapped, what it swept is written again: the bytes are
   * in hand, and the sweep is over by then (a later GC spares them: they are fresh).
   */
  async adopt(
    name: string,
    digest: Digest,
    body: Buffer,
    opts: { mediaType?: string; tag?: string } = {},
  ): Promise<void> {
    const parsed = parseManifest(body, opts.mediaType);
    if (digestOf(body, parseDigest(digest).algorithm) !== digest) {
      throw new OciError('DIGEST_INVALID', `manifest content does not match its digest ${digest}`);
    }
    if (opts.tag !== undefined && !isValidTag(opts.tag))
      throw new OciError('TAG_INVALID', `invalid tag "${opts.tag.slice(0, 200)}"`);
    const tags = opts.tag === undefined ? [] : [opts.tag];
    await this.gc.around(
      () => this._write(name, digest, body, parsed, tags),
      async () => {
        this.blobs.forget(digest);
        await this._write(name, digest, body, parsed, []);
      },
    );
  }

  /** Whether `name` holds the manifest `digest` (its revision link exists). */
  async has(name: string, digest: Digest): Promise<boolean> {
    return (await this.driver.stat(paths.manifestRevision(name, digest))) !== undefined;
  }

  /** The digest `tag` points at when the manifest is held too; undefined otherwise (never throws for a missing tag). */
  async tagged(name: string, tag: string): Promise<Digest | undefined> {
    const raw = await this._readSmall(paths.tag(name, tag));
    const digest = raw?.toString('utf8');
    if (!digest || !isDigest(digest) || !(await this.has(name, digest))) return undefined;
    return digest;
  }

  /**
   * Points `tag` at `digest` when `name` holds that manifest (false when it does not). No tag policy: this is the
   * mirror following its upstream. GC-bracketed like a push: a tag whose manifest a sweep took meanwhile is undone.
   */
  async retag(name: string, tag: string, digest: Digest): Promise<boolean> {
    try {
      return await this.gc.around(
        async () => {
          if (!(await this.has(name, digest))) return false;
          await this.driver.put(paths.tag(name, tag), digest);
          this.changed?.(name);
          return true;
        },
        async (done) => {
          if (!done || ((await this.has(name, digest)) && (await this.driver.stat(paths.blobData(digest))))) return;
          if ((await this.driver.get(paths.tag(name, tag)))?.toString('utf8') === digest)
            await this.driver.delete(paths.tag(name, tag));
          throw new OciError('MANIFEST_UNKNOWN', `manifest ${name}@${digest} was garbage-collected while tagged`);
        },
      );
    } catch (e) {
      if (e instanceof OciError && e.code === 'MANIFEST_UNKNOWN') return false;
      throw e;
    }
  }

  /** Removes `tag` of `name` if it exists (no check, no policy: the mirror following an upstream that dropped it). */
  async untag(name: string, tag: string): Promise<void> {
    await this.driver.delete(paths.tag(name, tag));
    this.changed?.(name);
  }

  /**
   * Marks the manifest as pulled now: rewrites its revision link (same content, new mtime). GC-bracketed: a sweep
   * that took the link (and the bytes) between the read and the rewrite would otherwise get the link back, pointing
   * at nothing — the mirror would count it a hit and answer 404 for good.
   */
  async touch(name: string, digest: Digest): Promise<void> {
    const path = paths.manifestRevision(name, digest);
    await this.gc.around(
      async () => {
        const mediaType = await this.driver.get(path);
        if (mediaType) await this.driver.put(path, mediaType);
      },
      async () => {
        if (!(await this.driver.stat(paths.blobData(digest)))) await this.driver.delete(path);
      },
    );
  }

  /** Tag names of `name` (empty for an unknown repository). */
  async tagNames(name: string): Promise<string[]> {
    return this.driver.list(paths.tags(name));
  }

  /** Tags of `name` with the time each was last written (pushed or moved). */
  async tagTimes(name: string): Promise<Array<{ tag: string; modified: Date }>> {
    // One listing with mtimes (S3: no HEAD per tag), not a stat per tag.
    return (await listFiles(this.driver, paths.tags(name))).map((f) => ({ tag: f.name, modified: f.modified }));
  }

  /** Tags of `name` pointing at `digest`. */
  async tagsOf(name: string, digest: Digest): Promise<string[]> {
    const out: string[] = [];
    for (const tag of await this.driver.list(paths.tags(name))) {
      if ((await this.driver.get(paths.tag(name, tag)))?.toString('utf8') === digest) out.push(tag);
    }
    return out;
  }

  /** Manifests `name` holds, with the mtime of each revision link (its last push or, for a mirror, last pull). */
  async revisionTimes(name: string): Promise<Array<{ digest: Digest; modified: Date }>> {
    return linkTimes(this.driver, paths.manifestRevisions(name));
  }

  /** Records a pull of `name:tag` at `at` (ms). */
  async notePull(name: string, tag: string, at: number): Promise<void> {
    await this.driver.put(paths.lastPull(name, tag), new Date(at).toISOString());
  }

  /** When `name:tag` was last pulled (ms), 0 when never recorded. */
  async lastPull(name: string, tag: string): Promise<number> {
    const raw = await this.driver.get(paths.lastPull(name, tag)).catch(() => undefined);
    return raw ? Date.parse(raw.toString('utf8')) || 0 : 0;
  }

  async forgetPull(name: string, tag: string): Promise<void> {
    await this.driver.delete(paths.lastPull(name, tag));
  }

  /** After a GC overlapped the push: everything the manifest relies on must still be there, else undo its tags. */
  private async _verifyAfterGc(name: string, digest: Digest, parsed: ParsedManifest, tags: string[]): Promise<void> {
    const needed = [paths.blobData(digest), paths.manifestRevision(name, digest)];
    for (const d of parsed.blobs)
      if (!isNonDistributable(d)) needed.push(paths.blobData(d.digest), paths.layerLink(name, d.digest));
    for (const d of parsed.manifests) needed.push(paths.blobData(d.digest), paths.manifestRevision(name, d.digest));
    const missing = (await Promise.all(needed.map(async (p) => ((await this.driver.stat(p)) ? undefined : p)))).find(
      Boolean,
    );
    if (!missing) return;
    for (const tag of tags) {
      if ((await this.driver.get(paths.tag(name, tag)))?.toString('utf8') === digest)
        await this.driver.delete(paths.tag(name, tag));
    }
    this.blobs.forget(digest);
    throw new OciError(
      'MANIFEST_BLOB_UNKNOWN',
      `content this manifest references was garbage-collected while it was pushed (${missing}); push the image again`,
    );
  }

  /**
   * Whether `path` exists; when it is older than the GC refresh window it is rewritten first, so a GC marking right
   * now spares what this push relies on (storage/gc.ts).
   */
  private async _refresh(path: string): Promise<boolean> {
    const info = await this.driver.stat(path);
    if (!info) return false;
    if (this.blobs._stale(info.modified)) {
      const data = await this.driver.get(path);
      if (!data) return false;
      await this.driver.put(path, data);
    }
    return true;
  }

  private async _checkReferences(name: string, parsed: ParsedManifest): Promise<void> {
    for (const d of parsed.blobs) {
      if (!isDigest(d.digest)) throw new OciError('MANIFEST_INVALID', `unsupported digest ${d.digest}`);
    }
    const stored = parsed.blobs.filter((d) => !isNonDistributable(d));
    const missingBlobs = await Promise.all(
      stored.map(async (d) => ((await this.blobs.isLinked(name, d.digest)) ? undefined : d.digest)),
    );
    const blob = missingBlobs.find(Boolean);
    if (blob)
      throw new OciError('MANIFEST_BLOB_UNKNOWN', `blob ${blob} is not in repository ${name}; push it first`, {
        detail: {
          digest: blob,
        },
      });
    const missingManifests = await Promise.all(
      parsed.manifests.map(async (d) =>
        isDigest(d.digest) &&
        (await this._refresh(paths.manifestRevision(name, d.digest))) &&
        (await this._refresh(paths.blobData(d.digest)))
          ? undefined
          : d.digest,
      ),
    );
    const child = missingManifests.find(Boolean);
    if (child)
      throw new OciError('MANIFEST_BLOB_UNKNOWN', `manifest ${child} is not in repository ${name}; push it first`, {
        detail: {
          digest: child,
        },
      });
    await this._checkSizes(parsed, stored);
  }

  /**
   * A descriptor's `size` must be the stored content's size (image-spec descriptor.md: size "MUST" be the exact
   * byte count; clients allocate and verify by it, and a wrong one makes pulls fail after the push "worked").
   * distribution does not check this; MANIFEST_INVALID (not SIZE_INVALID, which the spec defines for uploads)
   * because the document is what is wrong, with the field named so the pusher can fix its tool.
   */
  private async _checkSizes(parsed: ParsedManifest, blobs: Descriptor[]): Promise<void> {
    const checks = [
      ...blobs.map((d) => ({ d, field: d === parsed.blobs[0] ? '/config' : `/layers/${parsed.blobs.indexOf(d) - 1}` })),
      ...parsed.manifests.map((d, i) => ({ d, field: `/manifests/${i}` })),
    ];
    const sizes = await Promise.all(checks.map(({ d }) => this.blobs.dataSize(d.digest)));
    checks.forEach(({ d, field }, i) => {
      const actual = sizes[i];
      if (actual === undefined || actual === d.size) return;
      throw new OciError(
        'MANIFEST_INVALID',
        `manifest invalid: ${field}/size is ${d.size} but ${d.digest} has ${actual} bytes; push the manifest with size ${actual}`,
        { detail: { field: `${field}/size`, digest: d.digest, declared: d.size, actual } },
      );
    });
  }

  /** Resolves a tag or digest to the digest stored in this repository. */
  async resolve(name: string, reference: string): Promise<Digest> {
    if (isDigest(reference)) return reference;
    if (!isValidTag(reference)) throw new OciError('TAG_INVALID', `invalid tag "${reference.slice(0, 200)}"`);
    const raw = await this._readSmall(paths.tag(name, reference));
    if (!raw) throw new OciError('MANIFEST_UNKNOWN', `manifest unknown: ${name}:${reference}`);
    return raw.toString('utf8') as Digest;
  }

  /** A small file's bytes, from `smallFiles` when a stat shows the version read last time. */
  private async _readSmall(path: string): Promise<Buffer | undefined> {
    const info = await this.driver.stat(path);
    if (!info) {
      this.smallFiles.delete(path);
      return undefined;
    }
    if (info.version === undefined) return this.driver.get(path);
    const hit = this.smallFiles.get(path);
    if (hit && hit.version === info.version) return hit.data;
    // Replaced between the stat and this read: the bytes are newer than `version`, so the next stat misses. Fine.
    const data = await this.driver.get(path);
    if (data) this.smallFiles.set(path, { version: info.version, data });
    return data;
  }

  async get(name: string, reference: string): Promise<StoredManifest> {
    const digest = await this.resolve(name, reference);
    const mediaType = await this._readSmall(paths.manifestRevision(name, digest));
    if (!mediaType) throw new OciError('MANIFEST_UNKNOWN', `manifest unknown: ${name}@${digest}`);
    let bytes = this.bytes.get(digest);
    if (!bytes) {
      bytes = await this.driver.get(paths.blobData(digest));
      if (!bytes) throw new OciError('MANIFEST_UNKNOWN', `manifest unknown: ${name}@${digest}`);
      this.bytes.set(digest, bytes);
    }
    return { digest, mediaType: mediaType.toString('utf8'), bytes };
  }

  /** Deletes a tag, or a manifest by digest together with the tags pointing at it and its referrer entry. */
  async delete(name: string, reference: string): Promise<void> {
    try {
      await this._delete(name, reference);
    } finally {
      this.changed?.(name);
    }
  }

  private async _delete(name: string, reference: string): Promise<void> {
    if (!isDigest(reference)) {
      await this.resolve(name, reference);
      await this.driver.delete(paths.tag(name, reference));
      return;
    }
    const stored = await this.get(name, reference);
    for (const tag of await this.tagsOf(name, stored.digest)) await this.driver.delete(paths.tag(name, tag));
    try {
      const parsed = parseManifest(stored.bytes, stored.mediaType);
      if (parsed.subject) await this.driver.delete(paths.referrer(name, parsed.subject.digest, stored.digest));
    } catch {
      // A stored manifest always parsed once; if it no longer does, there is no referrer entry to remove.
    }
    await this.driver.delete(paths.manifestRevision(name, stored.digest));
  }

  async tags(name: string): Promise<string[]> {
    const tags = await this.driver.list(paths.tags(name));
    if (tags.length === 0 && !(await this.repositoryExists(name))) {
      throw new OciError('NAME_UNKNOWN', `repository name not known to registry: ${name}`);
    }
    return tags;
  }

  async repositoryExists(name: string): Promise<boolean> {
    if (this.knownRepositories.has(name)) return true;
    return (await this.driver.list(paths.repository(name))).length > 0;
  }

  /** Descriptors of the manifests whose subject is `subject`, sorted by digest (distribution-spec "Listing Referrers"). */
  async referrers(name: string, subject: Digest, artifactType?: string): Promise<Descriptor[]> {
    const entries = await this.driver.list(paths.referrers(name, subject));
    const descriptors: Descriptor[] = [];
    for (const entry of entries) {
      const key = `${name}@${subject}/${entry}`;
      let d = this.descriptors.get(key);
      if (!d) {
        const raw = await this.driver.get(`${paths.referrers(name, subject)}/${entry}`);
        if (!raw) continue;
        d = JSON.parse(raw.toString('utf8')) as Descriptor;
        this.descriptors.set(key, d);
      }
      if (!artifactType || d.artifactType === artifactType) descriptors.push(d);
    }
    return descriptors.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  }

  /**
   * Makes the referrer entries of `subject` match `listed`, an upstream's referrers list (the pull-through cache):
   * entries it lists are written from its descriptors (only the descriptor fields, only manifest media types),
   * entries it no longer lists are removed — a mirror follows its upstream, as with tags. The referrer manifests
   * need not be here: they are fetched when a client asks for them, and GC drops the entry of one that never came.
   * Returns the entries kept (at most `max`).
   */
  async mirrorReferrers(name: string, subject: Digest, listed: Descriptor[], max = 1000): Promise<Descriptor[]> {
    const wanted = new Map<string, Descriptor>();
    for (const d of listed) {
      const clean = _referrerEntry(d);
      if (clean && wanted.size < max) wanted.set(`${clean.digest.replace(':', '-')}`, clean);
    }
    const dir = paths.referrers(name, subject);
    const present = await this.driver.list(dir);
    for (const entry of present) {
      if (wanted.has(entry)) continue;
      await this.driver.delete(`${dir}/${entry}`);
      this.descriptors.delete(`${name}@${subject}/${entry}`);
    }
    for (const [entry, d] of wanted) {
      if (present.includes(entry) && this.descriptors.has(`${name}@${subject}/${entry}`)) continue;
      await this.driver.put(paths.referrer(name, subject, d.digest), JSON.stringify(d));
    }
    if (wanted.size) await this._addToCatalog(name);
    return [...wanted.values()];
  }

  /** Repository names, lexically sorted. */
  async catalog(): Promise<string[]> {
    return (await this.driver.list(paths.catalogRoot)).map(paths.catalogName).sort();
  }

  private async _addToCatalog(name: string): Promise<void> {
    if (this.knownRepositories.has(name)) return;
    const entry = paths.catalogEntry(name);
    if (!(await this.driver.stat(entry))) await this.driver.put(entry, '');
    this.knownRepositories.add(name);
  }
}
