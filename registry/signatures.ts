// The signature policy (config `signatures`, issue 20): per repository pattern, the keys and certificates an image
// must be signed with to be pulled, in `audit` mode (log, metric, audit event) or `enforce` mode (403 DENIED naming
// the policy). Verification is signing/'s verifyImage, reading the signatures from this registry's own stores (the
// `.sig` tag, referrers), so whatever was pushed, copied with `berth copy --referrers` or replicated is checked.
//
// What is checked: GET/HEAD of a manifest, by tag or digest, that is an image or an index — not signatures,
// attestations, SBOMs or other artifacts (no filesystem layer), and not cosign's tags or the referrers fallback tag,
// which signing and verifying tools must read. Pulls by digest stay open to principals with push on the repository,
// so `cosign sign`/`notation sign` (which read the image by digest) work in an enforced repository. The children of
// an index that verified are allowed with it (a pull reads the index, then its platform's manifest by digest).
// Results are cached by digest: a verified one for `cacheTtl`, an unverified one briefly, and dropped when this
// process stores a signature for that digest. In a mirrored repository the signatures are fetched through the
// pull-through cache first, so a policy can require upstream images to be signed.
import { createHash, type KeyObject, type X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { MiddlewareHandler } from 'hono';
import { LRUCache } from 'lru-cache';
import picomatch from 'picomatch';
import {
  ARTIFACT_LIMIT,
  loadCertificates,
  loadPublicKey,
  verifyImage,
  type SignatureFormat,
  type SignatureReader,
  type VerifyResult,
} from '../signing/index.js';
import type { SignaturePolicyConfig, SignaturesConfig } from '../spec/config-schema.js';
import {
  OciError,
  isCosignTag,
  isDigest,
  isIndexType,
  isManifestType,
  parseDigest,
  type Descriptor,
  type Digest,
} from '../spec/index.js';
import { parseDuration } from '../spec/units.js';
import type { Store } from '../storage/index.js';
import type { Audit } from './audit.js';
import { ConfigError } from './config.js';
import { clientOf, type Ctx, type Env } from './context.js';
import type { Logger } from './log.js';
import type { Prefetcher, Proxy } from './proxy/index.js';

export type { SignaturesConfig, SignaturePolicyConfig } from '../spec/config-schema.js';

/** How a check came out: verified, no signature at all, or signatures none of which verified. */
export type CheckResult = 'verified' | 'unsigned' | 'invalid';

export interface SignaturePolicyStats {
  /** policy name → mode and counts of checks by result (cache hits included: each pull counts). */
  policies: Record<string, { mode: 'audit' | 'enforce'; checks: Record<CheckResult, number> }>;
}

export interface SignaturePolicy {
  middleware: MiddlewareHandler<Env>;
  stats(): SignaturePolicyStats;
  /**
   * What the policy covering `name` says of `name@digest`, from the same verdict cache pulls use (the web UI shows
   * it); undefined when no policy covers `name`. Counts no check and refuses nothing.
   */
  verdict(name: string, digest: Digest): Promise<PolicyVerdict | undefined>;
}

/** A policy's verdict on one image, as the web UI shows it. */
export interface PolicyVerdict {
  policy: string;
  mode: 'audit' | 'enforce';
  result: CheckResult;
  /** Why it did not verify. */
  reason?: string;
  /** Verified as a child of a verified index (a platform image pulled through its signed index). */
  viaIndex?: boolean;
}

/** A policy with its trust material loaded. */
export interface LoadedPolicy {
  name: string;
  mode: 'audit' | 'enforce';
  matches: (name: string) => boolean;
  keys: KeyObject[];
  certificates: X509Certificate[];
  formats?: SignatureFormat[];
}

interface _Verdict {
  result: CheckResult;
  /** Why it did not verify, for the refusal and the log. */
  reason?: string;
  /** Children of a verified index, allowed with it. */
  children?: Digest[];
}

// An unverified result is kept only this long: a signature may arrive any moment (push, then sign, then pull).
const NEGATIVE_TTL_MS = 10_000;
// When a platform manifest is pulled by digest without a signature of its own, at most this many tags are looked
// at for a signed index that holds it (another worker or replica may have verified that index).
const PARENT_SCAN_TAGS = 200;
// The referrers fallback tag (distribution-spec "Referrers tag schema"): signing tools read and write it.
const FALLBACK_TAG = /^sha(?:256-[0-9a-f]{64}|512-[0-9a-f]{128})$/;

/**
 * The policy of `config.signatures`, or undefined without policies. Throws ConfigError for unreadable trust material.
 */
export function createSignaturePolicy(
  config: SignaturesConfig | undefined,
  store: Store,
  log: Logger,
  audit?: Audit,
  proxy?: Pick<Proxy, 'prefetcher'>,
): SignaturePolicy | undefined {
  const policies = checkSignatures(config);
  if (!policies.length) return undefined;
  const ttl = parseDuration(config?.cacheTtl ?? '5m');
  const verdicts = new LRUCache<string, _Verdict>({ max: 50_000, ttl: Math.max(ttl, 1) });
  const allowedChildren = new LRUCache<string, true>({ max: 100_000, ttl: Math.max(ttl, 1) });
  const stats: SignaturePolicyStats = { policies: {} };
  for (const p of policies) stats.policies[p.name] = { mode: p.mode, checks: { verified: 0, unsigned: 0, invalid: 0 } };
  const policyFor = (name: string) => policies.find((p) => p.matches(name));
  const key = (p: LoadedPolicy, name: string, digest: string) => `${p.name}\n${name}\n${digest}`;

  const verify = async (p: LoadedPolicy, name: string, digest: Digest): Promise<_Verdict> => {
    const k = key(p, name, digest);
    const cached = verdicts.get(k);
    if (cached) return cached;
    const verdict = _verdict(
      await verifyImage(storeReader(store, name, proxy?.prefetcher(name)), digest, {
        keys: p.keys,
        certificates: p.certificates,
        formats: p.formats,
      }),
    );
    if (verdict.result === 'verified') {
      verdicts.set(k, verdict);
      const m = await store.manifests.get(name, digest).catch(() => undefined);
      for (const child of m && isIndexType(m.mediaType) ? _children(m.bytes) : [])
        allowedChildren.set(key(p, name, child), true);
    } else verdicts.set(k, verdict, { ttl: Math.min(ttl, NEGATIVE_TTL_MS) || 1 });
    return verdict;
  };

  /** Whether a signed index of `name` (by tag) holds `child`. */
  const signedParent = async (p: LoadedPolicy, name: string, child: Digest): Promise<boolean> => {
    const tags = (await store.manifests.tagNames(name).catch(() => [] as string[])).slice(0, PARENT_SCAN_TAGS);
    for (const tag of tags) {
      if (isCosignTag(tag) || FALLBACK_TAG.test(tag)) continue;
      const m = await store.manifests.get(name, tag).catch(() => undefined);
      if (!m || !isIndexType(m.mediaType) || !_children(m.bytes).includes(child)) continue;
      if ((await verify(p, name, m.digest)).result === 'verified') return true;
    }
    return false;
  };

  const check = async (c: Ctx, p: LoadedPolicy, name: string, reference: string): Promise<void> => {
    const m = await store.manifests.get(name, reference).catch(() => undefined);
    if (!m || !_isImage(m.mediaType, m.bytes)) return; // unknown (the handler says so) or an artifact
    let verdict = await verify(p, name, m.digest);
    if (verdict.result !== 'verified' && allowedChildren.has(key(p, name, m.digest))) return;
    if (verdict.result !== 'verified' && !isIndexType(m.mediaType) && (await signedParent(p, name, m.digest)))
      verdict = { result: 'verified' };
    stats.policies[p.name].checks[verdict.result]++;
    if (verdict.result === 'verified') return;
    const tag = isDigest(reference) ? undefined : reference;
    const what = `${name}${tag ? `:${tag}` : ''}@${m.digest}`;
    const reason = verdict.result === 'unsigned' ? 'it has no signature' : verdict.reason;
    const message = `${what} is not signed by a key or certificate trusted by signature policy "${p.name}": ${reason}`;
    log.warn(`signature policy: ${p.mode === 'enforce' ? 'refused' : 'would refuse'} an unverified image`, {
      policy: p.name,
      mode: p.mode,
      repository: name,
      tag,
      digest: m.digest,
      result: verdict.result,
      reason,
    });
    audit?.record({
      event: 'signature.policy',
      outcome: p.mode === 'enforce' ? 'denied' : 'failure',
      actor: c.var.subject ?? 'anonymous',
      address: clientOf(c).address,
      repository: name,
      object: 'manifest',
      digest: m.digest,
      tag,
      name: p.name,
      code: verdict.result,
      reason,
    });
    if (p.mode !== 'enforce') return;
    // HEAD answers have no body: the reason phrase carries the policy's name (containerd prints the status line).
    const outgoing = c.env?.outgoing;
    if (outgoing && c.req.method === 'HEAD') outgoing.statusMessage = `Forbidden by signature policy ${p.name}`;
    throw new OciError('DENIED', `${message}; sign it (cosign sign --key, notation sign) or pull a signed image`, {
      detail: { policy: p.name, digest: m.digest, result: verdict.result },
    });
  };

  const middleware: MiddlewareHandler<Env> = async (c, next) => {
    const { route, name, reference } = c.var.target;
    if (route !== 'manifest' || !name || !reference) return next();
    const p = policyFor(name);
    if (!p) return next();
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD') {
      if (isCosignTag(reference) || FALLBACK_TAG.test(reference)) return next();
      if (isDigest(reference) && c.var.pushAllowed?.() !== false) return next();
      await check(c, p, name, reference);
      return next();
    }
    await next();
    if (method === 'PUT' && c.res.status === 201) {
      // A signature just stored here: an "unsigned" result for its subject must not outlive it.
      const subject = _signedSubject(reference) ?? c.res.headers.get('oci-subject') ?? undefined;
      if (subject && isDigest(subject)) verdicts.delete(key(p, name, subject));
    }
  };

  const verdict = async (name: string, digest: Digest): Promise<PolicyVerdict | undefined> => {
    const p = policyFor(name);
    if (!p) return undefined;
    const v = await verify(p, name, digest);
    if (v.result !== 'verified' && allowedChildren.has(key(p, name, digest)))
      return { policy: p.name, mode: p.mode, result: 'verified', viaIndex: true };
    return { policy: p.name, mode: p.mode, result: v.result, ...(v.reason ? { reason: v.reason } : {}) };
  };

  return { middleware, stats: () => structuredClone(stats), verdict };
}

