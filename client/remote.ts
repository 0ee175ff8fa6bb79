// The remote medium: one repository on a registry, with the Distribution API verbs as small methods.
// Like go-containerregistry's `remote`: callers compose these (copy.ts, the builder, the pull-through cache).
// spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { digestOf, parseDigest, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex } from '../spec/manifest.js';
import { ACCEPT_ALL_MANIFESTS, OCI_INDEX, baseMediaType, isManifestType } from '../spec/media-types.js';
import { isValidName, isValidTag, parseReference, type Reference } from '../spec/reference.js';
import { repoScope } from './auth.js';
import { Registry, RegistryError, type RegistryOptions } from './registry.js';
import { VerifyStream, countBytes, verifyBytes } from './verify.js';

/** A manifest as fetched: exact bytes (their digest is the identity), media type and digest. */
export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

/** Opens a blob's bytes starting at `offset` (so an interrupted upload can resume). */
export type BlobSource = (offset: number) => Readable | Promise<Readable>;

export type PushResult = 'exists' | 'mounted' | 'uploaded';

/** An open upload session: where to send the next bytes, and how many the registry holds. */
interface _Session {
  url: string;
  offset: number;
}

// Manifests are small documents; anything larger is refused rather than buffered (distribution's limit is 4 MiB).
const MANIFEST_LIMIT = 8 << 20;
// Blobs up to this size go in one PUT; larger ones stream through one PATCH (or `chunkSize` PATCHes).
const MONOLITHIC_MAX = 16 << 20;
const DOWNLOAD_RESUMES = 5;
const UPLOAD_ATTEMPTS = 3;

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
    const raw = new _BlobReader(desc, offset, (at) =>
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
    const scopes = this._scopes(['pull', 'push']);
    let session: _Session | undefined;
    if (opts.mountFrom && opts.mountFrom !== this.name) {
      // spec: end-11 — 201 when mounted, 202 + an upload session when the registry can't mount.
      const q = new URLSearchParams({ mount: desc.digest, from: opts.mountFrom });
      const res = await this.registry.request({
        method: 'POST',
        url: `/v2/${this.name}/blobs/uploads/?${q}`,
        scopes: [...scopes, repoScope(opts.mountFrom, ['pull'])],
        ok: [201, 202],
      });
      await res.dump();
      if (res.status === 201) return 'mounted';
      const location = res.header('location');
      if (location) session = { url: new URL(location, `${await this.registry.baseUrl()}/`).toString(), offset: 0 };
    }
    // Progress is told about bytes sent; a resume rewinds it to the registry's offset so totals stay true.
    let reported = 0;
    const onBytes = (n: number) => {
      reported += n;
      opts.onBytes?.(n);
    };
    const state: { session?: _Session } = { session };
    for (let attempt = 1; ; attempt++) {
      try {
        await this._upload(desc, source, state, scopes, opts.onBytes && onBytes);
        return 'uploaded';
      } catch (e) {
        if (e instanceof RegistryError && e.code === 'DIGEST_INVALID') {
          // Copies do not hash on the way (the registry does): name the source as the culprit, like VerifyStream would.
          throw new RegistryError(
            `${this.host} rejected blob ${desc.digest}: the bytes read from the source do not match that digest; the source is corrupt or was changed — retry, or check the source`,
            e.status,
            e.code,
          );
        }
        // 416: the registry disagrees about where a resumed session stands — start over.
        const misplaced = e instanceof RegistryError && e.status === 416 && !!state.session?.offset;
        if (attempt >= UPLOAD_ATTEMPTS || !(misplaced || _resumable(e))) throw e;
        await sleep(200 * 2 ** attempt);
        state.session =
          state.session && !misplaced ? await this._uploadStatus(state.session.url, desc.size, scopes) : undefined;
        const offset = state.session?.offset ?? 0;
        if (offset !== reported) onBytes(offset - reported);
      }
    }
  }

  /** Where an interrupted session stands (GET <location> → 204 + Range), or undefined to start over. */
  private async _uploadStatus(url: string, size: number, scopes: string[]): Promise<_Session | undefined> {
    try {
      const res = await this.registry.request({ method: 'GET', url, scopes, ok: [204, 200, 404, 400, 405] });
      await res.dump();
      // distribution answers `0-0` for an empty session too: resuming at 0 is then right, and a 1-byte
      // session would answer 416 below and start over.
      const m = /^(?:bytes=)?0-(\d+)$/.exec(res.header('range')?.trim() ?? '');
      if (res.status >= 300 || !m) return undefined;
      const last = Number(m[1]);
      const offset = last === 0 ? 0 : last + 1;
      if (offset > size) return undefined;
      const location = res.header('location');
      return { url: location ? new URL(location, url).toString() : url, offset };
    } catch (e) {
      if (_resumable(e)) return undefined;
      throw e;
    }
  }

  private async _upload(
    desc: Pick<Descriptor, 'digest' | 'size'>,
    source: BlobSource,
    state: { session?: _Session },
    scopes: string[],
    onBytes?: (n: number) => void,
  ): Promise<void> {
    if (!state.session) {
      const res = await this.registry.request({
        method: 'POST',
        url: `/v2/${this.name}/blobs/uploads/`,
        scopes,
        ok: [202],
      });
      await res.dump();
      const location = res.header('location');
      if (!location) throw new RegistryError(`${this.host} started an upload without a Location header`, 202);
      state.session = { url: new URL(location, `${await this.registry.baseUrl()}/`).toString(), offset: 0 };
    }
    const session = state.session;
    const counted = async (offset: number, length?: number) => {
      let s = await source(offset);
      if (length !== undefined) s = _take(s, length);
      return onBytes ? countBytes(s, onBytes) : s;
    };
    const chunk = this.chunkSize;
    if (session.offset === 0 && desc.size <= MONOLITHIC_MAX && !chunk) {
      // Monolithic: PUT <location>?digest= with the whole body. The stream is opened lazily per attempt.
      let body: Readable | undefined = await counted(0);
      const res = await this.registry.request({
        method: 'PUT',
        url: _withDigest(session.url, desc.digest),
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
        body: () => {
          const b = body;
          body = undefined;
          if (!b) throw Object.assign(new Error('upload body already consumed'), { code: 'ECONNRESET' });
          return b;
        },
        scopes,
        retry: false,
        ok: [201],
      });
      await res.dump();
      return;
    }
    // Streamed (one PATCH, no Content-Range) or chunked (Content-Range a-b per chunk), then an empty PUT.
    // A resumed session always says where its PATCH starts (Content-Range), so the registry can refuse a gap.
    const step = chunk ?? desc.size;
    while (session.offset < desc.size) {
      const offset = session.offset;
      const len = Math.min(step, desc.size - offset);
      const b = await counted(offset, len < desc.size - offset ? len : undefined);
      const headers: Record<string, string> = {
        'content-type': 'application/octet-stream',
        'content-length': String(len),
      };
      if (chunk || offset > 0) headers['content-range'] = `${offset}-${offset + len - 1}`;
      const res = await this.registry.request({
        method: 'PATCH',
        url: session.url,
        headers,
        body: () => b,
        scopes,
        retry: false,
        ok: [202],
      });
      await res.dump();
      const next = res.header('location');
      if (next) session.url = new URL(next, session.url).toString();
      session.offset = offset + len;
    }
    const res = await this.registry.request({
      method: 'PUT',
      url: _withDigest(session.url, desc.digest),
      headers: { 'content-length': '0' },
      scopes,
      ok: [201],
    });
    await res.dump();
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

function _withDigest(location: string, digest: Digest): string {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u.toString();
}

function _checkRef(reference: string): void {
  if (reference.includes(':')) parseDigest(reference);
  else if (!isValidTag(reference)) throw new RegistryError(`invalid tag "${reference}"`, 0);
}

function _resumable(e: unknown): boolean {
  if (e instanceof RegistryError) return e.retryable;
  const code = (e as any)?.code ?? (e as any)?.cause?.code;
  return (
    [
      'ECONNRESET',
      'EPIPE',
      'ETIMEDOUT',
      'UND_ERR_SOCKET',
      'UND_ERR_CLOSED',
      'ECONNABORTED',
      'ECONNREFUSED',
      'UND_ERR_ABORTED',
      'ERR_STREAM_PREMATURE_CLOSE',
    ].includes(code) || /terminated|other side closed|socket/i.test((e as Error)?.message ?? '')
  );
}

/**
 * A blob download as one Readable: the response body's chunks are pushed straight through (no per-chunk promise),
 * and a dropped connection reopens the GET with `Range: bytes=<received>-` (up to DOWNLOAD_RESUMES times).
 */
class _BlobReader extends Readable {
  private body?: Readable;
  private failures = 0;
  private skip = 0;

  constructor(
    private readonly desc: Pick<Descriptor, 'digest' | 'size'>,
    private at: number,
    private readonly get: (at: number) => Promise<{ status: number; body: Readable }>,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _construct(cb: (e?: Error | null) => void): void {
    this._open().then(() => cb(), cb);
  }

  override _read(): void {
    this.body?.resume();
  }

  override _destroy(e: Error | null, cb: (e?: Error | null) => void): void {
    this.body?.destroy();
    cb(e);
  }

  private async _open(): Promise<void> {
    const res = await this.get(this.at);
    // A server that ignores Range answers 200 with the whole blob: skip what we already have.
    this.skip = this.at > 0 && res.status === 200 ? this.at : 0;
    const body = (this.body = res.body);
    body.on('data', (chunk: Buffer) => {
      let c = chunk;
      if (this.skip) {
        if (c.length <= this.skip) {
          this.skip -= c.length;
          return;
        }
        c = c.subarray(this.skip);
        this.skip = 0;
      }
      this.at += c.length;
      if (!this.push(c)) body.pause();
    });
    body.on('end', () => {
      if (this.at >= this.desc.size) this.push(null);
      else this._failed(body, Object.assign(new Error('connection closed early'), { code: 'ECONNRESET' }));
    });
    body.on('error', (e) => this._failed(body, e));
  }

  private _failed(body: Readable, e: unknown): void {
    if (body !== this.body || this.destroyed) return;
    body.removeAllListeners('data');
    body.destroy();
    this.body = undefined;
    if (++this.failures > DOWNLOAD_RESUMES || !_resumable(e)) {
      this.destroy(e as Error);
      return;
    }
    sleep(100 * 2 ** this.failures)
      .then(() => this._open())
      .catch((err) => this.destroy(err));
  }
}

/** The first `n` bytes of a stream (chunked uploads read slices of one source). */
function _take(src: Readable, n: number): Readable {
  let left = n;
  async function* gen() {
    for await (const c of src as AsyncIterable<Buffer>) {
      if (c.length >= left) {
        yield c.subarray(0, left);
        left = 0;
        break;
      }
      left -= c.length;
      yield c;
    }
    src.destroy();
  }
  return Readable.from(gen(), { objectMode: false });
}
