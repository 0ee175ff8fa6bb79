// Scheduled sync (`sync:` rules; `berth sync` for one run): copies the images a rule selects from an upstream into
// this registry's storage with client/copy.ts — byte for byte (digests never change, so signatures still verify),
// only what is missing (a tag already at the upstream's digest is skipped, a stored blob is not fetched again), so
// a run that was killed resumes where it stopped. One replica runs a rule at a time (storage lease, as GC's); each
// run's outcome is written to storage so every replica reports it (status endpoint, metrics).
import { isIP } from 'node:net';
import pLimit from 'p-limit';
import picomatch from 'picomatch';
import { Bandwidth } from '../../client/bandwidth.js';
import { copy, remoteSource, type CopyResult, type ImageSource } from '../../client/copy.js';
import { upstreamRegistry } from '../../client/mirror.js';
import { catalogOf, Repository } from '../../client/remote.js';
import type { Registry as UpstreamRegistry } from '../../client/registry.js';
import type { SyncRule } from '../../spec/config-schema.js';
import { isValidName, type ImageIndex, type ImageManifest } from '../../spec/index.js';
import { isIndexType } from '../../spec/media-types.js';
import { parsePlatform } from '../../spec/platform.js';
import { checkTagFilter, filterTags, needsCreated, type TagFilter } from '../../spec/tag-filter.js';
import { parseDuration } from '../../spec/units.js';
import type { Store } from '../../storage/index.js';
import { ConfigError } from '../config.js';
import type { Logger } from '../log.js';
import { addressPolicy, guardedAgent, privateNetworksProblem, type AddressPolicy } from '../net-policy.js';
import type { Upstream } from '../proxy/config.js';
import { storeTarget } from './media.js';

export type { SyncRule };

/** A rule checked and resolved against the proxy upstreams. */
export interface ResolvedSyncRule {
  name: string;
  url: string;
  /** Local repository = prefix + '/' + upstream name (or the upstream name when no prefix). */
  prefix?: string;
  rule: SyncRule;
  scheduleMs?: number;
  registry(): UpstreamRegistry;
}

/** What one run of one rule did; also what is stored as its status. */
export interface SyncRunStatus {
  rule: string;
  /**
   * `ok`: every selected image is here; `failed`: some are not (see errors); `busy`: another replica ran it;
   * `never`: no run yet; `interrupted`: the run stopped without finishing (its process died); the next resumes.
   */
  result: 'ok' | 'failed' | 'busy' | 'running' | 'never' | 'interrupted';
  startedAt: string;
  finishedAt?: string;
  repositories: number;
  images: { copied: number; skipped: number; failed: number };
  blobs: { uploaded: number; mounted: number; existed: number };
  bytes: number;
  referrers: number;
  /** The first errors, `repo:tag: message`. */
  errors: string[];
}

const MAX_ERRORS = 20;

class LeaseLostError extends Error {
  constructor() {
    super('another replica took over this rule (lease lost); it carries on, this run stopped');
  }
}
/** Cosign's tag scheme (`sha256-<hex>.sig|.att|.sbom`) and the referrers fallback tag (`sha256-<hex>`). */
const DIGEST_TAG = /^(sha256|sha512)-([0-9a-f]{64}|[0-9a-f]{128})(\.[a-z]+)?$/;
const LEASE_TTL_MS = 10_000;

export function resolveSyncRules(rules: SyncRule[] | undefined, upstreams: Upstream[]): ResolvedSyncRule[] {
  const out: ResolvedSyncRule[] = [];
  for (const [i, r] of (rules ?? []).entries()) {
    const where = `sync[${i}] (${r.name})`;
    if (out.some((o) => o.name === r.name)) throw new ConfigError(`${where}: another rule has this name`);
    if (!!r.upstream === !!r.url)
      throw new ConfigError(`${where}: name the source with either upstream (a proxy.upstreams name) or url`);
    let url: string;
    let prefix = r.prefix;
    let creds: { username?: string; password?: string; allowPrivateNetworks?: boolean | string[] } = r;
    if (r.upstream) {
      const u = upstreams.find((x) => x.name === r.upstream);
      if (!u)
        throw new ConfigError(
          `${where}: upstream "${r.upstream}" is not in proxy.upstreams (have: ${upstreams.map((x) => x.name).join(', ') || 'none'})`,
        );
      url = u.url;
      prefix ??= u.prefix;
      creds = u.config;
    } else url = new URL(r.url!).origin;
    const problem = privateNetworksProblem(creds.allowPrivateNetworks);
    if (problem) throw new ConfigError(`${where}: ${problem}`);
    try {
      checkTagFilter(r.tags ?? {});
      for (const p of r.platforms ?? []) parsePlatform(p);
    } catch (e) {
      throw new ConfigError(`${where}: ${(e as Error).message}`);
    }
    for (const repo of r.repositories)
      if (!_isGlob(repo) && !isValidName(prefix ? `${prefix}/${repo}` : repo))
        throw new ConfigError(`${where}: "${repo}" is not a valid repository name`);
    let registry: UpstreamRegistry | undefined;
    const policy = addressPolicy(creds.allowPrivateNetworks ?? false);
    checkReachable(where, url, policy);
    out.push({
      name: r.name,
      url,
      prefix,
      rule: r,
      scheduleMs: r.schedule ? parseDuration(r.schedule) : undefined,
      registry: () =>
        (registry ??= upstreamRegistry({
          url,
          username: creds.username,
          password: creds.password,
          retries: 3,
          // Every connection (redirects and token realms too) obeys the rule's address policy.
          dispatcher: guardedAgent(policy),
        })),
    });
  }
  return out;
}

