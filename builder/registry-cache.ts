// The registry-backed layer cache: what lets a CI runner that starts with an empty ~/.cache/berth reuse the layers
// of an earlier build without building or downloading them.
//
// A build records each layer's cache key (cache.ts: a hash of its members' paths, metadata and content digests,
// the epoch and the compressor's identity) in a small OCI artifact, the *cache manifest*:
//
//   { mediaType: OCI image manifest, artifactType: application/vnd.berth.build-cache.v1,
//     config: { mediaType: application/vnd.berth.build-cache.v1+json, … }   ← the record: key → layer
//     layers: [ the build's own layer blobs ],                                 ← so the registry keeps them
//     subject: the image (when attached as a referrer) }
//
// record = { "version": 1, "layers": [ { "key": "<64 hex>", "digest": "sha256:…", "diffId": "sha256:…" }, … ] }
//
// `--cache-to REF` stores it: when REF is one of the build's push targets, as a referrer of the pushed image (the
// referrers API, or the fallback tag on registries without it, such as distribution 2.8.2); any other REF gets it
// as a tagged manifest, its layer blobs copied (mounted when on the same registry). `--cache-from REF` reads either
// form: REF names the cache manifest itself, or an image whose referrers include one. A cold runner thus does
// GET manifest + GET referrers + GET cache manifest + GET record, then one HEAD per reused blob: no layer bytes move.
//
// Trust: a hit makes the build use a blob by the digest the record names, without reading it. Anyone who can push
// to the cache reference can choose that blob, exactly as anyone who can push the image can; use a cache reference
// no less protected than the image's. The record is validated field by field and held to RECORD_MAX_BYTES.
import { Readable } from 'node:stream';
import { copy, remoteSource, remoteTarget, type CopyResult, type ImageSource } from '../client/copy.js';
import { RegistryError } from '../client/registry.js';
import type { Client, FetchedManifest, Repository } from '../client/remote.js';
import { canonicalBytes } from '../spec/canonical-json.js';
import { digestOf, isDigest, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageManifest } from '../spec/manifest.js';
import { OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST } from '../spec/media-types.js';
import { parseReference, type Reference } from '../spec/reference.js';
import type { BuildResult } from './build.js';
import type { Layer } from './image.js';
import type { RemoteLayerCache } from './layers.js';

export const CACHE_ARTIFACT_TYPE = 'application/vnd.berth.build-cache.v1';
export const CACHE_RECORD_TYPE = 'application/vnd.berth.build-cache.v1+json';
/** A record for 20,000 layers is ~3 MB; anything bigger is not one of ours. */
export const RECORD_MAX_BYTES = 4 << 20;
const LAYER_TYPES = new Set([OCI_LAYER_GZIP, OCI_LAYER_ZSTD]);

export interface CacheEntry {
  key: string;
  digest: Digest;
  diffId: Digest;
}

export interface CacheRecord {
  version: 1;
  layers: CacheEntry[];
}

/** A cache reference that cannot be used as given (bad reference, not a cache, unreadable record). */
export class CacheRefError extends Error {
  constructor(
    readonly ref: string,
    readonly detail: string,
  ) {
    super(`${ref}: ${detail}`);
  }
}

// ---- reading: --cache-from ----------------------------------------------------------------------------------

/** The layers a cache manifest records, found by key; each hit is checked to still exist (HEAD) before use. */
export class RegistryLayerCache implements RemoteLayerCache {
  private readonly byKey: Map<string, Descriptor & { diffId: Digest }>;

