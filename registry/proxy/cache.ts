// The pull-through cache: manifests, tags and blobs of mirrored repositories, fetched from their upstream on first
// use and served from storage afterwards. Content addressed by digest is cached for good (until eviction/GC);
// tags are revalidated with a HEAD once their TTL is over, and served stale when the upstream fails. Referrers of a
// mirrored subject are the upstream's list, revalidated like tags; the referrers themselves are fetched on demand.
import { LRUCache } from 'lru-cache';
import { AuthError } from '../../client/auth.js';
import { downloadBlob, headManifest, statBlob, upstreamRegistry } from '../../client/mirror.js';
import { type Registry, RegistryError } from '../../client/registry.js';
import { Repository, type FetchedManifest } from '../../client/remote.js';
import {
  ManifestError,
  OciError,
  isDigest,
  isValidTag,
  type Descriptor,
  type Digest,
  type ErrorCode,
} from '../../spec/index.js';
import type { Store } from '../../storage/index.js';
import type { Ctx } from '../context.js';
import type { Logger } from '../log.js';
import { guardedAgent, isBlockedError } from '../net-policy.js';
import { pageParams, paginate } from '../context.js';
import { parseDigestParam, parseRange, sendStream } from '../routes/blobs.js';
import { nextLink } from '../routes/tags.js';
import type { Mapping, Upstream } from './config.js';
import { BlobFill, FillRegistry, type FillFollow, type FillLeases } from './fill.js';

export interface Counters {
  /** Served from storage without asking the upstream (manifests, tags within TTL, blobs). */
  hits: number;
  /** Fetched from the upstream (manifest GETs and blob fills started). */
  misses: number;
  /** Requests that joined a blob fill already running. */
  joined: number;
  /** Tag HEADs sent to the upstream after the TTL. */
  revalidations: number;
  /** Cached content served because the upstream failed (down, timeout, 429, 5xx). */
  staleServes: number;
  /** Failed upstream exchanges (whether or not something stale could be served). */
  upstreamErrors: number;
  /** Bytes received from upstreams for blobs. */
  bytesFetched: number;
}

export interface ProxyStats extends Counters {
  inflightFills: number;
  upstreams: Record<string, Counters>;
}

const ZERO: Counters = {
  hits: 0,
  misses: 0,
  joined: 0,
  revalidations: 0,
  staleServes: 0,
  upstreamErrors: 0,
  bytesFetched: 0,
};
// Last-pull times live in the mtime of the repository's link to the content; rewriting it at most this often.
const TOUCH_EVERY_MS = 10 * 60_000;

class UpstreamTimeout extends Error {
  readonly code = 'ETIMEDOUT';
}

export class PullThroughCache {
  private readonly registries = new Map<string, Registry>();
  private readonly fills = new FillRegistry();
  private readonly inflight = new Map<string, Promise<unknown>>();
  /** When each `<local>:<tag>` was last confirmed with the upstream. */
  private readonly validated = new LRUCache<string, number>({ max: 100_000 });
  private readonly touched = new LRUCache<string, true>({ max: 100_000, ttl: TOUCH_EVERY_MS });
  private readonly totals: Counters = { ...ZERO };
  private readonly perUpstream = new Map<string, Counters>();

  constructor(
    private readonly store: Store,
    readonly upstreams: Upstream[],
    private readonly log: Logger,
    /** Cluster workers: one worker per blob fetches it, the others follow (fill.ts). */
    private readonly leases?: FillLeases,
  ) {}

  stats(): ProxyStats {
    return {
      ...this.totals,
      inflightFills: this.fills.size,
      upstreams: Object.fromEntries([...this.perUpstream].map(([k, v]) => [k, { ...v }])),
    };
  }

  private _count(u: Upstream, key: keyof Counters, n = 1): void {
    this.totals[key] += n;
    let c = this.perUpstream.get(u.name);
    if (!c) this.perUpstream.set(u.name, (c = { ...ZERO }));
    c[key] += n;
  }