/** A literal internal address the policy refuses could never be reached: a start-up error, not one per run. */
export function checkReachable(where: string, url: string, policy: AddressPolicy): void {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if ((isIP(host) && !policy.allows(host)) || (/^localhost$|\.localhost$/i.test(host) && !policy.allows('127.0.0.1')))
    throw new ConfigError(
      `${where}: ${u.host} is a loopback or private address; set allowPrivateNetworks: true (or list its network) to reach it`,
    );
}

export interface SyncJob {
  readonly rules: ResolvedSyncRule[];
  /** Runs the named rules (default: all) once, one after another; resolves with each run's status. */
  run(
    names?: string[],
    opts?: { onImage?: (rule: string, image: string, r: CopyResult | Error) => void },
  ): Promise<SyncRunStatus[]>;
  /** The stored status of every rule (any replica's last run), with this process's running ones. */
  status(): Promise<SyncRunStatus[]>;
  /** Totals of this process's runs per rule, for metrics. */
  stats(): Record<
    string,
    {
      runs: Record<'ok' | 'failed' | 'busy', number>;
      images: SyncRunStatus['images'];
      bytes: number;
      lastSuccess?: number;
      running: boolean;
    }
  >;
  /** Schedules the rules that have a `schedule` (first run at once). */
  start(): void;
  stop(): void;
}

