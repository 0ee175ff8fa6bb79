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
// record = { "version": 1, "layers": [ { "key": "<64 hex>", "digest": "sha256:…", "diffId": "sha256:…",
//                                        "segments": [ { "key", "offset", "length", "tarLength" }, … ] }, … ],
//            "slots": { "linux/amd64 app": "<key of the layer built there>", … } }
//
// `segments` (the blob's segment map, segments.ts) and `slots` (which layer each platform's named layer was) are
// optional additions to version 1: an older berth ignores them, and a record without them still gives whole-layer
// hits. With them, a cold runner whose layer key misses (one file changed) takes the slot's recorded blob, fetches
// each unchanged segment's compressed bytes with `Range: bytes=offset-(offset+length-1)`, and builds only the
// changed ones: the same bytes as a full rebuild, since every segment is compressed on its own. A registry that
// ignores Range (answers 200) only costs that reuse: the segment is built.
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
import type { SegmentRecord } from './cache.js';
import type { Layer } from './image.js';
import type { RemoteLayerCache, RemoteSegments } from './layers.js';

export const CACHE_ARTIFACT_TYPE = 'application/vnd.berth.build-cache.v1';
export const CACHE_RECORD_TYPE = 'application/vnd.berth.build-cache.v1+json';
/** A record for 20,000 layers is ~3 MB; anything bigger is not one of ours. */
export const RECORD_MAX_BYTES = 4 << 20;
const LAYER_TYPES = new Set([OCI_LAYER_GZIP, OCI_LAYER_ZSTD]);

/** A segment as the record holds it: every field known (the uncompressed length checks a fetched part). */
export type RecordedSegment = Required<SegmentRecord>;

export interface CacheEntry {
  key: string;
  digest: Digest;
  diffId: Digest;
  /** The blob's segments, in order, back to back from offset 0 (the end-of-archive segment follows them). */
  segments?: RecordedSegment[];
}

export interface CacheRecord {
  version: 1;
  layers: CacheEntry[];
  /** Slot (platform + layer name) → key of the layer last built there. */
  slots?: Record<string, string>;
}

type _Hit = Descriptor & { diffId: Digest; segments?: RecordedSegment[] };

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
  private readonly byKey: Map<string, _Hit>;
  /** Set once the registry answers a Range request with the whole blob: no more parts are asked for. */
  private rangeIgnored = false;

  private constructor(
    readonly label: string,
    readonly repo: Repository,
    /** The cache manifest's digest. */
    readonly digest: Digest,
    entries: (_Hit & { key: string })[],
    private readonly slots: Map<string, string>,
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
      // A map that runs past the blob describes some other blob: whole-layer hits only.
      const segments = e.segments && _mapEnd(e.segments) <= d.size ? e.segments : undefined;
      return [{ mediaType: d.mediaType, digest: e.digest, size: d.size, key: e.key, diffId: e.diffId, segments }];
    });
    return new RegistryLayerCache(
      `${repo.host}/${repo.name}`,
      repo,
      m.digest,
      entries,
      new Map(Object.entries(record.slots ?? {})),
    );
  }

  async find(key: string, mediaType: string): Promise<{ layer: Layer; segments?: SegmentRecord[] } | undefined> {
    const hit = await this._present(this.byKey.get(key), mediaType);
    if (!hit) return undefined;
    const descriptor: Descriptor = { mediaType: hit.mediaType, digest: hit.digest, size: hit.size };
    const layer: Layer = { descriptor, diffId: hit.diffId, open: async () => this.repo.openBlob(descriptor) };
    return { layer, segments: hit.segments };
  }

  /** The blob last built in `slot`, with its segment map, when the record has one and the registry still has it. */
  async previous(slot: string, mediaType: string): Promise<RemoteSegments | undefined> {
    const key = this.slots.get(slot);
    const hit = key ? await this._present(this.byKey.get(key), mediaType) : undefined;
    if (!hit?.segments?.length) return undefined;
    return { segments: hit.segments, open: (s) => this._openSegment(hit, s) };
  }

  private async _openSegment(hit: _Hit, s: SegmentRecord) {
    if (this.rangeIgnored) return undefined;
    const body = await this.repo.openBlobRange(hit.digest, s.offset, s.length);
    if (!body) this.rangeIgnored = true;
    return body;
  }

  /** The hit, when its media type matches and its blob is still there: a HEAD, no body (gc may have removed it). */
  private async _present(hit: _Hit | undefined, mediaType: string): Promise<_Hit | undefined> {
    if (!hit || hit.mediaType !== mediaType) return undefined;
    const size = await this.repo.statBlob(hit.digest).catch(() => undefined);
    return size === hit.size ? hit : undefined;
  }
}

