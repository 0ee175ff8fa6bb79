// Online garbage collection: mark from every tag, manifest and referrer, then sweep what nothing references —
// while pushes and pulls go on, on any Driver, with several replicas sharing the storage.
//
// What goes (each only when older than the grace window, i.e. last written before `markStart - grace`):
//   - blob data no live manifest references and no fresh link keeps;
//   - layer links (repositories/<n>/_layers) to blobs no live manifest of that repository references;
//   - untagged manifests (revision links), when `deleteUntagged` — children of a live index and referrers of a live
//     subject stay; referrer entries whose subject or referrer manifest is gone;
//   - abandoned upload sessions (older than `uploadAge`).
// Live manifests: tagged ones, (without deleteUntagged) every revision, fresh revisions, and, recursively, the
// children of a live index and the referrers of a live manifest.
//
// The protocol that makes it safe online (a push racing the sweep succeeds with its blobs present, or fails
// cleanly so the client pushes again):
//   1. GC takes the lease (gc/lease: holder + heartbeat, storage/gc-lease.ts) so one GC runs across replicas.
//      Drivers offer no conditional write, so the lease is read-write-settle-reread, and re-checked before the
//      sweep: of two replicas that raced for it, the one whose write was overwritten stops before deleting.
//      While it runs, GC renews lease and state every ttl/8 (default ttl 5 s) and fences itself: it deletes nothing
//      once 0.6 × ttl has passed since its last renewal that landed. A GC that died (kill -9 in mark or sweep) is
//      recognised by writers and by the next GC at once when its process is gone on this host, else after ttl
//      without a new heartbeat — so a dead GC blocks pushes for seconds, never for minutes.
//   2. GC writes gc/state = { gen: g, phase: 'mark' } and only then lists anything; the mark reads the storage.
//   3. GC writes gc/state = { gen: g, phase: 'sweep' } and deletes candidates, re-statting each right before its
//      delete and sparing anything written after `markStart - grace` (a fresh upload, a re-pushed manifest).
//   4. GC writes gc/state = { gen: g, phase: 'idle' } and releases the lease.
// Writers (manifest PUT, upload completion, cross-repository mount) read gc/state before (s0) and after (s1) their
// checks and writes — two small reads (GcGuard.around). Storage is linearizable (fs; S3 since 2020), so:
//   - s0 and s1 both idle and of the same generation: no GC marked or swept between the writer's checks and its
//     last write; any later GC's mark (step 2 comes before any listing) sees the writer's links and revisions.
//   - otherwise a GC overlapped: the writer waits until that generation's sweep is over (phase idle, a newer
//     generation, or the state of a GC that is gone — see step 1), then re-checks that everything it relied on still
//     exists. Anything GC deleted meanwhile makes the request fail cleanly (manifest PUT: tags it wrote are undone,
//     MANIFEST_BLOB_UNKNOWN; completion re-publishes from the upload it still holds; mount falls back to upload).
//   A writer whose writes landed before the mark listed its repository is seen by the mark, and one whose writes
//   landed after cannot have read s1 before step 2 — the two reads bracket every interleaving.
// Clients that checked a blob (HEAD/GET, or a manifest PUT's reference check) refresh its link when older than
// half the grace window (BlobStore.linkRefreshMs), so "HEAD says it exists, skip the upload, PUT the manifest" is
// safe for grace/2; a blob whose known links exist again at sweep time keeps its data.
// Caches: links are never cached; a blob is visible only through an existing link, and GC deletes a blob's stale
// links before its data, so replicas whose size cache still remembers a swept blob answer 404 all the same.
// Clocks: GC compares storage mtimes (S3: server time) with its own clock; the grace window must cover the skew.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { OciError, parseManifest, isDigest, isValidName, type Digest } from '../spec/index.js';
import type { Driver } from './driver.js';
import { paths, isUploadId } from './paths.js';
import { alive, selfOwner, DEFAULT_LEASE_TTL_MS, type Beating } from './gc-lease.js';
import { pool } from './pool.js';

export type GcPhase = 'idle' | 'mark' | 'sweep';

export interface GcState extends Beating {
  gen: number;
  phase: GcPhase;
}

