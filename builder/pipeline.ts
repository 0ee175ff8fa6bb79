// A whole build, as `berth build` runs it: berth.lock → build (optionally twice, to prove it reproducible) → lock
// written → SBOMs → every Output in one loop (outputs.ts, like ko's publishers) → cache pruned. Any caller gets
// the same image the CLI does; the CLI only parses flags and prints the events this reports.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { remoteSource } from '../client/copy.js';
import { OciLayout, parseLayoutArg } from '../client/layout.js';
import type { Client } from '../client/remote.js';
import { formatPlatform } from '../spec/platform.js';
import { formatReference, parseReference } from '../spec/reference.js';
import type { Artifact } from './artifact.js';
import { build, type BuildOptions, type BuildResult } from './build.js';
import { DEFAULT_CACHE_MAX_BYTES, pruneCache } from './cache.js';
import type { BuiltLayer } from './layers.js';
import { debianChanges, lockPath, lockedBase, readLock, writeLock } from './lock.js';
import type { Output, OutputReport } from './outputs.js';
import { buildAttestations, type SignBuildOptions } from './provenance.js';
import { buildSboms } from './sbom.js';
import { CacheRefError, RegistryLayerCache, writeCache, type CacheWriteReport } from './registry-cache.js';
import { defaultCacheDir } from './cache-dir.js';
import { BuildOptionError, loadSpec } from './spec.js';
import type { Platform } from '../spec/manifest.js';

export interface PipelineOptions extends Omit<BuildOptions, 'baseDigest' | 'onLayer'> {
  /** Where the image goes, written in this order; none = build only. */
  outputs?: Output[];
  /** Fetches `base:` (and pushes, through registryOutput); used unless `resolveBase` is given. */
  client?: Client;
  /**
   * berth.lock beside the spec: 'honour' (default) builds from the digest it pins for the spec's base; 'write'
   * honours it and then rewrites it; 'update' ignores it, resolves the base afresh and rewrites it.
   */
  lock?: 'honour' | 'write' | 'update';
  /** Attach an SPDX SBOM to each image (outputs that hold referrers); default true, `sbom: false` in the spec wins. */
  sbom?: boolean;
  /** The version the SBOM names as its creator tool. */
  toolVersion?: string;
  /**
   * Sign every manifest of the build and attach a SLSA v1 provenance per platform image (provenance.ts), as
   * referrers, to the outputs that hold them. The images (and their digests) are the same as without.
   */
  sign?: Omit<SignBuildOptions, 'specFile' | 'toolVersion'>;
  /** Build twice in separate fresh caches and fail with NotReproducibleError if any digest differs. */
  checkReproducible?: boolean;
  /**
   * Before building a layer the local cache lacks, look it up by key in the registry cache at this reference
   * (registry-cache.ts): a tagged cache manifest, or an image with one attached. Needs `client`; ignored with
   * `cacheDir: false`. A cache that cannot be reached is reported (event `cache-from`) and the build goes on.
   */
  cacheFrom?: string;
  /** After the outputs, record this build's layer keys at this reference (a push target: as a referrer). */
  cacheTo?: string;
  /** Keep the layer cache under this many bytes, least recently used first (default 8 GiB). */
  cacheMaxBytes?: number;
  onEvent?: (event: PipelineEvent) => void;
}

export type PipelineEvent =
  | { type: 'layer-start'; platform: Platform; name: string; compression: string }
  | { type: 'layer'; platform: Platform; layer: BuiltLayer }
  | { type: 'output-start'; output: Output }
  | { type: 'reproducible'; digest: string }
  /**
   * berth.lock written; `base`: the base pinned (`from` the digest the old lock held for it); `changes`: Debian
   * packages added (+), removed (-) or changed (~) since the old lock.
   */
  | { type: 'lock'; path: string; changes: string[]; base?: { ref: string; from?: string; to: string } }
  | { type: 'cache-from'; ref: string; entries?: number; digest?: string; error?: string }
  | { type: 'cache-to'; report: CacheWriteReport }
  | { type: 'sbom'; artifact: Artifact }
  | { type: 'attestation'; artifact: Artifact; kind: 'signature' | 'provenance' | 'sbom' }
  | { type: 'output'; report: OutputReport }
  | { type: 'pruned'; maxBytes: number; removed: number; freedBytes: number };

