// What the web UI and its JSON API show, computed from the stores (registry/ never lists storage itself). Every
// listing is filtered, sorted and paged here, on the server, so a page costs the same with 10 or 10,000 tags:
// one listing of names with write times, then reads for the visible page only.
import { LRUCache } from 'lru-cache';
import {
  OciError,
  isDigest,
  isIndexType,
  parseManifest,
  formatPlatform,
  OCI_CONFIG,
  DOCKER_CONFIG,
  type Descriptor,
  type Digest,
  type ImageIndex,
  type ImageManifest,
  type ParsedManifest,
} from '../../spec/index.js';
import type { Store, TagTime } from '../../storage/index.js';
import type { Proxy } from '../proxy/index.js';
import type { Policies, QuotaRule } from '../policy.js';
import { storeReader, type SignaturePolicy } from '../signatures.js';
import { SIGNATURE_FORMATS, verifyImage, type SignatureFormat } from '../../signing/index.js';
import type { Viewer } from './viewer.js';

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  pages: number;
  n: number;
}

export interface PageQuery {
  q?: string;
  page?: number;
  n?: number;
}

export const DEFAULT_N = 50;
export const MAX_N = 500;
/** Configs and SBOMs are parsed, so they are read whole: never more than this (a clear error beyond). */
const MAX_JSON_BLOB = 32 * 1024 * 1024;

function _page<T>(all: T[], q: PageQuery): { slice: T[]; total: number; page: number; pages: number; n: number } {
  const n = Math.min(Math.max(q.n ?? DEFAULT_N, 1), MAX_N);
  const pages = Math.max(1, Math.ceil(all.length / n));
  const page = Math.min(Math.max(q.page ?? 1, 1), pages);
  return { slice: all.slice((page - 1) * n, page * n), total: all.length, page, pages, n };
}