interface GcLease extends Beating {
  holder: string;
}

/** How long a writer waits for a live GC's sweep to end before it answers UNAVAILABLE. */
const WAIT_LIMIT_MS = 120_000;
const POLL_MS = 25;
/** How often a GC that finds the lease held looks again (a live holder beats every ttl/8). */
const LEASE_POLL_MS = 100;
/** The fraction of ttl after its last renewal a GC may still start a delete (storage/gc-lease.ts). */
const FENCE = 0.6;

async function _readJson<T>(driver: Driver, path: string): Promise<T | undefined> {
  const raw = await driver.get(path);
  if (!raw) return undefined;
  try {
    return JSON.parse(raw.toString('utf8')) as T;
  } catch {
    return undefined; // a torn or foreign file counts as absent
  }
}

/** A GC is running in this state: not idle, and its GC has not died (storage/gc-lease.ts). */
function _active(s: GcState): boolean {
  return s.phase !== 'idle' && alive(s, `gen ${s.gen}`);
}

/** The writers' side of the protocol (see the header). */
export class GcGuard {
  constructor(
    private readonly driver: Driver,
    private readonly waitLimitMs = WAIT_LIMIT_MS,
  ) {}

  async state(): Promise<GcState> {
    return (await _readJson<GcState>(this.driver, paths.gcState)) ?? { gen: 0, phase: 'idle' };
  }

  /**
   * Runs `op` (checks, then writes that make content reachable). When a GC overlapped it, waits for that GC's
   * sweep to end (or for it to be found dead) and runs `verify`, which re-checks the content and throws (or
   * repairs) when some of it is gone.
   */
  async around<T>(op: () => Promise<T>, verify: (result: T) => Promise<void>): Promise<T> {
    const s0 = await this.state();
    const result = await op();
    const s1 = await this.state();
    if (!_active(s0) && !_active(s1) && s0.gen === s1.gen) return result;
    const deadline = Date.now() + this.waitLimitMs;
    for (let s = s1; _active(s) && s.gen === s1.gen; s = await this.state()) {
      if (Date.now() > deadline)
        throw new OciError('UNAVAILABLE', 'garbage collection is taking too long; retry the request');
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    await verify(result);
    return result;
  }
}

export interface GcOptions {
  /** Delete manifests no tag (or live index / live subject) keeps. */
  deleteUntagged?: boolean;
  /** Spare anything written within this many ms before the mark started. */
  graceMs?: number;
  /** Remove upload sessions idle for this long (default 24 h). */
  uploadAgeMs?: number;
  /** Report what would go, delete nothing (takes no lease, writes nothing). */
  dryRun?: boolean;
  /** Parallel storage calls. */
  concurrency?: number;
  /** A GC whose heartbeat stops for this long counts as dead (default 5 s; storage/gc-lease.ts). */
  leaseTtlMs?: number;
  /** Called for every removed (or, dry run, removable) item. */
  onItem?: (kind: 'blob' | 'manifest' | 'link' | 'referrer' | 'upload', what: string, bytes?: number) => void;
  now?: () => number;
}

export interface GcResult {
  dryRun: boolean;
  repositories: number;
  manifestsLive: number;
  blobsLive: number;
  blobs: number;
  bytes: number;
  manifests: number;
  links: number;
  referrers: number;
  uploads: number;
  ms: number;
}

export class GcBusyError extends Error {}

/** The run stopped before deleting more: it could not renew its lease in time (storage/gc-lease.ts). */
export class GcFencedError extends Error {}

interface Stamped {
  path: string;
  mtime: number;
}

interface RepoScan {
  name: string;
  tags: Map<string, Digest>;
  revisions: Map<Digest, Stamped>;
  layers: Map<Digest, Stamped>;
  /** referrer digest → entries (subject, entry path). */
  referrers: Map<Digest, Array<{ subject: Digest; path: string }>>;
  /** Blobs (and manifests) the repository's live manifests reference; set by the mark. */
  liveBlobs?: Set<string>;
}

export class GarbageCollector {
  private readonly holder = randomBytes(9).toString('base64url');
  private gen = 0;
  private phase: GcPhase = 'idle';
  private leaseTimer?: NodeJS.Timeout;
  private ttl = DEFAULT_LEASE_TTL_MS;
  /** Heartbeat counter; never reset, so a beat names one moment of one holder. */
  private beat = 0;
  /** performance.now() after which this run may start no delete (its last renewal is too old). */
  private fenceUntil = 0;
  /** Another GC holds the lease now. */
  private lost = false;
  /** Lease and state writes, one at a time (a heartbeat must not land after the final idle state). */
  private writes: Promise<unknown> = Promise.resolve();