export function createSync(rules: ResolvedSyncRule[], store: Store, log: Logger): SyncJob {
  const running = new Map<string, SyncRunStatus>();
  const timers: NodeJS.Timeout[] = [];
  const totals: ReturnType<SyncJob['stats']> = {};
  for (const r of rules)
    totals[r.name] = {
      runs: { ok: 0, failed: 0, busy: 0 },
      images: { copied: 0, skipped: 0, failed: 0 },
      bytes: 0,
      running: false,
    };

  const runRule = async (
    r: ResolvedSyncRule,
    onImage?: (rule: string, image: string, res: CopyResult | Error) => void,
  ): Promise<SyncRunStatus> => {
    const status: SyncRunStatus = {
      rule: r.name,
      result: 'running',
      startedAt: new Date().toISOString(),
      repositories: 0,
      images: { copied: 0, skipped: 0, failed: 0 },
      blobs: { uploaded: 0, mounted: 0, existed: 0 },
      bytes: 0,
      referrers: 0,
      errors: [],
    };
    const t = totals[r.name];
    const lease = await store.mirror.lease('sync', r.name, LEASE_TTL_MS);
    if (!lease) {
      t.runs.busy++;
      log.info('sync skipped: another replica is running this rule', { rule: r.name });
      return { ...status, result: 'busy', finishedAt: new Date().toISOString() };
    }
    running.set(r.name, status);
    t.running = true;
    // Progress lands in storage as the run goes, so every replica's status endpoint shows it.
    // Writes go one after another, so a progress write never lands after the final one.
    let saving: Promise<unknown> = Promise.resolve();
    const save = () => {
      const snapshot = structuredClone(status);
      const next = saving.then(() => store.mirror.setSyncStatus(r.name, snapshot));
      saving = next.catch(() => {});
      return next;
    };
    const progress = setInterval(() => void (lease.lost() ? undefined : save().catch(() => {})), 5_000);
    progress.unref();
    try {
      await save().catch(() => {});
      await _runRule(r, store, status, lease.lost, (image, res) => {
        if (res instanceof Error) t.images.failed++;
        else if (res.skipped && !res.manifests) t.images.skipped++;
        else t.images.copied++;
        if (!(res instanceof Error)) t.bytes += res.blobs.bytes;
        onImage?.(r.name, image, res);
      });
      status.result = status.images.failed || status.errors.length ? 'failed' : 'ok';
    } catch (e) {
      // Lost to another replica (two took the lease in the same instant): it runs the rule; this one stands back.
      status.result = e instanceof LeaseLostError ? 'busy' : 'failed';
      status.errors.push(String((e as Error)?.message ?? e).slice(0, 500));
    } finally {
      clearInterval(progress);
      status.finishedAt = new Date().toISOString();
      running.delete(r.name);
      t.running = false;
      if (status.result === 'ok') {
        t.runs.ok++;
        t.lastSuccess = Date.now();
      } else if (status.result === 'busy') t.runs.busy++;
      else t.runs.failed++;
      // After a lost lease the status record is the new holder's.
      if (status.result !== 'busy')
        await save().catch((e) => log.warn('sync status not saved', { rule: r.name, err: String(e) }));
      await lease.release().catch(() => {});
    }
    const level = status.result === 'failed' ? 'warn' : 'info';
    log[level]('sync finished', {
      rule: r.name,
      result: status.result,
      copied: status.images.copied,
      skipped: status.images.skipped,
      failed: status.images.failed,
      bytes: status.bytes,
      ...(status.errors.length ? { error: status.errors[0] } : {}),
    });
    return status;
  };

  return {
    rules,
    async run(names, opts = {}) {
      const chosen = names?.length ? rules.filter((r) => names.includes(r.name)) : rules;
      const out: SyncRunStatus[] = [];
      for (const r of chosen) out.push(await runRule(r, opts.onImage));
      return out;
    },
    async status() {
      return Promise.all(
        rules.map(async (r) => {
          const mine = running.get(r.name);
          if (mine) return structuredClone(mine);
          const stored = await store.mirror.syncStatus<SyncRunStatus>(r.name).catch(() => undefined);
          if (stored?.result === 'running' && !(await store.mirror.leaseHeld('sync', r.name).catch(() => true)))
            stored.result = 'interrupted';
          return (
            stored ?? {
              rule: r.name,
              result: 'never' as const,
              startedAt: '',
              repositories: 0,
              images: { copied: 0, skipped: 0, failed: 0 },
              blobs: { uploaded: 0, mounted: 0, existed: 0 },
              bytes: 0,
              referrers: 0,
              errors: [],
            }
          );
        }),
      );
    },
    stats: () => totals,
    start() {
      if (timers.length) return;
      for (const r of rules) {
        if (!r.scheduleMs) continue;
        let busy = false;
        const tick = () => {
          if (busy) return; // the previous run is still going
          busy = true;
          runRule(r)
            .catch((e) => log.error('sync failed', { rule: r.name, err: String((e as Error)?.stack ?? e) }))
            .finally(() => (busy = false));
        };
        const first = setTimeout(tick, 0);
        first.unref();
        const every = setInterval(tick, r.scheduleMs);
        every.unref();
        timers.push(first, every);
      }
    },
    stop() {
      for (const t of timers.splice(0)) {
        clearTimeout(t);
        clearInterval(t);
      }
    },
  };
}

async function _runRule(
  r: ResolvedSyncRule,
  store: Store,
  status: SyncRunStatus,
  lost: () => boolean,
  onImage: (image: string, res: CopyResult | Error) => void,
): Promise<void> {
  const rule = r.rule;
  const repos = await ruleRepositories(r);
  status.repositories = repos.length;
  const bandwidth = rule.bandwidth ? new Bandwidth(rule.bandwidth) : undefined;
  const platforms = rule.platforms?.map(parsePlatform);
  const concurrency = rule.concurrency ?? 4;
  // `concurrency` is the rule's blobs in flight, across every image it copies at once (one limiter for the run).
  const blobSlots = pLimit(Math.max(1, concurrency));
  const referrers = rule.referrers ?? true;
  const fail = (what: string, e: unknown) => {
    if (status.errors.length < MAX_ERRORS)
      status.errors.push(`${what}: ${String((e as Error)?.message ?? e).slice(0, 300)}`);
  };
  for (const name of repos) {
    if (lost()) throw new LeaseLostError();
    const local = r.prefix ? `${r.prefix}/${name}` : name;
    if (!isValidName(local)) {
      fail(name, new Error(`local name "${local}" is not a valid repository name`));
      continue;
    }
    const repo = new Repository(r.registry(), name);
    let selected: { tags: string[]; all: string[] };
    try {
      selected = await ruleTags(r, name);
    } catch (e) {
      fail(name, e);
      continue;
    }
    const { tags } = selected;
    const source = _throttled(remoteSource(repo), bandwidth);
    const target = storeTarget(store, local);
    const one = async (tag: string) => {
      if (lost()) return;
      try {
        const res = await copy(source, tag, target, tag, { platforms, referrers, blobSlots });
        _count(status, res);
        onImage(`${name}:${tag}`, res);
      } catch (e) {
        status.images.failed++;
        fail(`${name}:${tag}`, e);
        onImage(`${name}:${tag}`, e as Error);
      }
    };
    // A few images at a time (their manifests and HEADs overlap); their blobs share the rule's `concurrency` slots.
    const images = pLimit(Math.max(1, Math.min(4, Math.ceil(concurrency / 2))));
    // Cosign's tag-scheme signatures, attestations and SBOMs travel with their image: copy() with `referrers`
    // carries them (client/copy.ts), so they are not images of their own here.
    await Promise.all(tags.map((t) => images(() => one(t))));
  }
  if (lost()) throw new LeaseLostError();
}