async function _map<T, R>(items: T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export interface RepositoryRow {
  name: string;
  namespace: string;
  tags: number;
  lastPush?: string;
  size: number;
  manifests: number;
  /** Set for a pull-through cache's repository: the upstream it mirrors. */
  mirrorOf?: string;
}

export interface QuotaRow {
  namespace: string;
  used: number;
  maxBytes: number;
}

export interface TagRow extends ImageRow {
  tag: string;
  pushed: string;
}

/** A tag row's image part: what the manifest at its digest shows (immutable). */
export interface ImageRow {
  digest: Digest;
  mediaType: string;
  artifactType?: string;
  /** Bytes of config and layers (an index: of every child). */
  size: number;
  /** `os/arch[/variant]` of each image (index children, or the image's config). */
  platforms: string[];
}

export interface ImageView {
  name: string;
  reference: string;
  digest: Digest;
  mediaType: string;
  artifactType?: string;
  size: number;
  manifest: unknown;
  annotations: Record<string, string>;
  /** An index: its children. */
  children?: Array<{ digest: Digest; mediaType: string; platform?: string; size: number; artifactType?: string }>;
  /** An image: its config and layers. */
  config?: { digest: Digest; mediaType: string; size: number; json?: unknown };
  layers?: Array<{ digest: Digest; mediaType: string; size: number; annotations?: Record<string, string> }>;
  platform?: string;
  created?: string;
  labels?: Record<string, string>;
  history?: Array<{ created?: string; created_by?: string; comment?: string; empty_layer?: boolean }>;
  /** The base image, when recorded (image-spec annotations org.opencontainers.image.base.*). */
  base?: { name?: string; digest?: string };
  subject?: Digest;
  referrers: ReferrerNode[];
  signatures: SignatureView;
}

/**
 * Whether the image is signed. With a signature policy covering the repository (`signatures.policies`), `status` is
 * its verdict from the cache pulls use — `verified`, `invalid` (signatures, none verifying) or `unsigned`; without
 * one, `not-verified` lists the signatures found unchecked (no trusted key configured), or `unsigned`.
 */
export interface SignatureView {
  status: 'verified' | 'invalid' | 'unsigned' | 'not-verified';
  policy?: { name: string; mode: 'audit' | 'enforce' };
  /** Why the policy's check failed. */
  reason?: string;
  /** Verified as a child of a signed index. */
  viaIndex?: boolean;
  /** Signatures found (cosign's `.sig` tag, sigstore bundle and notation referrers), whatever the status. */
  found: Array<{ format: SignatureFormat; manifest: Digest }>;
  count: number;
  /** Looking for signatures failed (storage); the rest of the view stands. */
  error?: string;
}

export interface ReferrerNode {
  digest: Digest;
  mediaType: string;
  artifactType?: string;
  kind: 'sbom' | 'signature' | 'attestation' | 'artifact';
  size: number;
  annotations?: Record<string, string>;
  /** The index child this referrer is attached to, when not the image itself. */
  on?: { digest: Digest; platform?: string };
  referrers: ReferrerNode[];
}

export interface SbomView {
  name: string;
  digest: Digest;
  format: string;
  document: { name?: string; spdxVersion?: string; created?: string; creators?: string[]; namespace?: string };
  kind: 'packages' | 'files';
  packages: number;
  files: number;
  rows: Page<Record<string, string>>;
}

/** What the UI reads, with small immutable caches (parsed configs and SBOMs never change for a digest). */
export class UiData {
  private readonly configs = new LRUCache<string, { json: unknown; platform?: string; created?: string }>({
    max: 20_000,
  });
  /** Tag rows' image parts by `name@digest`: a manifest never changes, and neither do its children and config. */
  private readonly images = new LRUCache<string, ImageRow>({ max: 50_000 });
  private readonly sboms = new LRUCache<string, { doc: SpdxDoc; bytes: number }>({
    max: 16,
    maxSize: 256 * 1024 * 1024,
    sizeCalculation: (v) => v.bytes || 1,
  });

  constructor(
    private readonly store: Store,
    private readonly opts: {
      proxy?: Proxy;
      policies?: Policies;
      quotas?: QuotaRule[];
      signatures?: Pick<SignaturePolicy, 'verdict'>;
    } = {},
  ) {}

  /** 404 NAME_UNKNOWN for a repository that is not there — and for one the viewer may not pull (no existence leak). */
  async requireRepository(viewer: Viewer, name: string): Promise<void> {
    if (!viewer.may(name, 'pull')) {
      if (viewer.via === 'anonymous')
        throw new OciError('UNAUTHORIZED', `log in to see ${name} (anonymous users may not pull it)`);
      throw new OciError('NAME_UNKNOWN', `repository name not known to registry: ${name}`);
    }
    if (!(await this.store.browse.exists(name)))
      throw new OciError('NAME_UNKNOWN', `repository name not known to registry: ${name}`);
  }

  async repositories(
    viewer: Viewer,
    q: PageQuery & { namespace?: string },
  ): Promise<Page<RepositoryRow> & { namespaces: Array<{ name: string; repositories: number }>; quotas: QuotaRow[] }> {
    const needle = q.q?.toLowerCase();
    const visible = (await this.store.browse.catalog()).filter((n) => viewer.may(n, 'pull'));
    const namespaces = new Map<string, number>();
    for (const n of visible) namespaces.set(_namespace(n), (namespaces.get(_namespace(n)) ?? 0) + 1);
    const matching = visible.filter(
      (n) => (!needle || n.includes(needle)) && (!q.namespace || _namespace(n) === q.namespace),
    );
    const p = _page(matching, q);
    const items = await _map(p.slice, 16, async (name) => {
      const s = await this.store.browse.summary(name);
      const mirror = this.opts.proxy?.upstreams.find((u) => name.startsWith(`${u.prefix}/`));
      return {
        name,
        namespace: _namespace(name),
        tags: s.tags,
        lastPush: s.lastPush === undefined ? undefined : new Date(s.lastPush).toISOString(),
        size: s.size,
        manifests: s.manifests,
        ...(mirror ? { mirrorOf: mirror.name } : {}),
      };
    });
    const quotas: QuotaRow[] = [];
    for (const rule of this.opts.quotas ?? []) {
      if (!visible.some((n) => n === rule.namespace || n.startsWith(`${rule.namespace}/`))) continue;
      const used = (await this.opts.policies?.usage(rule.namespace)) ?? 0;
      quotas.push({ namespace: rule.namespace, used, maxBytes: rule.maxBytes });
    }
    return {
      items,
      total: p.total,
      page: p.page,
      pages: p.pages,
      n: p.n,
      namespaces: [...namespaces].map(([name, repositories]) => ({ name, repositories })),
      quotas,
    };
  }

  async tags(
    viewer: Viewer,
    name: string,
    q: PageQuery & { sort?: 'pushed' | 'name'; order?: 'asc' | 'desc' },
  ): Promise<Page<TagRow> & { name: string; sort: string; order: string }> {
    await this.requireRepository(viewer, name);
    const sort = q.sort === 'name' ? 'name' : 'pushed';
    const order = q.order ?? (sort === 'pushed' ? 'desc' : 'asc');
    const needle = q.q;
    let all = await this.store.browse.tagTimes(name);
    if (needle) all = all.filter((t) => t.tag.includes(needle));
    const dir = order === 'asc' ? 1 : -1;
    all.sort((a, b) =>
      sort === 'name'
        ? dir * (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0)
        : dir * (a.pushed - b.pushed) || (a.tag < b.tag ? -1 : 1),
    );
    const p = _page(all, q);
    const rows = await _map(p.slice, 16, async (t) => this._tagRow(name, t));
    const items = rows.filter((r): r is TagRow => r !== undefined);
    return { items, total: p.total, page: p.page, pages: p.pages, n: p.n, name, sort, order };
  }

  private async _tagRow(name: string, t: TagTime): Promise<TagRow | undefined> {
    const digest = await this.store.browse.tagTarget(name, t);
    if (!digest) return undefined; // deleted since the listing
    const key = `${name}@${digest}`;
    let image = this.images.get(key);
    if (!image) {
      let stored: Awaited<ReturnType<Store['manifests']['get']>>;
      try {
        stored = await this.store.manifests.get(name, digest);
      } catch (e) {
        if (e instanceof OciError) return undefined; // deleted since the listing
        throw e;
      }
      const row = await this._imageRow(name, stored);
      image = row.image;
      if (row.complete) this.images.set(key, image);
    }
    return { tag: t.tag, pushed: new Date(t.pushed).toISOString(), ...image };
  }

  /** What a tag row shows of the manifest it points at: immutable for the digest, so cached by it. */
  private async _imageRow(
    name: string,
    stored: Awaited<ReturnType<Store['manifests']['get']>>,
  ): Promise<{ image: ImageRow; complete: boolean }> {
    const parsed = _parse(stored.bytes, stored.mediaType);
    const image: ImageRow = { digest: stored.digest, mediaType: stored.mediaType, size: 0, platforms: [] };
    if (!parsed) return { image, complete: true };
    image.artifactType = _artifactType(parsed);
    if (isIndexType(stored.mediaType)) {
      const children = await _map(parsed.manifests, 8, (d) => this._imageSize(name, d));
      image.size = children.reduce<number>((a, b) => a + (b ?? 0), 0);
      image.platforms = parsed.manifests.filter((d) => d.platform).map((d) => formatPlatform(d.platform!));
      // A child not (yet) here — a mirror fetches children when asked — counts 0 now: not kept.
      return { image, complete: children.every((c) => c !== undefined) };
    }
    image.size = _sum(parsed.blobs);
    const platform = (await this._config(parsed.document as ImageManifest))?.platform;
    if (platform) image.platforms = [platform];
    return { image, complete: true };
  }

  private async _imageSize(name: string, d: Descriptor): Promise<number | undefined> {
    try {
      const m = await this.store.manifests.get(name, d.digest);
      const p = _parse(m.bytes, m.mediaType);
      return p ? _sum(p.blobs) : 0;
    } catch {
      return undefined;
    }
  }

  /** The image config, parsed and summarised (cached by digest); undefined when it is not JSON or too big. */
  private async _config(m: ImageManifest) {
    const d = m.config;
    if (!d?.mediaType.endsWith('json') || d.size > MAX_JSON_BLOB || d.size <= 2) return undefined;
    const hit = this.configs.get(d.digest);
    if (hit) return hit;
    const json = await this._readJson(d.digest, d.size).catch(() => undefined);
    if (json === undefined) return undefined;
    const c = json as { os?: string; architecture?: string; variant?: string; created?: string };
    const platform =
      typeof c.os === 'string' && typeof c.architecture === 'string'
        ? formatPlatform({ os: c.os, architecture: c.architecture, variant: c.variant })
        : undefined;
    const v = { json, platform, created: typeof c.created === 'string' ? c.created : undefined };
    this.configs.set(d.digest, v);
    return v;
  }

  /** Reads a blob that must be parsed (a config, an SBOM), at most `MAX_JSON_BLOB` bytes. */
  private async _readJson(digest: Digest, size: number): Promise<unknown> {
    if (size > MAX_JSON_BLOB)
      throw new OciError(
        'SIZE_INVALID',
        `${digest} has ${size} bytes; the UI shows JSON documents up to ${MAX_JSON_BLOB}`,
      );
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of await this.store.blobs.read(digest)) {
      total += (chunk as Buffer).length;
      if (total > MAX_JSON_BLOB) throw new OciError('SIZE_INVALID', `${digest} is larger than it claims`);
      chunks.push(chunk as Buffer);
    }
    return JSON.parse(Buffer.concat(chunks, total).toString('utf8'));
  }

  async image(viewer: Viewer, name: string, reference: string): Promise<ImageView> {
    await this.requireRepository(viewer, name);
    const stored = await this.store.manifests.get(name, reference);
    const parsed = _parse(stored.bytes, stored.mediaType);
    if (!parsed) throw new OciError('MANIFEST_INVALID', `stored manifest ${stored.digest} no longer parses`);
    const doc = parsed.document;
    const view: ImageView = {
      name,
      reference,
      digest: stored.digest,
      mediaType: stored.mediaType,
      artifactType: _artifactType(parsed),
      size: stored.bytes.length,
      manifest: doc,
      annotations: doc.annotations ?? {},
      subject: parsed.subject?.digest,
      referrers: [],
      signatures: { status: 'unsigned', found: [], count: 0 },
    };
    const ann = doc.annotations ?? {};
    if (ann['org.opencontainers.image.base.name'] || ann['org.opencontainers.image.base.digest'])
      view.base = {
        name: ann['org.opencontainers.image.base.name'],
        digest: ann['org.opencontainers.image.base.digest'],
      };
    if (isIndexType(stored.mediaType)) {
      const index = doc as ImageIndex;
      view.children = await _map(index.manifests, 8, async (d) => ({
        digest: d.digest,
        mediaType: d.mediaType,
        platform: d.platform ? formatPlatform(d.platform) : undefined,
        size: (await this._imageSize(name, d)) ?? 0,
        artifactType: d.artifactType,
      }));
      view.size = view.children.reduce((a, c) => a + c.size, 0);
    } else {
      const m = doc as ImageManifest;
      view.layers = m.layers.map((l) => ({
        digest: l.digest,
        mediaType: l.mediaType,
        size: l.size,
        ...(l.annotations ? { annotations: l.annotations } : {}),
      }));
      view.size = _sum(parsed.blobs);
      const cfg = await this._config(m);
      view.config = { digest: m.config.digest, mediaType: m.config.mediaType, size: m.config.size, json: cfg?.json };
      view.platform = cfg?.platform;
      view.created = cfg?.created;
      const inner = (cfg?.json as { config?: { Labels?: Record<string, string> } } | undefined)?.config;
      if (inner?.Labels) view.labels = inner.Labels;
      const history = (cfg?.json as { history?: ImageView['history'] } | undefined)?.history;
      if (Array.isArray(history)) view.history = history.slice(0, 500);
    }
    view.referrers = await this._referrers(name, stored.digest, 0);
    // Referrers of an index's children (berth build attaches an SBOM to each platform image) are part of the tree.
    for (const child of view.children ?? []) {
      for (const r of await this._referrers(name, child.digest, 0))
        view.referrers.push({ ...r, on: { digest: child.digest, platform: child.platform } });
    }
    view.signatures = await this._signatures(name, stored.digest);
    return view;
  }

  /** The policy's verdict (its cache) when a policy covers `name`, and the signatures found, unchecked. */
  private async _signatures(name: string, digest: Digest): Promise<SignatureView> {
    const view: SignatureView = { status: 'unsigned', found: [], count: 0 };
    try {
      // No trust material: every signature in every format is found and reported, none verified.
      const found = await verifyImage(storeReader(this.store, name), digest, { formats: SIGNATURE_FORMATS });
      view.found = found.signatures.map((s) => ({ format: s.format, manifest: s.manifest }));
      view.count = view.found.length;
      const verdict = await this.opts.signatures?.verdict(name, digest);
      if (verdict) {
        view.status = verdict.result;
        view.policy = { name: verdict.policy, mode: verdict.mode };
        if (verdict.reason) view.reason = verdict.reason;
        if (verdict.viaIndex) view.viaIndex = true;
      } else if (view.count) view.status = 'not-verified';
    } catch (e) {
      view.error = `could not look for signatures: ${(e as Error).message}`;
    }
    return view;
  }

  private async _referrers(name: string, subject: Digest, depth: number): Promise<ReferrerNode[]> {
    if (depth > 3) return [];
    const list = await this.store.manifests.referrers(name, subject);
    return _map(list.slice(0, 200), 8, async (d) => ({
      digest: d.digest,
      mediaType: d.mediaType,
      artifactType: d.artifactType,
      kind: referrerKind(d.artifactType),
      size: d.size,
      ...(d.annotations ? { annotations: d.annotations } : {}),
      referrers: await this._referrers(name, d.digest, depth + 1),
    }));
  }

  async sbom(
    viewer: Viewer,
    name: string,
    digest: string,
    q: PageQuery & { kind?: 'packages' | 'files' },
  ): Promise<SbomView> {
    await this.requireRepository(viewer, name);
    if (!isDigest(digest)) throw new OciError('DIGEST_INVALID', `"${digest.slice(0, 100)}" is not a digest`);
    const stored = await this.store.manifests.get(name, digest);
    const parsed = _parse(stored.bytes, stored.mediaType);
    const m = parsed?.document as ImageManifest | undefined;
    const sbomLayer =
      m?.layers?.find((l) => /spdx\+json|spdx/.test(l.mediaType)) ??
      (/spdx/.test(parsed?.artifactType ?? '') ? m?.layers?.[0] : undefined);
    if (!sbomLayer)
      throw new OciError(
        'MANIFEST_INVALID',
        `${digest} is not an SPDX SBOM (artifactType ${parsed?.artifactType ?? 'none'}); the UI reads SPDX 2.x JSON`,
      );
    // The blob must be linked into this repository: the viewer's right to pull `name` covers only its own blobs.
    await this.store.blobs.stat(name, sbomLayer.digest);
    let entry = this.sboms.get(sbomLayer.digest);
    if (!entry) {
      const doc = (await this._readJson(sbomLayer.digest, sbomLayer.size)) as SpdxDoc;
      if (!doc || typeof doc !== 'object' || typeof doc.spdxVersion !== 'string')
        throw new OciError('MANIFEST_INVALID', `${sbomLayer.digest} is not an SPDX JSON document (no spdxVersion)`);
      entry = { doc, bytes: sbomLayer.size };
      this.sboms.set(sbomLayer.digest, entry);
    }
    const doc = entry.doc;
    const kind = q.kind === 'files' ? 'files' : 'packages';
    const packages = (Array.isArray(doc.packages) ? doc.packages : []).map(_packageRow);
    const files = (Array.isArray(doc.files) ? doc.files : []).map(_fileRow);
    const needle = q.q?.toLowerCase();
    const rows = (kind === 'files' ? files : packages).filter(
      (r) => !needle || Object.values(r).some((v) => v.toLowerCase().includes(needle)),
    );
    const p = _page(rows, q);
    return {
      name,
      digest: stored.digest,
      format: doc.spdxVersion ?? 'SPDX',
      document: {
        name: _str(doc.name),
        spdxVersion: _str(doc.spdxVersion),
        created: _str(doc.creationInfo?.created),
        creators: Array.isArray(doc.creationInfo?.creators) ? doc.creationInfo.creators.map(String) : undefined,
        namespace: _str(doc.documentNamespace),
      },
      kind,
      packages: packages.length,
      files: files.length,
      rows: { items: p.slice, total: p.total, page: p.page, pages: p.pages, n: p.n },
    };
  }

  /** The pull-through cache: counters, and the cached repositories the viewer may pull, per upstream. */
  async mirrors(viewer: Viewer, q: PageQuery) {
    const proxy = this.opts.proxy;
    if (!proxy) return { enabled: false, upstreams: [] };
    const stats = proxy.stats();
    const catalog = await this.store.browse.catalog();
    const upstreams = await _map(proxy.upstreams, 2, async (u) => {
      const names = catalog.filter((n) => n.startsWith(`${u.prefix}/`) && viewer.may(n, 'pull'));
      const p = _page(names, q);
      const repositories = await _map(p.slice, 8, async (name) => {
        const s = await this.store.browse.summary(name);
        const tags = await this.store.browse.tagTimes(name);
        return {
          name,
          remote: name.slice(u.prefix.length + 1),
          tags: tags.map((t) => ({ tag: t.tag, refreshed: new Date(t.pushed).toISOString() })).slice(0, 50),
          lastRefresh: s.lastPush === undefined ? undefined : new Date(s.lastPush).toISOString(),
          size: s.size,
        };
      });
      return {
        name: u.name,
        url: u.url,
        prefix: u.prefix,
        tagTtlMs: u.tagTtlMs,
        counters: stats.upstreams[u.name] ?? null,
        repositories: { items: repositories, total: p.total, page: p.page, pages: p.pages, n: p.n },
      };
    });
    return {
      enabled: true,
      totals: { hits: stats.hits, misses: stats.misses, inflightFills: stats.inflightFills },
      upstreams,
    };
  }
}