  constructor(private readonly driver: Driver) {}

  async run(opts: GcOptions = {}): Promise<GcResult> {
    const now = opts.now ?? Date.now;
    const started = now();
    const cutoff = started - (opts.graceMs ?? 3_600_000);
    const dry = opts.dryRun ?? false;
    const conc = opts.concurrency ?? 32;
    const result: GcResult = {
      dryRun: dry,
      repositories: 0,
      manifestsLive: 0,
      blobsLive: 0,
      blobs: 0,
      bytes: 0,
      manifests: 0,
      links: 0,
      referrers: 0,
      uploads: 0,
      ms: 0,
    };
    this.ttl = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    if (!dry) await this._acquire();
    try {
      if (!dry) await this._setPhase('mark');
      const liveBlobs = new Set<string>();
      const repos = await this._repositories();
      result.repositories = repos.length;
      const scans: RepoScan[] = [];
      const live = new Map<string, Set<Digest>>();
      await pool(repos, Math.max(1, conc >> 3), async (name) => {
        const scan = await this._scan(name, conc);
        const keep = await this._markRepo(scan, opts.deleteUntagged ?? false, cutoff, liveBlobs);
        scans.push(scan);
        live.set(name, keep);
        result.manifestsLive += keep.size;
      });
      // Fresh links keep their blob's data even when no manifest references it yet (a push in progress).
      for (const s of scans) for (const [d, l] of s.layers) if (l.mtime >= cutoff) liveBlobs.add(d);
      result.blobsLive = liveBlobs.size;

      if (!dry) {
        await this._checkLease();
        await this._setPhase('sweep');
      }
      const remove = async (
        kind: NonNullable<Parameters<NonNullable<GcOptions['onItem']>>[0]>,
        path: string,
        what: string,
        bytes?: number,
      ) => {
        if (!dry) {
          // Re-stat right before deleting: whatever was written since the mark's cutoff stays.
          const info = await this.driver.stat(path);
          if (!info) return false;
          if (info.modified.getTime() >= cutoff) return false;
          this._fence();
          await this.driver.delete(path);
        }
        opts.onItem?.(kind, what, bytes);
        return true;
      };
      for (const scan of scans) {
        const keep = live.get(scan.name)!;
        await pool([...scan.referrers], conc, async ([referrer, entries]) => {
          for (const e of entries) {
            if (keep.has(referrer) && keep.has(e.subject)) continue;
            if (keep.has(referrer) && (scan.revisions.get(referrer)?.mtime ?? 0) >= cutoff) continue;
            if (await remove('referrer', e.path, `${scan.name}@${referrer} (subject ${e.subject})`)) result.referrers++;
          }
        });
        await pool([...scan.revisions], conc, async ([digest, rev]) => {
          if (keep.has(digest)) return;
          if (await remove('manifest', rev.path, `${scan.name}@${digest}`)) result.manifests++;
        });
        await pool([...scan.layers], conc, async ([digest, link]) => {
          if (scan.liveBlobs?.has(digest)) return;
          if (link.mtime >= cutoff) return;
          if (await remove('link', link.path, `${scan.name} → ${digest}`)) result.links++;
        });
      }
      const linksOf = new Map<string, string[]>();
      for (const s of scans) for (const [d, l] of s.layers) linksOf.set(d, [...(linksOf.get(d) ?? []), l.path]);
      await this._sweepBlobs(liveBlobs, linksOf, cutoff, conc, dry, result, opts);
      await this._sweepUploads(now() - (opts.uploadAgeMs ?? 86_400_000), dry, result, opts);
      if (!dry) await this._setPhase('idle');
    } finally {
      if (!dry) await this._release();
    }
    result.ms = now() - started;
    return result;
  }

