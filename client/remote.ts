// The remote medium: one repository on a registry, with the Distribution API verbs as small methods.
// Like go-containerregistry's `remote`: callers compose these (copy.ts, the builder, the pull-through cache).
// The two long procedures live beside it: blob uploads (mount, monolithic, streamed, chunked, resumed) in
// upload.ts, resumable blob downloads in download.ts.
// spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md
import { Readable, Transform } from 'node:stream';
import { digestOf, parseDigest, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex } from '../spec/manifest.js';
import { ACCEPT_ALL_MANIFESTS, OCI_INDEX, baseMediaType, isManifestType } from '../spec/media-types.js';
import { isValidName, isValidTag, parseReference, type Reference } from '../spec/reference.js';
import { repoScope } from './auth.js';
import { Registry, RegistryError, type RegistryOptions } from './registry.js';
import { BlobReader } from './download.js';
import { type BlobSource, type PushResult, uploadBlob } from './upload.js';
import { VerifyStream, verifyBytes } from './verify.js';

export type { BlobSource, PushResult } from './upload.js';

/** A manifest as fetched: exact bytes (their digest is the identity), media type and digest. */
export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

// Manifests are small documents; anything larger is refused rather than buffered (distribution's limit is 4 MiB).
const MANIFEST_LIMIT = 8 << 20;

/** Shares one Registry (and so one token cache and connection pool) per host. */
export class Client {
  private registries = new Map<string, Registry>();
  constructor(readonly options: RegistryOptions & { chunkSize?: number } = {}) {}

  registry(host: string): Registry {
    // Docker Hub's API lives on registry-1.docker.io (credentials stay keyed as docker.io, see credentials.ts).
    if (host === 'docker.io' || host === 'index.docker.io') host = 'registry-1.docker.io';
    let r = this.registries.get(host);
    if (!r) {
      r = new Registry(host, this.options);
      this.registries.set(host, r);
    }
    return r;
  }

  /** A repository handle; `push` asks for push rights up front so one token serves the whole operation. */
  repository(ref: Reference | string, opts: { push?: boolean; mountFrom?: string[] } = {}): Repository {
    const r = typeof ref === 'string' ? parseReference(ref) : ref;
    return new Repository(this.registry(r.registry), r.repository, opts, this.options.chunkSize);
  }

  /** GET /v2/_catalog, following Link pagination. */
  async *catalog(host: string, pageSize = 1000): AsyncGenerator<string> {
    yield* catalogOf(this.registry(host), pageSize);
  }
}

export class Repository {
  private readonly baseScopes: string[];
  constructor(
    readonly registry: Registry,
    readonly name: string,
    readonly opts: { push?: boolean; mountFrom?: string[] } = {},
    private readonly chunkSize?: number,
  ) {
    if (!isValidName(name)) throw new RegistryError(`invalid repository name "${name}"`, 0);
    this.baseScopes = [repoScope(name, opts.push ? ['pull', 'push'] : ['pull'])];
    // Cross-repo mounts need pull on the source in the same token (token.md "scope").
    for (const from of opts.mountFrom ?? []) if (from !== name) this.baseScopes.push(repoScope(from, ['pull']));
  }

  get host(): string {
    return this.registry.host;
  }

  private _scopes(actions?: string[]): string[] {
    return actions ? [...this.baseScopes, repoScope(this.name, actions)] : this.baseScopes;
  }

  private _path(kind: 'manifests' | 'blobs' | 'referrers', ref: string): string {
    return `/v2/${this.name}/${kind}/${ref}`;
  }

  // ---- manifests -------------------------------------------------------------------------------------------

  /** HEAD a manifest: its descriptor, or undefined when it does not exist. */
  async headManifest(reference: string, accept = ACCEPT_ALL_MANIFESTS): Promise<Descriptor | undefined> {
    _checkRef(reference);
    const res = await this.registry.request({
      method: 'HEAD',
      url: this._path('manifests', reference),
      headers: { accept },
      scopes: this._scopes(),
      ok: [200, 404],
    });
    await res.dump();
    if (res.status === 404) return undefined;
    const digest = res.header('docker-content-digest');
    const size = Number(res.header('content-length'));
    if (!digest || !Number.isFinite(size)) return undefined; // not enough to trust: callers GET instead
    return { mediaType: baseMediaType(res.header('content-type')), digest: parseDigest(digest).digest, size };
  }