/**
 * Loads and checks `signatures.policies` (names unique, every key and certificate readable); throws ConfigError
 * naming the field. `berth config check` runs it too.
 */
export function checkSignatures(config: SignaturesConfig | undefined): LoadedPolicy[] {
  const policies = (config?.policies ?? []).map(_load);
  const names = new Set<string>();
  for (const p of policies) {
    if (names.has(p.name)) throw new ConfigError(`signatures.policies: the name "${p.name}" is used twice`);
    names.add(p.name);
  }
  return policies;
}

/**
 * Reads signatures from this registry's stores, for verifyImage. Everything returned is verified by digest. In a
 * mirrored repository `prefetch` brings the signatures into the cache first (when the upstream cannot be reached,
 * what is cached is all there is: a policy fails closed).
 */
export function storeReader(store: Store, name: string, prefetch?: Prefetcher): SignatureReader {
  return {
    async manifest(reference) {
      await prefetch?.manifest(reference).catch(() => {});
      try {
        return await store.manifests.get(name, reference);
      } catch (e) {
        if (e instanceof OciError && /UNKNOWN$/.test(e.code)) return undefined;
        throw e;
      }
    },
    async blob(desc, limit) {
      if (desc.size > limit || desc.size > ARTIFACT_LIMIT)
        throw new Error(`blob ${desc.digest} is ${desc.size} bytes, more than the ${limit} a signature may have`);
      await prefetch?.blob(desc.digest);
      if (!(await store.blobs.isLinked(name, desc.digest))) throw new Error(`blob ${desc.digest} is not in ${name}`);
      const { algorithm } = parseDigest(desc.digest);
      const hash = createHash(algorithm);
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const chunk of await store.blobs.read(desc.digest)) {
        n += (chunk as Buffer).length;
        if (n > limit) throw new Error(`blob ${desc.digest} is larger than ${limit} bytes`);
        hash.update(chunk as Buffer);
        chunks.push(chunk as Buffer);
      }
      if (`${algorithm}:${hash.digest('hex')}` !== desc.digest) throw new Error(`blob ${desc.digest} is corrupt`);
      return Buffer.concat(chunks);
    },
    async referrers(digest, artifactType) {
      await prefetch?.referrers(digest).catch(() => {});
      return store.manifests.referrers(name, digest, artifactType);
    },
  };
}