  // ---- mark --------------------------------------------------------------------------------------------------

  /**
   * Every repository in storage, found by walking repositories/ (not the catalog: a push to a new repository links
   * its blobs before its first manifest adds the catalog entry). A directory holding `_`-entries is a repository.
   */
  private async _repositories(): Promise<string[]> {
    const out: string[] = [];
    let level = [''];
    while (level.length) {
      const next: string[] = [];
      await pool(level, 16, async (prefix) => {
        const dir = prefix ? `${paths.repositoriesRoot}/${prefix}` : paths.repositoriesRoot;
        const children = await this.driver.list(dir);
        if (prefix && isValidName(prefix) && children.some((c) => c.startsWith('_'))) out.push(prefix);
        for (const c of children) if (!c.startsWith('_')) next.push(prefix ? `${prefix}/${c}` : c);
      });
      level = next;
    }
    return out.sort();
  }

  private async _scan(name: string, conc: number): Promise<RepoScan> {
    const scan: RepoScan = { name, tags: new Map(), revisions: new Map(), layers: new Map(), referrers: new Map() };
    await pool(await this.driver.list(paths.tags(name)), conc, async (tag) => {
      const raw = (await this.driver.get(paths.tag(name, tag)))?.toString('utf8');
      if (raw && isDigest(raw)) scan.tags.set(tag, raw);
    });
    await this._stampedLinks(
      paths.manifestRevisions(name),
      (d) => paths.manifestRevision(name, d),
      scan.revisions,
      conc,
    );
    await this._stampedLinks(paths.layerLinks(name), (d) => paths.layerLink(name, d), scan.layers, conc);
    const refRoot = `${paths.repository(name)}/_referrers`;
    for (const alg of await this.driver.list(refRoot)) {
      for (const subjectHex of await this.driver.list(`${refRoot}/${alg}`)) {
        const subject = `${alg}:${subjectHex}`;
        if (!isDigest(subject)) continue;
        for (const entry of await this.driver.list(paths.referrers(name, subject))) {
          const referrer = entry.replace('-', ':');
          if (!isDigest(referrer)) continue;
          const list = scan.referrers.get(referrer) ?? [];
          list.push({ subject, path: paths.referrer(name, subject, referrer) });
          scan.referrers.set(referrer, list);
        }
      }
    }
    return scan;
  }

  /** `<root>/<alg>/<hex>` entries with their mtimes. */
  private async _stampedLinks(
    root: string,
    path: (d: Digest) => string,
    out: Map<Digest, Stamped>,
    conc: number,
  ): Promise<void> {
    const digests: Digest[] = [];
    for (const alg of await this.driver.list(root)) {
      for (const hex of await this.driver.list(`${root}/${alg}`)) {
        const d = `${alg}:${hex}`;
        if (isDigest(d)) digests.push(d);
      }
    }
    await pool(digests, conc, async (d) => {
      const info = await this.driver.stat(path(d));
      if (info) out.set(d, { path: path(d), mtime: info.modified.getTime() });
    });
  }

  /** The repository's live manifests; adds every blob they reference (and the manifests themselves) to `liveBlobs`. */
  private async _markRepo(
    scan: RepoScan,
    deleteUntagged: boolean,
    cutoff: number,
    liveBlobs: Set<string>,
  ): Promise<Set<Digest>> {
    const bySubject = new Map<Digest, Digest[]>();
    for (const [referrer, entries] of scan.referrers) {
      for (const e of entries) bySubject.set(e.subject, [...(bySubject.get(e.subject) ?? []), referrer]);
    }
    const roots = new Set<Digest>();
    for (const d of scan.tags.values()) if (scan.revisions.has(d)) roots.add(d);
    for (const [d, rev] of scan.revisions) {
      // A referrer's subject decides for it, unless it is tagged or fresh.
      if (rev.mtime >= cutoff || (!deleteUntagged && !scan.referrers.has(d))) roots.add(d);
    }
    const keep = new Set<Digest>();
    const repoBlobs = new Set<string>();
    let frontier = [...roots];
    while (frontier.length) {
      const next: Digest[] = [];
      for (const d of frontier) {
        if (keep.has(d) || !scan.revisions.has(d)) continue;
        keep.add(d);
        repoBlobs.add(d);
        liveBlobs.add(d);
        const bytes = await this.driver.get(paths.blobData(d));
        if (bytes) {
          try {
            const parsed = parseManifest(bytes, undefined);
            for (const b of parsed.blobs) {
              repoBlobs.add(b.digest);
              liveBlobs.add(b.digest);
            }
            for (const m of parsed.manifests) next.push(m.digest as Digest);
          } catch {
            // Stored manifests parsed once; one that no longer does keeps only itself.
          }
        }
        next.push(...(bySubject.get(d) ?? []));
      }
      frontier = next;
    }
    scan.liveBlobs = repoBlobs;
    return keep;
  }