/** The upstream repositories a rule names: literal names, and its globs matched against the upstream's catalog. */
export function ruleRepositories(r: ResolvedSyncRule): Promise<string[]> {
  return _repositories(r.registry(), r.rule.repositories);
}

/** The tags of one upstream repository the rule selects (`all`: every tag, for cosign's `sha256-….sig` tags). */
export async function ruleTags(r: ResolvedSyncRule, name: string): Promise<{ tags: string[]; all: string[] }> {
  const repo = new Repository(r.registry(), name);
  const all: string[] = [];
  for await (const t of repo.tags()) all.push(t);
  const plain = all.filter((t) => !DIGEST_TAG.test(t));
  const filter = (r.rule.tags ?? {}) as TagFilter;
  const created = needsCreated(filter) ? await _createdTimes(repo, filter, plain) : undefined;
  return { tags: filterTags(plain, filter, created), all };
}

/** Cosign's tag-scheme signature/attestation/SBOM tags (`sha256-<hex>.sig`…) of the given image digests. */
export function signatureTags(all: string[], digests: Set<string>): string[] {
  return all.filter((t) => {
    const m = DIGEST_TAG.exec(t);
    return m?.[3] && digests.has(`${m[1]}:${m[2]}`);
  });
}

function _count(status: SyncRunStatus, res: CopyResult): void {
  if (res.skipped && res.manifests === 0) status.images.skipped++;
  else status.images.copied++;
  status.blobs.uploaded += res.blobs.uploaded;
  status.blobs.mounted += res.blobs.mounted;
  status.blobs.existed += res.blobs.existed;
  status.bytes += res.blobs.bytes;
  status.referrers += res.referrers;
}

function _isGlob(s: string): boolean {
  return /[*?[\]{}!]/.test(s);
}

/** Literal names as given; globs matched against the upstream's catalog (fetched once, only when needed). */
async function _repositories(registry: UpstreamRegistry, patterns: string[]): Promise<string[]> {
  const out = new Set(patterns.filter((p) => !_isGlob(p)));
  const globs = patterns.filter(_isGlob);
  if (globs.length) {
    const match = picomatch(globs, { dot: true });
    for await (const name of catalogOf(registry)) if (match(name)) out.add(name);
  }
  return [...out].filter(isValidName).sort();
}

/** Each tag's image `created` time (an index: its first image's), for `newestBy: created`. */
async function _createdTimes(repo: Repository, f: TagFilter, tags: string[]): Promise<Map<string, number>> {
  // Narrow by everything but "newest" first, so only candidates are fetched.
  const candidates = filterTags(tags, { ...f, newest: undefined });
  const out = new Map<string, number>();
  const limit = pLimit(4);
  await Promise.all(
    candidates.map((tag) =>
      limit(async () => {
        try {
          let m = await repo.getManifest(tag);
          if (isIndexType(m.mediaType)) {
            const first = (JSON.parse(m.bytes.toString('utf8')) as ImageIndex).manifests[0];
            if (!first) return;
            m = await repo.getManifest(first.digest);
          }
          const config = (JSON.parse(m.bytes.toString('utf8')) as ImageManifest).config;
          if (!config || config.size > 1 << 20) return;
          const doc = JSON.parse((await repo.getBlobBytes(config, 1 << 20)).toString('utf8'));
          const t = Date.parse(doc?.created);
          if (Number.isFinite(t)) out.set(tag, t);
        } catch {
          // No usable time: the tag counts as oldest.
        }
      }),
    ),
  );
  return out;
}

function _throttled(src: ImageSource, bw: Bandwidth | undefined): ImageSource {
  if (!bw) return src;
  return {
    ...src,
    async blob(d, offset, opts) {
      return bw.wrap(await src.blob(d, offset, opts));
    },
  };
}