function _load(p: SignaturePolicyConfig, i: number): LoadedPolicy {
  const where = `signatures.policies[${i}] (${p.name})`;
  const read = (value: string, field: string): string => {
    if (value.includes('-----BEGIN')) return value;
    try {
      return readFileSync(value, 'utf8');
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new ConfigError(`${where}.${field}: cannot read ${value} (${why}); give a PEM file or PEM text`);
    }
  };
  const keys = (p.keys ?? []).map((k, j) => {
    try {
      return loadPublicKey(read(k, `keys[${j}]`), `${where}.keys[${j}]`);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError((e as Error).message);
    }
  });
  const certificates = (p.certificates ?? []).flatMap((f, j) => {
    try {
      return loadCertificates(read(f, `certificates[${j}]`), `${where}.certificates[${j}]`);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError((e as Error).message);
    }
  });
  const formats = p.formats as SignatureFormat[] | undefined;
  const wanted = formats ?? ['cosign', 'cosign-bundle', 'notation'];
  if (!keys.length && !wanted.includes('notation'))
    throw new ConfigError(`${where}: formats ${wanted.join(', ')} are checked with keys; add keys`);
  if (!certificates.length && wanted.every((f) => f === 'notation'))
    throw new ConfigError(`${where}: the notation format is checked with certificates; add certificates`);
  const matcher = picomatch(p.repositories, { dot: true });
  return { name: p.name, mode: p.mode, matches: (name) => matcher(name), keys, certificates, formats };
}