  // ---- sweep -------------------------------------------------------------------------------------------------

  private async _sweepBlobs(
    live: Set<string>,
    linksOf: Map<string, string[]>,
    cutoff: number,
    conc: number,
    dry: boolean,
    result: GcResult,
    opts: GcOptions,
  ): Promise<void> {
    for (const alg of await this.driver.list(paths.blobsRoot)) {
      const prefixes = await this.driver.list(`${paths.blobsRoot}/${alg}`);
      await pool(prefixes, Math.max(1, conc >> 2), async (hh) => {
        const hexes = await this.driver.list(`${paths.blobsRoot}/${alg}/${hh}`);
        await pool(hexes, 8, async (hex) => {
          const digest = `${alg}:${hex}`;
          if (live.has(digest) || !isDigest(digest)) return;
          const path = paths.blobData(digest);
          const info = await this.driver.stat(path);
          if (info && info.modified.getTime() >= cutoff) return;
          if (!dry) {
            const again = await this.driver.stat(path);
            if (again && again.modified.getTime() >= cutoff) return;
            // Its stale links went in the link sweep; one still there was refreshed since (a client relies on it).
            for (const link of linksOf.get(digest) ?? []) if (await this.driver.stat(link)) return;
            this._fence();
            await this.driver.delete(`${paths.blobsRoot}/${alg}/${hh}/${hex}`);
          }
          result.blobs++;
          result.bytes += info?.size ?? 0;
          opts.onItem?.('blob', digest, info?.size ?? 0);
        });
      });
    }
  }

  private async _sweepUploads(cutoff: number, dry: boolean, result: GcResult, opts: GcOptions): Promise<void> {
    for (const id of await this.driver.list(paths.uploadsRoot)) {
      if (!isUploadId(id)) continue;
      const info = await this.driver.stat(paths.uploadInfo(id));
      const data = await this.driver.stat(paths.uploadData(id));
      const last = Math.max(info?.modified.getTime() ?? 0, data?.modified.getTime() ?? 0);
      if (last >= cutoff) continue;
      if (!dry) {
        this._fence();
        await this.driver.delete(paths.upload(id));
      }
      result.uploads++;
      opts.onItem?.('upload', id, data?.size);
    }
  }

  // ---- lease and state ---------------------------------------------------------------------------------------

  private async _acquire(): Promise<void> {
    this.lost = false;
    this.fenceUntil = 0;
    const lease = await this._heldBy();
    if (lease)
      throw new GcBusyError(
        `another garbage collection holds the lease (${lease.holder}${lease.owner ? ` on ${lease.owner.host}, pid ${lease.owner.pid}` : ''})`,
      );
    await this._beat();
    // Drivers have no conditional write, so two replicas may both have read "free": the last write wins, and the
    // loser backs off here — or, at the latest, at the check before its sweep (_checkLease), before deleting anything.
    await new Promise((r) => setTimeout(r, 100));
    await this._checkLease();
    // Unique per run (not just previous + 1), so two runs that raced for the lease never share a generation.
    const previous = (await new GcGuard(this.driver).state()).gen ?? 0;
    this.gen = Math.max(previous + 1, Date.now() * 1000 + Math.floor(Math.random() * 1000));
    // Renew lease and state, so writers and other GCs never take this run for a dead one.
    this.leaseTimer = setInterval(() => void this._beat().catch(() => {}), Math.max(10, this.ttl / 8));
    this.leaseTimer.unref();
  }