export interface PipelineResult {
  build: BuildResult;
  sboms: Artifact[];
  /** With `sign`: the signature and provenance artifacts (sigstore bundles). */
  attestations: Artifact[];
  outputs: OutputReport[];
}

export class NotReproducibleError extends Error {
  constructor(readonly differences: string[]) {
    super(`not reproducible: ${differences.join('; ')}`);
  }
}

export async function runBuild(opts: PipelineOptions): Promise<PipelineResult> {
  const emit = opts.onEvent ?? (() => {});
  const previous = await readLock(opts.file).catch((e) => {
    if (opts.lock === 'update') return undefined; // a broken lock is what --update-lock replaces
    throw e;
  });
  const lock = opts.lock === 'update' ? undefined : previous;
  const buildOpts: BuildOptions = {
    ...opts,
    baseDigest: lock ? lockedBase(lock, await _specBase(opts.file)) : undefined,
    debianLock: lock?.debian,
    resolveBase: opts.resolveBase ?? (opts.client ? baseResolver(opts.client) : undefined),
    registryCache: await _openCache(opts, emit),
  };
  const result = opts.checkReproducible
    ? await _checkReproducible(buildOpts, emit)
    : await build({
        ...buildOpts,
        onLayerStart: (platform, name, compression) => emit({ type: 'layer-start', platform, name, compression }),
        onLayer: (platform, layer) => emit({ type: 'layer', platform, layer }),
      });
  if (opts.lock === 'write' || opts.lock === 'update') {
    const base = result.spec.spec.base;
    await writeLock(opts.file, {
      version: 1,
      ...(result.base && base ? { base: { ref: base, digest: result.base.digest } } : {}),
      ...(result.debian ? { debian: result.debian } : {}),
    });
    const from = previous?.base?.ref === base ? previous?.base?.digest : undefined;
    emit({
      type: 'lock',
      path: lockPath(opts.file),
      changes: debianChanges(previous?.debian, result.debian),
      ...(result.base && base ? { base: { ref: base, from, to: result.base.digest } } : {}),
    });
  }
  const outputs = opts.outputs ?? [];
  const cacheDir = opts.cacheDir === false ? undefined : (opts.cacheDir ?? defaultCacheDir());
  // SBOMs travel as referrers, so only outputs that hold them get one (a docker-archive cannot).
  const wantSbom = opts.sbom !== false && result.spec.spec.sbom !== false && outputs.some((o) => o.holdsArtifacts);
  const signed = opts.sign && outputs.some((o) => o.holdsArtifacts);
  // The SBOMs (and signatures) are made while the first output copies the image's blobs (a 20,000-file SBOM took
  // 135 ms, a changed 36 MiB layer's upload 270): an output stores its root manifest only once they are ready, so
  // a failure here still leaves every tag as it was. An output that holds no artifacts waits for them first.
  const artifactsReady = (async () => {
    const sboms = !wantSbom
      ? []
      : await buildSboms(result, {
          toolVersion: opts.toolVersion ?? 'unknown',
          contextDir: opts.context ?? dirname(resolve(opts.file)),
          cacheDir,
        });
    for (const a of sboms) emit({ type: 'sbom', artifact: a });
    const att = signed
      ? await buildAttestations(result, {
          ...opts.sign!,
          specFile: opts.file,
          toolVersion: opts.toolVersion ?? 'unknown',
          sboms,
        })
      : { signatures: [], provenance: [], sbom: [] };
    for (const a of att.signatures) emit({ type: 'attestation', artifact: a, kind: 'signature' });
    for (const a of att.provenance) emit({ type: 'attestation', artifact: a, kind: 'provenance' });
    for (const a of att.sbom) emit({ type: 'attestation', artifact: a, kind: 'sbom' });
    return { sboms, attestations: [...att.signatures, ...att.provenance, ...att.sbom] };
  })();
  artifactsReady.catch(() => {}); // awaited by the outputs and below
  const artifacts = artifactsReady.then(({ sboms, attestations }) => [...sboms, ...attestations]);
  artifacts.catch(() => {});
  const reports: OutputReport[] = [];
  for (const out of outputs) {
    if (!out.holdsArtifacts) await artifactsReady;
    emit({ type: 'output-start', output: out });
    const report = await out.write(result, out.holdsArtifacts ? artifacts : []);
    reports.push(report);
    emit({ type: 'output', report });
  }
  const { sboms, attestations } = await artifactsReady;
  if (opts.cacheTo && opts.client) {
    const pushed = outputs.filter((o) => o.kind === 'registry').map((o) => o.target);
    try {
      const report = await writeCache(result, opts.cacheTo, opts.client, pushed);
      if (report) emit({ type: 'cache-to', report });
    } catch (e) {
      throw new BuildOptionError('cacheTo', `cannot write the build cache to ${opts.cacheTo}: ${(e as Error).message}`);
    }
  }
  if (cacheDir) {
    // Everything this build's outputs came from stays; older layers go first once the cache is over its cap.
    const maxBytes = opts.cacheMaxBytes ?? DEFAULT_CACHE_MAX_BYTES;
    const keep = new Set(
      result.images.flatMap((i) => i.layers.map((l) => result.blobs.path(l.layer.descriptor.digest))),
    );
    const pruned = await pruneCache(cacheDir, maxBytes, keep);
    if (pruned.removed) emit({ type: 'pruned', maxBytes, ...pruned });
  }
  return { build: result, sboms, attestations, outputs: reports };
}