  /** GET a manifest (any OCI or Docker type), verified against the digest asked for or announced. */
  async getManifest(reference: string, accept = ACCEPT_ALL_MANIFESTS): Promise<FetchedManifest> {
    _checkRef(reference);
    const res = await this.registry.request({
      method: 'GET',
      url: this._path('manifests', reference),
      headers: { accept },
      scopes: this._scopes(),
    });
    const bytes = await res.bytes(MANIFEST_LIMIT);
    let mediaType = baseMediaType(res.header('content-type'));
    if (!isManifestType(mediaType)) {
      // Some registries answer application/json: trust the document's own mediaType, else infer OCI by shape.
      try {
        const doc = JSON.parse(bytes.toString('utf8'));
        mediaType =
          doc.mediaType ?? (Array.isArray(doc.manifests) ? OCI_INDEX : 'application/vnd.oci.image.manifest.v1+json');
      } catch {
        throw new RegistryError(`manifest ${this.name}:${reference} on ${this.host} is not JSON`, res.status);
      }
    }
    let digest: Digest;
    if (reference.includes(':')) {
      digest = parseDigest(reference).digest;
      verifyBytes(bytes, digest, `manifest ${this.name}@${reference}`);
    } else {
      const announced = res.header('docker-content-digest');
      digest = digestOf(bytes, announced?.startsWith('sha512:') ? 'sha512' : 'sha256');
      if (announced && announced !== digest)
        verifyBytes(bytes, parseDigest(announced).digest, `manifest ${this.name}:${reference}`);
    }
    return { bytes, mediaType, digest };
  }

  /** PUT a manifest by tag or digest. Returns its digest and whether the registry processed its subject. */
  async putManifest(
    reference: string,
    bytes: Uint8Array,
    mediaType: string,
  ): Promise<{ digest: Digest; subjectAccepted: boolean }> {
    _checkRef(reference);
    const buf = Buffer.from(bytes);
    const res = await this.registry.request({
      method: 'PUT',
      url: this._path('manifests', reference),
      headers: { 'content-type': mediaType, 'content-length': String(buf.length) },
      body: () => buf,
      scopes: this._scopes(['pull', 'push']),
    });
    await res.dump();
    const digest = digestOf(buf);
    return { digest, subjectAccepted: !!res.header('oci-subject') };
  }

  async deleteManifest(reference: string): Promise<void> {
    _checkRef(reference);
    const res = await this.registry.request({
      method: 'DELETE',
      url: this._path('manifests', reference),
      scopes: this._scopes(['delete']),
    });
    await res.dump();
  }

  // ---- blobs -----------------------------------------------------------------------------------------------

  /** HEAD a blob: its size, or undefined when this repository does not have it. */
  async statBlob(digest: Digest): Promise<number | undefined> {
    const res = await this.registry.request({
      method: 'HEAD',
      url: this._path('blobs', digest),
      scopes: this._scopes(),
      ok: [200, 404],
    });
    await res.dump();
    return res.status === 200 ? Number(res.header('content-length') ?? NaN) : undefined;
  }

  /**
   * Streams a blob, verifying size and digest, and resuming with `Range: bytes=N-` when the connection drops.
   * The stream errors (before ending) when the content does not match the descriptor; `verify: false` skips the
   * hashing for consumers that check the digest themselves (a registry they upload to).
   */
  openBlob(desc: Pick<Descriptor, 'digest' | 'size'>, offset = 0, opts: { verify?: boolean } = {}): Readable {
    const raw = new BlobReader(desc, offset, (at) =>
      this.registry.request({
        method: 'GET',
        url: this._path('blobs', desc.digest),
        headers: at > 0 ? { range: `bytes=${at}-` } : {},
        scopes: this._scopes(),
        ok: [200, 206],
      }),
    );
    if (offset > 0 || opts.verify === false) return raw; // a partial range cannot be hashed here; the consumer verifies the whole
    const verify = new VerifyStream(desc.digest, desc.size, `blob ${this.name}@${desc.digest}`);
    raw.on('error', (e) => verify.destroy(e));
    return raw.pipe(verify);
  }