  private constructor(
    readonly label: string,
    readonly repo: Repository,
    /** The cache manifest's digest. */
    readonly digest: Digest,
    entries: (Descriptor & { key: string; diffId: Digest })[],
  ) {
    this.byKey = new Map(entries.map(({ key, ...d }) => [key, d]));
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Where hit layers are read from (outputs that need their bytes) and mounted from (a push to the same registry). */
  get source(): ImageSource {
    return remoteSource(this.repo);
  }

  /**
   * The cache at `ref`, or undefined when there is none yet (no such tag, or an image without a cache referrer).
   * Throws CacheRefError when `ref` is not a reference or names something that is not a readable cache.
   */
  static async open(client: Client, ref: string): Promise<RegistryLayerCache | undefined> {
    const r = _parseRef(ref);
    const repo = client.repository(r);
    const reference = r.digest ?? r.tag ?? 'latest';
    const top = await _notFound(() => repo.getManifest(reference));
    if (!top) return undefined;
    let m: FetchedManifest | undefined = top;
    if (_artifactType(top) !== CACHE_ARTIFACT_TYPE) {
      // An image (or index): its newest cache referrer.
      const found = await repo.referrers(top.digest, CACHE_ARTIFACT_TYPE);
      const last = found.filter((d) => d.mediaType === OCI_MANIFEST && isDigest(d.digest)).pop();
      m = last ? await _notFound(() => repo.getManifest(last.digest)) : undefined;
      if (!m) return undefined;
    }
    const doc = _json<ImageManifest>(m, ref);
    if (doc.config?.mediaType !== CACHE_RECORD_TYPE || !isDigest(doc.config.digest))
      throw new CacheRefError(ref, `${m.digest} is not a berth build cache (config is not ${CACHE_RECORD_TYPE})`);
    if (!Number.isSafeInteger(doc.config.size) || doc.config.size > RECORD_MAX_BYTES)
      throw new CacheRefError(
        ref,
        `the cache record is ${doc.config.size} bytes, over the ${RECORD_MAX_BYTES} allowed`,
      );
    const record = parseRecord(await repo.getBlobBytes(doc.config, RECORD_MAX_BYTES), ref);
    const layers = new Map((doc.layers ?? []).map((d) => [d.digest, d]));
    const entries = record.layers.flatMap((e) => {
      const d = layers.get(e.digest);
      // An entry whose blob the manifest does not list (so the registry may not keep) is no hit.
      if (!d || !LAYER_TYPES.has(d.mediaType) || !Number.isSafeInteger(d.size) || d.size < 0) return [];
      return [{ mediaType: d.mediaType, digest: e.digest, size: d.size, key: e.key, diffId: e.diffId }];
    });
    return new RegistryLayerCache(`${repo.host}/${repo.name}`, repo, m.digest, entries);
  }

  async find(key: string, mediaType: string): Promise<Layer | undefined> {
    const hit = this.byKey.get(key);
    if (!hit || hit.mediaType !== mediaType) return undefined;
    // A HEAD, no body: the blob may have been deleted (gc) since the record was written.
    const size = await this.repo.statBlob(hit.digest).catch(() => undefined);
    if (size !== hit.size) return undefined;
    const descriptor: Descriptor = { mediaType: hit.mediaType, digest: hit.digest, size: hit.size };
    return {
      descriptor,
      diffId: hit.diffId,
      open: async () => this.repo.openBlob(descriptor),
    };
  }
}

/** Validates a record's JSON, field by field; what fails is named. */
export function parseRecord(bytes: Buffer, ref = 'cache'): CacheRecord {
  let doc: any;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new CacheRefError(ref, 'the cache record is not JSON');
  }
  if (doc?.version !== 1)
    throw new CacheRefError(ref, `the cache record has version ${doc?.version}; this berth reads 1`);
  if (!Array.isArray(doc.layers)) throw new CacheRefError(ref, 'the cache record has no layers list');
  const layers: CacheEntry[] = doc.layers.map((e: any, i: number) => {
    if (typeof e?.key !== 'string' || !/^[0-9a-f]{64}$/.test(e.key))
      throw new CacheRefError(ref, `cache record layers[${i}].key is not 64 hex digits`);
    for (const f of ['digest', 'diffId'])
      if (typeof e[f] !== 'string' || !isDigest(e[f]))
        throw new CacheRefError(ref, `cache record layers[${i}].${f} is not a digest`);
    return { key: e.key, digest: e.digest, diffId: e.diffId };
  });
  return { version: 1, layers };
}

// ---- writing: --cache-to ------------------------------------------------------------------------------------

export interface CacheManifest {
  manifest: FetchedManifest;
  record: { descriptor: Descriptor; bytes: Buffer };
  /** The build's own layers it lists. */
  layers: Descriptor[];
}

/** The cache manifest for a build's layers (those with a key); canonical, so the same build gives the same digest. */
export function cacheManifest(result: BuildResult, subject?: Descriptor): CacheManifest | undefined {
  const entries = new Map<string, CacheEntry>();
  const layers = new Map<string, Descriptor>();
  for (const img of result.images) {
    for (const l of img.layers) {
      if (!l.key) continue;
      const d = l.layer.descriptor;
      entries.set(l.key, { key: l.key, digest: d.digest, diffId: l.layer.diffId });
      layers.set(d.digest, { mediaType: d.mediaType, digest: d.digest, size: d.size });
    }
  }
  if (!entries.size) return undefined;
  const record: CacheRecord = { version: 1, layers: [...entries.values()].sort((a, b) => _cmp(a.key, b.key)) };
  const bytes = canonicalBytes(record);
  const config: Descriptor = { mediaType: CACHE_RECORD_TYPE, digest: digestOf(bytes), size: bytes.length };
  const list = [...layers.values()].sort((a, b) => _cmp(a.digest, b.digest));
  const doc: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: CACHE_ARTIFACT_TYPE,
    config,
    layers: list,
    ...(subject ? { subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size } } : {}),
  };
  const mbytes = canonicalBytes(doc);
  return {
    manifest: { bytes: mbytes, mediaType: OCI_MANIFEST, digest: digestOf(mbytes) },
    record: { descriptor: config, bytes },
    layers: list,
  };
}