/** `base:` resolved through `client`; `oci-layout:DIR[:TAG]` reads a local layout instead. */
export function baseResolver(client: Client): NonNullable<BuildOptions['resolveBase']> {
  return async (ref) => {
    if (ref.startsWith('oci-layout:')) {
      const { dir, tag } = parseLayoutArg(ref.slice('oci-layout:'.length));
      const layout = await OciLayout.open(dir);
      return { source: layout, reference: tag ?? (await layout.find()).digest, name: ref };
    }
    const r = parseReference(ref);
    return {
      source: remoteSource(client.repository(r)),
      reference: r.digest ?? r.tag ?? 'latest',
      name: formatReference({ ...r, digest: undefined }),
    };
  };
}

/**
 * The registry cache named by `cacheFrom`, if it can be read. A bad reference, or one naming something that is
 * not a berth cache, is the caller's mistake (an error); a registry that cannot be reached only costs the reuse.
 */
async function _openCache(
  opts: PipelineOptions,
  emit: (e: PipelineEvent) => void,
): Promise<RegistryLayerCache | undefined> {
  const ref = opts.cacheFrom;
  if (!ref || !opts.client || opts.cacheDir === false) return undefined;
  try {
    const cache = await RegistryLayerCache.open(opts.client, ref);
    emit({ type: 'cache-from', ref, entries: cache?.size ?? 0, digest: cache?.digest });
    return cache;
  } catch (e) {
    if (e instanceof CacheRefError) throw new BuildOptionError('cacheFrom', e.message);
    emit({ type: 'cache-from', ref, error: (e as Error).message });
    return undefined;
  }
}

/** The spec's base (for the lock lookup); errors surface later, from build(), with file:line. */
async function _specBase(file: string): Promise<string | undefined> {
  try {
    return (await loadSpec(file)).spec.base;
  } catch {
    return undefined;
  }
}

/** Two builds with fresh caches in separate temp dirs; any differing digest is a failure that names it. */
async function _checkReproducible(opts: BuildOptions, emit: (e: PipelineEvent) => void): Promise<BuildResult> {
  const dirs = [await mkdtemp(join(tmpdir(), 'berth-repro-a-')), await mkdtemp(join(tmpdir(), 'berth-repro-b-'))];
  try {
    // Both really build: no registry cache either.
    const a = await build({ ...opts, cacheDir: dirs[0], registryCache: undefined });
    const b = await build({ ...opts, cacheDir: dirs[1], registryCache: undefined });
    const diffs: string[] = [];
    if (a.root.digest !== b.root.digest) diffs.push(`root ${a.root.digest} ≠ ${b.root.digest}`);
    a.images.forEach((ia, i) => {
      const ib = b.images[i];
      ia.layers.forEach((l, j) => {
        const m = ib.layers[j];
        if (l.layer.descriptor.digest !== m.layer.descriptor.digest)
          diffs.push(
            `${formatPlatform(ia.platform)} layer ${l.name}: ${l.layer.descriptor.digest} ≠ ${m.layer.descriptor.digest}`,
          );
      });
    });
    if (diffs.length) throw new NotReproducibleError(diffs);
    emit({ type: 'reproducible', digest: a.root.digest });
    // Outputs are written from a third, normal build (cached), so the temp dirs can go.
    return await build(opts);
  } finally {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}