  /**
   * Opens `length` bytes of a blob from `offset`, asked for with `Range: bytes=a-b` (RFC 9110 §14.2; the distribution
   * spec lets registries serve blob GETs partially). Resolves undefined when the registry answers anything but that
   * exact part — a 200 with the whole blob (it ignores Range) or another range — so the caller can get those bytes
   * some other way; the unwanted body is dropped, not read. A part cannot be digest-checked: the stream only errors
   * when more or fewer than `length` bytes arrive.
   */
  async openBlobRange(digest: Digest, offset: number, length: number): Promise<Readable | undefined> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 1)
      throw new RangeError(`openBlobRange: bad range ${offset}+${length} of ${digest}`);
    const last = offset + length - 1;
    const res = await this.registry.request({
      method: 'GET',
      url: this._path('blobs', digest),
      headers: { range: `bytes=${offset}-${last}` },
      scopes: this._scopes(),
      ok: [200, 206],
    });
    const served = /^bytes (\d+)-(\d+)\//.exec(res.header('content-range') ?? '');
    if (res.status !== 206 || !served || Number(served[1]) !== offset || Number(served[2]) !== last) {
      res.body.destroy();
      return undefined;
    }
    const what = `bytes ${offset}-${last} of ${this.name}@${digest}`;
    let got = 0;
    const exact = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        got += chunk.length;
        cb(got > length ? new RegistryError(`${what}: the registry sent more than asked`, 206) : null, chunk);
      },
      flush(cb) {
        cb(got < length ? new RegistryError(`${what}: the registry sent ${got} bytes`, 206) : null);
      },
    });
    res.body.on('error', (e) => exact.destroy(e));
    return res.body.pipe(exact);
  }

  /** Reads a small blob (a config) fully, verified. */
  async getBlobBytes(desc: Pick<Descriptor, 'digest' | 'size'>, limit = 64 << 20): Promise<Buffer> {
    if (desc.size > limit)
      throw new RegistryError(`blob ${desc.digest} is ${desc.size} bytes, more than the ${limit} allowed here`, 0);
    const chunks: Buffer[] = [];
    for await (const c of this.openBlob(desc)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /**
   * Makes sure this repository has the blob: HEAD first (skip), then a cross-repo mount when `mountFrom` is
   * given, else an upload from `source` (monolithic PUT when small, streamed PATCH or `chunkSize` PATCHes).
   * The registry verifies the digest. After a retryable failure the upload continues from the offset the
   * registry reports for the session (spec: end-13, GET <location> → Range), or starts over when it cannot.
   */
  async pushBlob(
    desc: Pick<Descriptor, 'digest' | 'size'>,
    source: BlobSource,
    opts: { mountFrom?: string; onBytes?: (n: number) => void } = {},
  ): Promise<PushResult> {
    if ((await this.statBlob(desc.digest)) !== undefined) return 'exists';
    const target = { registry: this.registry, name: this.name, chunkSize: this.chunkSize };
    return uploadBlob(target, desc, source, this._scopes(['pull', 'push']), opts);
  }

  /** Uploads small in-memory content (configs, empty blobs, artifacts). */
  async pushBytes(bytes: Uint8Array, opts: { mountFrom?: string } = {}): Promise<Descriptor & { result: PushResult }> {
    const buf = Buffer.from(bytes);
    const digest = digestOf(buf);
    const result = await this.pushBlob({ digest, size: buf.length }, () => Readable.from([buf]), opts);
    return { mediaType: 'application/octet-stream', digest, size: buf.length, result };
  }

  async deleteBlob(digest: Digest): Promise<void> {
    const res = await this.registry.request({
      method: 'DELETE',
      url: this._path('blobs', digest),
      scopes: this._scopes(['delete']),
    });
    await res.dump();
  }

  // ---- tags and referrers -------------------------------------------------------------------------------

  /** GET /v2/N/tags/list, following `Link: <…>; rel="next"`. */
  async *tags(pageSize = 1000): AsyncGenerator<string> {
    yield* _paginate(this.registry, `/v2/${this.name}/tags/list?n=${pageSize}`, this._scopes(), 'tags');
  }

  /**
   * Manifests that refer to `digest` (signatures, SBOMs…): the referrers API, else the fallback tag
   * `<alg>-<hex>` (distribution-spec "Referrers tag schema").
   */
  async referrers(digest: Digest, artifactType?: string): Promise<Descriptor[]> {
    const q = artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : '';
    const res = await this.registry.request({
      method: 'GET',
      url: this._path('referrers', digest) + q,
      headers: { accept: OCI_INDEX },
      scopes: this._scopes(),
      ok: [200, 404, 400, 405],
    });
    const type = baseMediaType(res.header('content-type'));
    if (res.status === 200 && type === OCI_INDEX) {
      const index = JSON.parse((await res.bytes(MANIFEST_LIMIT)).toString('utf8')) as ImageIndex;
      const list = Array.isArray(index.manifests) ? index.manifests : [];
      return artifactType ? list.filter((d) => d.artifactType === artifactType) : list;
    }
    await res.dump();
    const index = await this._fallbackIndex(digest);
    const list = index?.manifests ?? [];
    return artifactType ? list.filter((d) => d.artifactType === artifactType) : list;
  }

  private async _fallbackIndex(digest: Digest): Promise<ImageIndex | undefined> {
    try {
      const m = await this.getManifest(fallbackTag(digest), OCI_INDEX);
      return JSON.parse(m.bytes.toString('utf8')) as ImageIndex;
    } catch (e) {
      if (e instanceof RegistryError && e.status === 404) return undefined;
      throw e;
    }
  }

  /** Registers a referrer in the fallback tag index (for registries without the referrers API). */
  async addReferrerFallback(subject: Digest, referrer: Descriptor): Promise<void> {
    const index: ImageIndex = (await this._fallbackIndex(subject)) ?? {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [],
    };
    if (index.manifests.some((d) => d.digest === referrer.digest)) return;
    index.manifests.push(referrer);
    await this.putManifest(fallbackTag(subject), Buffer.from(JSON.stringify(index)), OCI_INDEX);
  }
}

/** The referrers fallback tag for a digest: `sha256:abc…` → `sha256-abc…`. */
export function fallbackTag(digest: Digest): string {
  return digest.replace(':', '-').slice(0, 128);
}

/** GET /v2/_catalog of one registry, following Link pagination. */
export async function* catalogOf(registry: Registry, pageSize = 1000): AsyncGenerator<string> {
  yield* _paginate(registry, `/v2/_catalog?n=${pageSize}`, ['registry:catalog:*'], 'repositories');
}

async function* _paginate(
  registry: Registry,
  first: string,
  scopes: string[],
  field: 'tags' | 'repositories',
): AsyncGenerator<string> {
  let url: string | undefined = first;
  const seen = new Set<string>();
  while (url) {
    if (seen.has(url)) break; // a registry that links to itself would loop forever
    seen.add(url);
    const res = await registry.request({ method: 'GET', url, scopes });
    const doc = JSON.parse((await res.bytes(16 << 20)).toString('utf8'));
    for (const x of doc?.[field] ?? []) if (typeof x === 'string') yield x;
    const link = res.header('link');
    const m = link && /<([^>]+)>\s*;\s*rel="?next"?/.exec(link);
    url = m ? new URL(m[1], res.url).toString() : undefined;
  }
}

function _checkRef(reference: string): void {
  if (reference.includes(':')) parseDigest(reference);
  else if (!isValidTag(reference)) throw new RegistryError(`invalid tag "${reference}"`, 0);
}