/** Where a segment map ends: the offset after its last segment. */
function _mapEnd(segments: RecordedSegment[]): number {
  const last = segments[segments.length - 1];
  return last ? last.offset + last.length : 0;
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
    const entry: CacheEntry = { key: e.key, digest: e.digest, diffId: e.diffId };
    if (e.segments !== undefined)
      entry.segments = _parseSegments(e.segments, `cache record layers[${i}].segments`, ref);
    return entry;
  });
  const record: CacheRecord = { version: 1, layers };
  if (doc.slots !== undefined) {
    if (typeof doc.slots !== 'object' || doc.slots === null || Array.isArray(doc.slots))
      throw new CacheRefError(ref, 'cache record slots is not an object of slot → layer key');
    for (const [slot, key] of Object.entries(doc.slots))
      if (typeof key !== 'string' || !/^[0-9a-f]{64}$/.test(key))
        throw new CacheRefError(ref, `cache record slots[${JSON.stringify(slot)}] is not a 64-hex layer key`);
    record.slots = doc.slots as Record<string, string>;
  }
  return record;
}

/** A segment map: segments back to back from offset 0, each with its key and lengths. */
function _parseSegments(list: unknown, where: string, ref: string): RecordedSegment[] {
  if (!Array.isArray(list)) throw new CacheRefError(ref, `${where} is not a list`);
  let end = 0;
  return list.map((s: any, j: number) => {
    if (typeof s?.key !== 'string' || !/^[0-9a-f]{64}$/.test(s.key))
      throw new CacheRefError(ref, `${where}[${j}].key is not 64 hex digits`);
    for (const f of ['offset', 'length', 'tarLength'])
      if (!Number.isSafeInteger(s[f]) || s[f] < (f === 'offset' ? 0 : 1))
        throw new CacheRefError(ref, `${where}[${j}].${f} is not a positive whole number`);
    if (s.offset !== end)
      throw new CacheRefError(ref, `${where}[${j}].offset is ${s.offset}; the segment before ends at ${end}`);
    end = s.offset + s.length;
    return { key: s.key, offset: s.offset, length: s.length, tarLength: s.tarLength };
  });
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
  const slots: [string, string][] = [];
  // A blob's segment map, from whichever of its layers knows it: a layer two platforms share is built by one and
  // a local cache hit (without the map) for the other, and the record must not depend on which came last.
  const maps = new Map<string, RecordedSegment[]>();
  for (const img of result.images)
    for (const l of img.layers) {
      const segments = _recordable(l.segments);
      if (segments) maps.set(l.layer.descriptor.digest, segments);
    }
  for (const img of result.images) {
    for (const l of img.layers) {
      if (!l.key) continue;
      const d = l.layer.descriptor;
      const segments = maps.get(d.digest);
      entries.set(l.key, { key: l.key, digest: d.digest, diffId: l.layer.diffId, ...(segments ? { segments } : {}) });
      layers.set(d.digest, { mediaType: d.mediaType, digest: d.digest, size: d.size });
      if (segments && l.remoteSlot) slots.push([l.remoteSlot, l.key]);
    }
  }
  if (!entries.size) return undefined;
  const record: CacheRecord = { version: 1, layers: [...entries.values()].sort((a, b) => _cmp(a.key, b.key)) };
  if (slots.length) record.slots = Object.fromEntries(slots.sort((a, b) => _cmp(a[0], b[0])));
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

/** A segment map worth recording: every segment's lengths known (older local caches lack tarLength). */
function _recordable(segments: SegmentRecord[] | undefined): RecordedSegment[] | undefined {
  if (!segments?.length || segments.some((s) => s.tarLength === undefined || s.length < 1)) return undefined;
  return segments.map((s) => ({ key: s.key, offset: s.offset, length: s.length, tarLength: s.tarLength! }));
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