interface SpdxDoc {
  spdxVersion?: string;
  name?: string;
  documentNamespace?: string;
  creationInfo?: { created?: string; creators?: unknown[] };
  packages?: Array<Record<string, unknown>>;
  files?: Array<Record<string, unknown>>;
}

function _str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function _packageRow(p: Record<string, unknown>): Record<string, string> {
  const refs = Array.isArray(p.externalRefs) ? (p.externalRefs as Array<Record<string, unknown>>) : [];
  const purl = refs.find((r) => r.referenceType === 'purl')?.referenceLocator;
  return {
    name: _str(p.name) ?? '',
    version: _str(p.versionInfo) ?? '',
    license: _str(p.licenseConcluded) ?? _str(p.licenseDeclared) ?? '',
    supplier: _str(p.supplier) ?? '',
    purl: _str(purl) ?? '',
    id: _str(p.SPDXID) ?? '',
  };
}

function _fileRow(f: Record<string, unknown>): Record<string, string> {
  const sums = Array.isArray(f.checksums) ? (f.checksums as Array<Record<string, unknown>>) : [];
  const sum = sums.find((s) => s.algorithm === 'SHA256') ?? sums[0];
  return {
    name: _str(f.fileName) ?? '',
    checksum: sum ? `${String(sum.algorithm).toLowerCase()}:${String(sum.checksumValue)}` : '',
    license: _str(f.licenseConcluded) ?? '',
    id: _str(f.SPDXID) ?? '',
  };
}