  private _registry(u: Upstream): Registry {
    let r = this.registries.get(u.name);
    if (!r) {
      r = upstreamRegistry({
        url: u.url,
        username: u.config.username,
        password: u.config.password,
        credentialsToRealm: u.config.credentialsToRealm,
        // Every connection — the upstream, each redirect hop, token realms — obeys the address policy.
        dispatcher: guardedAgent(u.policy),
      });
      this.registries.set(u.name, r);
    }
    return r;
  }

  /** Runs `fn` once for concurrent callers with the same key. */
  private _once<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let p = this.inflight.get(key) as Promise<T> | undefined;
    if (!p) {
      p = fn().finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /** Bounds an upstream exchange; `signal` aborts the request when the time is up. */
  private async _timed<T>(u: Upstream, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const e = new UpstreamTimeout(`upstream ${u.name} did not answer within ${u.timeoutMs} ms`);
        ac.abort(e);
        reject(e);
      }, u.timeoutMs);
    });
    try {
      return await Promise.race([fn(ac.signal), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private _failed(u: Upstream, e: unknown, what: string): void {
    this._count(u, 'upstreamErrors');
    this.log.warn('proxy: upstream failed', { upstream: u.name, what, err: (e as Error)?.message ?? String(e) });
  }

  // ---- manifests ---------------------------------------------------------------------------------------------

  /** Makes sure the manifest `reference` of `m` is in storage (under m.local) and current enough to serve. */
  async manifest(c: Ctx, m: Mapping): Promise<void> {
    return this.ensureManifest(m, c.var.target.reference ?? '');
  }

  /** Makes sure the manifest `reference` (tag or digest) of `m` is in storage and current enough to serve. */
  async ensureManifest(m: Mapping, reference: string): Promise<void> {
    if (isDigest(reference)) return this._manifestByDigest(m, reference);
    if (!isValidTag(reference)) return; // the handler reports it
    const key = `${m.local}:${reference}`;
    const local = await this._localTag(m.local, reference);
    const checked = this.validated.get(key);
    if (local && checked !== undefined && Date.now() - checked < m.upstream.tagTtlMs) {
      this._count(m.upstream, 'hits');
      this._touchManifest(m.local, local);
      return;
    }
    try {
      await this._once(`tag ${key}`, () => this._revalidate(m, reference, local));
    } catch (e) {
      if (local && !_isNotFound(e)) {
        this._count(m.upstream, 'staleServes');
        this.log.warn('proxy: serving a stale tag', {
          upstream: m.upstream.name,
          repository: m.local,
          tag: reference,
          digest: local,
        });
        return;
      }
      throw _asOciError(e, 'MANIFEST_UNKNOWN', `${m.remote}:${reference}`, m.upstream);
    }
  }

  private async _manifestByDigest(m: Mapping, digest: Digest): Promise<void> {
    if (await this.store.manifests.has(m.local, digest)) {
      this._count(m.upstream, 'hits');
      this._touchManifest(m.local, digest);
      return;
    }
    try {
      await this._once(`manifest ${m.local}@${digest}`, async () => {
        this._count(m.upstream, 'misses');
        await this._fetchManifest(m, digest);
      });
    } catch (e) {
      throw _asOciError(e, 'MANIFEST_UNKNOWN', `${m.remote}@${digest}`, m.upstream);
    }
  }

  /** The digest a cached tag points at, when the manifest is there too. */
  private _localTag(local: string, tag: string): Promise<Digest | undefined> {
    return this.store.manifests.tagged(local, tag);
  }

  /**
   * Asks the upstream what `tag` points at now. With a cached copy that is a HEAD (cheap, and not counted against
   * Docker Hub's pull limit); the manifest is fetched only when it changed. Without one it is a plain GET.
   */
  private async _revalidate(m: Mapping, tag: string, local: Digest | undefined): Promise<void> {
    const u = m.upstream;
    const key = `${m.local}:${tag}`;
    if (!local) {
      this._count(u, 'misses');
      await this._fetchManifest(m, tag, tag);
      this.validated.set(key, Date.now());
      return;
    }
    this._count(u, 'revalidations');
    let head;
    try {
      head = await this._timed(u, (signal) => headManifest(this._registry(u), m.remote, tag, signal));
    } catch (e) {
      this._failed(u, e, `HEAD ${m.remote}:${tag}`);
      throw e;
    }
    if (head.status === 404) {
      // Gone upstream: a mirror follows (the cached manifest stays reachable by digest).
      await this.store.manifests.untag(m.local, tag);
      this.validated.delete(key);
      throw new RegistryError(`${m.remote}:${tag} is no longer on ${u.name}`, 404);
    }
    if (head.digest === local) {
      this._count(u, 'hits');
      this._touchManifest(m.local, local);
    } else if (head.digest && (await this.store.manifests.retag(m.local, tag, head.digest))) {
      this._count(u, 'hits');
    } else {
      this._count(u, 'misses');
      await this._fetchManifest(m, head.digest ?? tag, tag);
    }
    this.validated.set(key, Date.now());
  }

  /** GETs a manifest (verified by the client against its digest) and stores it, tagged when `tag` is given. */
  private async _fetchManifest(m: Mapping, reference: string, tag?: string): Promise<void> {
    const u = m.upstream;
    let fetched: FetchedManifest;
    try {
      fetched = await this._timed(u, () => new Repository(this._registry(u), m.remote).getManifest(reference));
    } catch (e) {
      if (!_isNotFound(e)) this._failed(u, e, `GET manifest ${m.remote}:${reference}`);
      throw e;
    }
    await this._storeManifest(m.local, fetched, tag);
  }

  /**
   * Stores an upstream manifest as-is (ManifestStore.adopt: a push's write order, referrer entry and GC bracket).
   * Unlike a push, the blobs it references are not required to be here: they are fetched when a client asks for
   * them. The document is still validated (no ambiguous manifests).
   */
  private async _storeManifest(local: string, fetched: FetchedManifest, tag?: string): Promise<void> {
    try {
      await this.store.manifests.adopt(local, fetched.digest, fetched.bytes, { mediaType: fetched.mediaType, tag });
    } catch (e) {
      if (e instanceof ManifestError)
        throw new OciError('MANIFEST_INVALID', `the upstream sent an invalid manifest: ${e.message}`);
      throw e;
    }
  }

  private _touchManifest(local: string, digest: Digest): void {
    const key = `m ${local}@${digest}`;
    if (this.touched.has(key)) return;
    this.touched.set(key, true);
    this.store.manifests.touch(local, digest).catch(() => this.touched.delete(key));
  }

  // ---- blobs -------------------------------------------------------------------------------------------------

  /**
   * Serves a blob of `m`: undefined when it is (now) in storage and linked, so the normal handler serves it;
   * otherwise a response streamed from a fill, or (HEAD) the upstream's answer.
   *
   * A mirrored repository gains a blob only from bytes its own upstream sent, verified against the digest (a fill)
   * — even when the bytes are already stored for another repository. An upstream's HEAD 200 proves nothing (it can
   * claim any digest): linking on it would expose another team's private blob under the mirror's (often public)
   * namespace. For the same reason a fill serves and links only the repository it was started for.
   */
  async blob(c: Ctx, m: Mapping): Promise<Response | undefined> {
    const digest = parseDigestParam(c.var.target.reference);
    const u = m.upstream;
    const { blobs } = this.store;
    const [linked, size] = await Promise.all([blobs.isLinked(m.local, digest), blobs.dataSize(digest)]);
    if (linked && size !== undefined) {
      this._count(u, 'hits');
      this._touchBlob(m.local, digest);
      return undefined;
    }
    const key = `${m.local}@${digest}`;
    if (c.req.method === 'HEAD') {
      // Only the upstream's claim is passed on; nothing is linked.
      const running = this.fills.get(key);
      const known = running
        ? await running.then(
            (f) => f.size,
            (e) => Promise.reject(_asOciError(e, 'BLOB_UNKNOWN', `${m.remote}@${digest}`, u)),
          )
        : await this._upstreamHas(m, digest);
      return c.body(null, 200, { ..._blobHeaders(digest), 'Content-Length': String(known) });
    }
    const { fill: pending, joined } = this.fills.getOrStart(key, () => this._openFill(m, digest, key));
    let fill: BlobFill;
    try {
      fill = await pending;
    } catch (e) {
      throw _asOciError(e, 'BLOB_UNKNOWN', `${m.remote}@${digest}`, u);
    }
    if (joined) this._count(u, 'joined');
    return this._serveFill(c, fill);
  }

  /**
   * Makes sure blob `digest` is in storage and linked to `m.local`: a fill from the upstream when it is not, waited
   * for to the end (for small blobs the registry itself reads, such as signature payloads).
   */
  async ensureBlob(m: Mapping, digest: Digest): Promise<void> {
    const { blobs } = this.store;
    if ((await blobs.isLinked(m.local, digest)) && (await blobs.dataSize(digest)) !== undefined) return;
    const key = `${m.local}@${digest}`;
    const { fill } = this.fills.getOrStart(key, () => this._openFill(m, digest, key));
    try {
      await (await fill).done;
    } catch (e) {
      throw _asOciError(e, 'BLOB_UNKNOWN', `${m.remote}@${digest}`, m.upstream);
    }
  }

  /** Starts the fill here, or (cluster) follows the one another worker started for the same key. */
  private async _openFill(m: Mapping, digest: Digest, key: string): Promise<BlobFill> {
    const leases = this.leases;
    if (!leases) return this._startFill(m, digest);
    const lease = await leases.acquire(key);
    if (!lease.mine) {
      this._count(m.upstream, 'joined');
      return this._followFill(m, digest, lease.follow);
    }
    let fill: BlobFill;
    try {
      fill = await this._startFill(m, digest);
    } catch (e) {
      leases.release(key, false, (e as Error)?.message ?? String(e));
      throw e;
    }
    leases.started(key, { uploadId: fill.uploadId, size: fill.size });
    fill.onDurable = (durable) => leases.progress(key, durable);
    fill.done.then(
      () => leases.release(key, true),
      (e) => leases.release(key, false, (e as Error)?.message ?? String(e)),
    );
    return fill;
  }

  /** Waits until the holder's session is known (or its fill ended), then reads along with it. */
  private async _followFill(m: Mapping, digest: Digest, follow: FillFollow): Promise<BlobFill> {
    await new Promise<void>((resolve) => {
      const check = () => {
        if (follow.info || follow.done) resolve();
      };
      follow.onChange = check;
      check();
    });
    if (follow.info) return BlobFill.follow(this.store, digest, m.local, follow);
    if (!follow.done?.ok) throw new Error(follow.done?.error ?? 'the upstream fetch failed in another worker');
    // Published before we heard where it went: it is in storage now; a finished fill serves it from there.
    const size = await this.store.blobs.dataSize(digest);
    if (size === undefined) throw new OciError('BLOB_UNKNOWN', `blob unknown: ${digest}`, { detail: { digest } });
    return BlobFill.follow(this.store, digest, m.local, {
      info: { uploadId: '', size },
      durable: size,
      done: { ok: true },
    });
  }

  private async _startFill(m: Mapping, digest: Digest): Promise<BlobFill> {
    const u = m.upstream;
    this._count(u, 'misses');
    // `_timed` bounds the wait for the response; `abort` also ends the body later, when the fill sees it stall.
    const abort = new AbortController();
    // The upload session (a storage write) and the upstream request run side by side: neither delays the other.
    const [session, got] = await Promise.allSettled([
      this.store.uploads.start(m.local),
      this._timed(u, (timeout) => {
        timeout.addEventListener('abort', () => abort.abort(timeout.reason), { once: true });
        return downloadBlob(this._registry(u), m.remote, digest, abort.signal);
      }),
    ]);
    if (session.status === 'rejected' || got.status === 'rejected') {
      if (session.status === 'fulfilled') await this.store.uploads.cancel(session.value).catch(() => {});
      if (got.status === 'fulfilled') got.value.body.destroy();
      const e = session.status === 'rejected' ? session.reason : (got as PromiseRejectedResult).reason;
      if (got.status === 'rejected' && !_isNotFound(e)) this._failed(u, e, `GET blob ${m.remote}@${digest}`);
      throw e;
    }
    const upload = session.value;
    const download = got.value;
    const fill = new BlobFill(this.store, digest, download.size, upload, download.body, {
      idleMs: u.timeoutMs,
      abort: (e) => abort.abort(e),
    });
    const started = Date.now();
    fill.done.then(
      () => {
        this._count(u, 'bytesFetched', download.size);
        this.log.info('proxy: cached blob', {
          upstream: u.name,
          repository: m.local,
          digest,
          size: download.size,
          ms: Date.now() - started,
        });
      },
      (e) => this._failed(u, e, `fill ${m.remote}@${digest}`),
    );
    return fill;
  }

  private async _serveFill(c: Ctx, fill: BlobFill): Promise<Response> {
    const range = parseRange(c.req.header('range'), fill.size);
    const headers: Record<string, string> = _blobHeaders(fill.digest);
    const length = range ? range.end - range.start + 1 : fill.size;
    headers['Content-Length'] = String(length);
    if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${fill.size}`;
    if (length === 0) {
      await fill.done;
      return c.body(null, 200, headers);
    }
    return sendStream(c, range ? 206 : 200, headers, fill.reader(range?.start, range?.end));
  }

  /** The blob's size on the upstream; BLOB_UNKNOWN (or the upstream failure) when it does not have it. */
  private async _upstreamHas(m: Mapping, digest: Digest): Promise<number> {
    const u = m.upstream;
    let size: number | undefined;
    try {
      size = await this._timed(u, (signal) => statBlob(this._registry(u), m.remote, digest, signal));
    } catch (e) {
      this._failed(u, e, `HEAD blob ${m.remote}@${digest}`);
      throw _asOciError(e, 'BLOB_UNKNOWN', `${m.remote}@${digest}`, u);
    }
    if (size === undefined)
      throw new OciError('BLOB_UNKNOWN', `blob unknown to ${u.name}: ${m.remote}@${digest}`, { detail: { digest } });
    return size;
  }

  private _touchBlob(local: string, digest: Digest): void {
    const key = `b ${local}@${digest}`;
    if (this.touched.has(key)) return;
    this.touched.set(key, true);
    this.store.blobs.link(local, digest).catch(() => this.touched.delete(key));
  }

  // ---- referrers ---------------------------------------------------------------------------------------------

  /**
   * Brings the referrer entries of a mirrored subject in line with the upstream's list (its referrers API, else its
   * fallback tag), then the normal handler serves them from storage (artifactType filter, pagination). Asked again
   * once the upstream's tagTtl is over, like a tag; when the upstream fails, the list stored last time is served.
   * The referrer manifests and their blobs are fetched when a client asks for them, like any mirrored content.
   */
  async referrers(c: Ctx, m: Mapping): Promise<void> {
    return this.ensureReferrers(m, parseDigestParam(c.var.target.reference));
  }

  /** Brings the stored referrers list of `subject` in line with the upstream's (see referrers). */
  async ensureReferrers(m: Mapping, subject: Digest): Promise<void> {
    const u = m.upstream;
    const key = `referrers ${m.local}@${subject}`;
    const checked = this.validated.get(key);
    if (checked !== undefined && Date.now() - checked < u.tagTtlMs) {
      this._count(u, 'hits');
      return;
    }
    try {
      await this._once(key, async () => {
        this._count(u, 'misses');
        let listed: Descriptor[];
        try {
          listed = await this._timed(u, () => new Repository(this._registry(u), m.remote).referrers(subject));
        } catch (e) {
          this._failed(u, e, `referrers ${m.remote}@${subject}`);
          throw e;
        }
        await this.store.manifests.mirrorReferrers(m.local, subject, listed);
        this.validated.set(key, Date.now());
      });
    } catch (e) {
      // Stale only if a list was stored, or an empty one was seen here: an empty list never fetched would tell a
      // verifier "unsigned", which nobody knows.
      const stored = await this.store.manifests.referrers(m.local, subject).catch(() => []);
      if (!stored.length && !this.validated.has(key))
        throw _asOciError(e, 'MANIFEST_UNKNOWN', `referrers of ${m.remote}@${subject}`, u);
      this._count(u, 'staleServes');
      this.log.warn('proxy: serving a stale referrers list', {
        upstream: u.name,
        repository: m.local,
        subject,
        referrers: stored.length,
      });
    }
  }

  // ---- tags --------------------------------------------------------------------------------------------------

  /** The upstream's tag list (it is the authority); the cached tags when it fails. */
  async tags(c: Ctx, m: Mapping, requested: string): Promise<Response> {
    const u = m.upstream;
    const { n, last } = pageParams(c);
    let all: string[];
    try {
      all = await this._timed(u, async () => {
        const out: string[] = [];
        for await (const t of new Repository(this._registry(u), m.remote).tags()) out.push(t);
        return out.sort();
      });
      this._count(u, 'misses');
    } catch (e) {
      if (_isNotFound(e)) throw new OciError('NAME_UNKNOWN', `repository name not known to ${u.name}: ${m.remote}`);
      this._failed(u, e, `tags ${m.remote}`);
      try {
        all = await this.store.manifests.tags(m.local);
      } catch {
        throw _asOciError(e, 'NAME_UNKNOWN', m.remote, u);
      }
      this._count(u, 'staleServes');
    }
    const { page, more } = paginate(all, n, last);
    if (more) c.header('Link', nextLink(`/v2/${requested}/tags/list`, n!, page[page.length - 1]));
    return c.json({ name: requested, tags: page });
  }
}

function _blobHeaders(digest: Digest): Record<string, string> {
  return {
    'Docker-Content-Digest': digest,
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: `"${digest}"`,
    'Cache-Control': 'max-age=31536000',
  };
}

function _status(e: unknown): number | undefined {
  return e instanceof RegistryError || e instanceof AuthError ? e.status : undefined;
}

function _isNotFound(e: unknown): boolean {
  return _status(e) === 404 || (e instanceof OciError && /UNKNOWN$/.test(e.code));
}

/** An upstream failure as the error a client should see when nothing cached can stand in. */
function _asOciError(e: unknown, notFound: ErrorCode, what: string, u: Upstream): OciError {
  if (e instanceof OciError) return e;
  // The address stays in the server's log (_failed), not in the answer to a possibly anonymous client.
  if (isBlockedError(e))
    return new OciError(
      'DENIED',
      `upstream ${u.name} sent berth to a loopback, private or link-local address for ${what}; refused (proxy.upstreams[].allowPrivateNetworks)`,
    );
  if (_isNotFound(e))
    return new OciError(
      notFound,
      `${notFound === 'BLOB_UNKNOWN' ? 'blob' : notFound === 'NAME_UNKNOWN' ? 'repository' : 'manifest'} unknown to upstream ${u.name}: ${what}`,
    );
  if (_status(e) === 429)
    return new OciError('TOOMANYREQUESTS', `upstream ${u.name} is rate limiting; retry later`, {
      headers: {
        'Retry-After': '30',
      },
    });
  return new OciError(
    'UNAVAILABLE',
    `upstream ${u.name} is unavailable and ${what} is not cached: ${(e as Error)?.message ?? e}`,
  );
}