  /**
   * The lease when a live GC other than this one holds it, else undefined. A holder whose process is gone on this
   * host is dead at once; otherwise this waits until its heartbeat moves (alive) or stands still for its ttl (dead).
   */
  private async _heldBy(): Promise<GcLease | undefined> {
    let first: GcLease | undefined;
    for (;;) {
      const lease = await _readJson<GcLease>(this.driver, paths.gcLease);
      if (!lease || lease.holder === this.holder || !alive(lease, `lease ${lease.holder}`)) return undefined;
      if (lease.beat === undefined) return lease; // a legacy lease, unexpired
      if (first && (first.holder !== lease.holder || first.beat !== lease.beat)) return lease;
      first ??= lease;
      await new Promise((r) => setTimeout(r, LEASE_POLL_MS));
    }
  }

  /** One renewal: lease, then state (when a run is on), unless the run has lost the lease or passed its fence. */
  private _beat(): Promise<void> {
    const next = this.writes.then(async () => {
      const started = performance.now();
      if (this.lost || (this.fenceUntil && started > this.fenceUntil)) return; // never renew after the fence
      if (this.fenceUntil && !(await this._holdsLease())) {
        this.lost = true;
        return;
      }
      const beating = {
        beat: ++this.beat,
        ttl: this.ttl,
        owner: selfOwner(),
        expires: new Date(Date.now() + this.ttl).toISOString(),
      };
      await this.driver.put(paths.gcLease, JSON.stringify({ holder: this.holder, ...beating } satisfies GcLease));
      if (this.gen)
        await this.driver.put(
          paths.gcState,
          JSON.stringify({
            gen: this.gen,
            phase: this.phase,
            ...(this.phase === 'idle' ? {} : beating),
          } satisfies GcState),
        );
      // Only a renewal that landed within the fence extends it: a reader that saw the previous beat stand for ttl
      // (≥ the fence + 0.4 × ttl) read storage after this one landed, so it saw this one.
      if (!this.fenceUntil || performance.now() <= this.fenceUntil) this.fenceUntil = started + FENCE * this.ttl;
    });
    this.writes = next.catch(() => {});
    return next;
  }

  /** Throws unless this run may still delete: it holds the lease and renewed it recently enough. */
  private _fence(): void {
    if (this.lost) throw new GcBusyError('another garbage collection took the lease');
    if (performance.now() > this.fenceUntil) {
      throw new GcFencedError(
        `garbage collection stopped: its lease could not be renewed within ${Math.round(FENCE * this.ttl)} ms (storage too slow or the process stalled); nothing more was deleted`,
      );
    }
  }

  private async _holdsLease(): Promise<boolean> {
    return (await _readJson<GcLease>(this.driver, paths.gcLease))?.holder === this.holder;
  }

  private async _checkLease(): Promise<void> {
    if (!(await this._holdsLease())) {
      this.lost = true;
      throw new GcBusyError('another garbage collection took the lease');
    }
  }

  private async _setPhase(phase: GcPhase): Promise<void> {
    this.phase = phase;
    await this._beat();
    if (phase !== 'idle') this._fence();
  }

  private async _release(): Promise<void> {
    clearInterval(this.leaseTimer);
    await this.writes;
    const mine = !this.lost && (await this._holdsLease());
    // A run that failed or was fenced midway must not leave writers waiting for it; it deletes nothing more now.
    // A run that lost the lease leaves the state to the run that holds it.
    if (mine) {
      const state = await new GcGuard(this.driver).state();
      if (state.gen === this.gen && state.phase !== 'idle') {
        await this.driver
          .put(paths.gcState, JSON.stringify({ gen: this.gen, phase: 'idle' } satisfies GcState))
          .catch(() => {});
      }
      await this.driver.delete(paths.gcLease);
    }
    this.gen = 0;
    this.phase = 'idle';
    this.fenceUntil = 0;
  }
}