/** How the UI labels a referrer, from its artifactType (SPDX/CycloneDX, cosign/notation/sigstore, in-toto). */
export function referrerKind(artifactType: string | undefined): ReferrerNode['kind'] {
  const t = artifactType ?? '';
  if (/spdx|cyclonedx|syft|sbom/i.test(t)) return 'sbom';
  if (/signature|cosign.*sig|notary|sigstore\.bundle/i.test(t)) return 'signature';
  if (/in-toto|attestation|provenance|slsa|vex/i.test(t)) return 'attestation';
  return 'artifact';
}

/** An artifact's type (OCI 1.1 artifactType, or a config media type that is no image config); undefined for images. */
function _artifactType(p: ParsedManifest): string | undefined {
  const t = p.artifactType;
  return t && t !== OCI_CONFIG && t !== DOCKER_CONFIG ? t : undefined;
}

function _namespace(name: string): string {
  const i = name.indexOf('/');
  return i < 0 ? '' : name.slice(0, i);
}

function _sum(ds: Descriptor[]): number {
  return ds.reduce((a, d) => a + (d.size ?? 0), 0);
}

function _parse(bytes: Buffer, mediaType: string): ParsedManifest | undefined {
  try {
    return parseManifest(bytes, mediaType);
  } catch {
    return undefined;
  }
}