function _verdict(r: VerifyResult): _Verdict {
  if (r.verified) return { result: 'verified' };
  if (!r.signatures.length) return { result: 'unsigned' };
  const reasons = [...new Set(r.signatures.map((s) => `${s.format}: ${s.error ?? 'not verified'}`))];
  return { result: 'invalid', reason: reasons.join('; ').slice(0, 400) };
}

function _children(bytes: Buffer): Digest[] {
  try {
    const doc = JSON.parse(bytes.toString('utf8'));
    return (Array.isArray(doc?.manifests) ? doc.manifests : [])
      .map((d: Descriptor) => d?.digest)
      .filter((d: unknown): d is Digest => typeof d === 'string' && isDigest(d));
  } catch {
    return [];
  }
}

/**
 * Whether a manifest is something one runs (an image, or an index of images) rather than an artifact about one
 * (a signature, attestation or SBOM): an image has a filesystem layer; an index lists at least one manifest that is
 * not an artifact. A `subject` or `artifactType` alone does not make an image with layers an artifact.
 */
function _isImage(mediaType: string, bytes: Buffer): boolean {
  let doc: any;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return true;
  }
  if (isIndexType(mediaType))
    return (Array.isArray(doc?.manifests) ? doc.manifests : []).some(
      (d: Descriptor) => typeof d?.mediaType === 'string' && isManifestType(d.mediaType) && !d.artifactType,
    );
  const layers: Descriptor[] = Array.isArray(doc?.layers) ? doc.layers : [];
  return layers.some((l) => typeof l?.mediaType === 'string' && /\.tar(?:$|[+.])|\.tar\b/.test(l.mediaType));
}

/** `sha256-<hex>.sig` → `sha256:<hex>` (cosign's signature tag names its subject). */
function _signedSubject(reference: string): string | undefined {
  const m = /^(sha256)-([0-9a-f]{64})\.sig$/.exec(reference);
  return m ? `${m[1]}:${m[2]}` : undefined;
}