export interface CacheWriteReport {
  ref: string;
  digest: Digest;
  /** `referrer`: attached to the image pushed to ref; `tag`: stored under ref. */
  mode: 'referrer' | 'tag';
  /** False when the registry already held exactly this cache. */
  written: boolean;
  copy?: CopyResult;
}

/**
 * Stores the cache for `result` at `ref`. `pushed` are the references the build pushed its image to: a ref among
 * them gets the cache as a referrer of that image; any other ref gets it as a tag, its layers copied there (and
 * mounted from the first pushed repository on the same registry).
 */
export async function writeCache(
  result: BuildResult,
  ref: string,
  client: Client,
  pushed: string[],
): Promise<CacheWriteReport | undefined> {
  const r = _parseRef(ref);
  if (r.digest) throw new CacheRefError(ref, 'cache to a tag, not a digest');
  const same = pushed.map((p) => parseReference(p)).find((p) => _sameImage(p, r));
  const root: Descriptor = {
    mediaType: result.root.mediaType,
    digest: result.root.digest,
    size: result.root.bytes.length,
  };
  const cm = cacheManifest(result, same ? root : undefined);
  if (!cm) return undefined;
  if (same) {
    const target = remoteTarget(client.repository(r, { push: true }));
    if ((await target.resolve(cm.manifest.digest, { referrer: true })) === cm.manifest.digest)
      return { ref, digest: cm.manifest.digest, mode: 'referrer', written: false };
    // The layers are there (the image was pushed first); only the record is new.
    await target.pushBlob(cm.record.descriptor, (at) => Readable.from([cm.record.bytes.subarray(at)]), {});
    await target.putManifest(cm.manifest.digest, cm.manifest, { subject: root });
    return { ref, digest: cm.manifest.digest, mode: 'referrer', written: true };
  }
  const mountRepo = pushed.map((p) => parseReference(p)).find((p) => p.registry === r.registry)?.repository;
  const repo = client.repository(r, { push: true, mountFrom: mountRepo ? [mountRepo] : [] });
  // A cache tag is the cache's alone: never overwrite an image someone tagged there.
  const current = await _notFound(() => repo.getManifest(r.tag ?? 'latest'));
  if (current && _artifactType(current) !== CACHE_ARTIFACT_TYPE)
    throw new CacheRefError(
      ref,
      'holds an image, not a berth build cache; give the cache a tag of its own (e.g. REPO:buildcache) or push the image to REF',
    );
  const out = await copy(
    _cacheSource(result, cm, mountRepo ? { host: repo.host, name: mountRepo } : undefined),
    cm.manifest.digest,
    remoteTarget(repo),
    r.tag ?? 'latest',
  );
  return { ref, digest: cm.manifest.digest, mode: 'tag', written: !out.skipped, copy: out };
}

/** The cache manifest and its blobs as a copy() source: the record in memory, layers as the build has them. */
function _cacheSource(
  result: BuildResult,
  cm: CacheManifest,
  pushedRepo: { host: string; name: string } | undefined,
): ImageSource {
  const src = result.source;
  const isRecord = (d: Descriptor) => d.digest === cm.record.descriptor.digest;
  return {
    label: `${src.label} (build cache)`,
    manifest: async (reference) => {
      if (reference !== cm.manifest.digest) throw new Error(`the build cache has no manifest ${reference}`);
      return cm.manifest;
    },
    blob: (d, offset, opts) =>
      isRecord(d) ? Readable.from([cm.record.bytes.subarray(offset)]) : src.blob(d, offset, opts),
    blobOrigin: (d) => (isRecord(d) ? undefined : (src.blobOrigin?.(d) ?? pushedRepo)),
    localFile: (d) => (isRecord(d) ? undefined : src.localFile?.(d)),
  };
}

function _sameImage(a: Reference, b: Reference): boolean {
  return a.registry === b.registry && a.repository === b.repository && (a.tag ?? 'latest') === (b.tag ?? 'latest');
}

function _parseRef(ref: string): Reference {
  try {
    return parseReference(ref);
  } catch (e) {
    throw new CacheRefError(ref, (e as Error).message);
  }
}

function _artifactType(m: FetchedManifest): string | undefined {
  if (m.mediaType !== OCI_MANIFEST) return undefined;
  try {
    return (JSON.parse(m.bytes.toString('utf8')) as ImageManifest).artifactType;
  } catch {
    return undefined;
  }
}

function _json<T>(m: FetchedManifest, ref: string): T {
  try {
    return JSON.parse(m.bytes.toString('utf8')) as T;
  } catch {
    throw new CacheRefError(ref, `${m.digest} is not JSON`);
  }
}

/** undefined for a 404 (nothing there yet); every other failure is thrown. */
async function _notFound<T>(f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof RegistryError && e.status === 404) return undefined;
    throw e;
  }
}

function _cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
