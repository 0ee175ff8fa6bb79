// Repository policies: immutable tags, quotas per namespace, tag retention. (Implementation below the types.)
export type { RetentionPolicy, RetentionConfig, ImmutableRule, QuotaRule } from '../spec/config-schema.js';

import picomatch from 'picomatch';
import { OciError, isDigest, parseManifest, type Digest } from '../spec/index.js';
import { namespaceUsage, tagAges, type Store } from '../storage/index.js';
import { parseDuration } from '../spec/units.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import type { Audit } from './audit.js';
import type { BodyLimit } from './body.js';

const _matcher = (globs: string[] | undefined) => (globs?.length ? picomatch(globs, { dot: true }) : () => true);
const PULL_RECORD_EVERY_MS = 60_000;
const USAGE_TTL_MS = 30_000;

export interface RetentionRun {
  dryRun?: boolean;
  now?: number;
  report?: (line: string) => void;
}

export interface Policies {
  /** DENIED when writing `tags` of `name` would move an immutable tag away from `digest`. */
  checkTagWrite(name: string, tags: string[], digest?: Digest): Promise<void>;
  /** DENIED when deleting `reference` (a tag, or a digest an immutable tag's image consists of) is not allowed. */
  checkDelete(name: string, reference: string): Promise<void>;
  /** DENIED when unlinking blob `digest` from `name` would break an image an immutable tag holds. */
  checkBlobDelete(name: string, digest: string): Promise<void>;
  /** DENIED when adding `bytes` to `name`'s namespace would pass its quota. */
  checkQuota(name: string, bytes: number): Promise<void>;
  /**
   * The cap for a request body streaming into `name` — what its namespace's quota has left, less `already` (bytes
   * its upload session holds) and less the bytes other requests of this process are receiving right now — or
   * undefined without a quota. It counts the bytes actually received (chunked bodies have no Content-Length);
   * call `done` when the request is over.
   */
  quotaBody(name: string, already: number): Promise<(BodyLimit & { done(): void }) | undefined>;
  /** Counts stored bytes towards the namespace's cached usage. */
  noteStored(name: string, bytes: number): void;
  /** Namespace usage in bytes (distinct blobs linked by its repositories). */
  usage(namespace: string): Promise<number>;
  /** Records a pull of `name:tag` (at most once a minute per tag and process). */
  recordPull(name: string, tag: string): void;
  /** Applies retention policies; returns the deleted `name:tag`s. */
  applyRetention(opts?: RetentionRun): Promise<string[]>;
  readonly enabled: { immutable: boolean; quotas: boolean; retention: boolean };
}

export function createPolicies(config: Config, store: Store, log: Logger, audit?: Audit): Policies {
  const immutable = (config.immutableTags ?? []).map((r) => ({
    repo: _matcher(r.repositories),
    tag: _matcher(r.tags),
  }));
  const isImmutable = (name: string, tag: string) => immutable.some((r) => r.repo(name) && r.tag(tag));
  const quotas = config.quotas ?? [];
  const usageCache = new Map<string, { bytes: number; at: number }>();
  /** Bytes request bodies are streaming into each namespace right now (this process), not yet in usageCache. */
  const inflight = new Map<string, number>();
  const _inflight = (ns: string, n: number) => {
    const v = (inflight.get(ns) ?? 0) + n;
    if (v > 0) inflight.set(ns, v);
    else inflight.delete(ns);
  };
  const pulls = new Map<string, number>();
  const retention = (config.retention?.policies ?? []).map((p) => ({
    ...p,
    repo: _matcher(p.repositories),
    tag: _matcher(p.tags),
  }));

  /** The quota that covers `name`, with the namespace it is counted under. */
  const quotaFor = (name: string): { namespace: string; maxBytes: number } | undefined => {
    const exact = quotas
      .filter((q) => q.namespace !== '*' && (name === q.namespace || name.startsWith(`${q.namespace}/`)))
      .sort((a, b) => b.namespace.length - a.namespace.length)[0];
    if (exact) return exact;
    const any = quotas.find((q) => q.namespace === '*');
    return any && { namespace: name.split('/')[0], maxBytes: any.maxBytes };
  };

  /**
   * The immutable tag of `name` whose image includes `digest` — its manifest or, recursively, an index's child
   * manifests and every manifest's config and layers — or undefined. Deleting any of those breaks a pull of the tag.
   */
  const immutableHolder = async (name: string, digest: string): Promise<string | undefined> => {
    if (!immutable.some((r) => r.repo(name))) return undefined;
    const seen = new Set<string>();
    for (const tag of await store.manifests.tagNames(name)) {
      if (!isImmutable(name, tag)) continue;
      const top = await store.manifests.resolve(name, tag).catch(() => undefined);
      let frontier: string[] = top && isDigest(top) ? [top] : [];
      while (frontier.length) {
        const next: string[] = [];
        for (const d of frontier) {
          if (d === digest) return tag;
          if (seen.has(d)) continue;
          seen.add(d);
          const stored = await store.manifests.get(name, d).catch(() => undefined);
          if (!stored) continue; // a child never pushed, or already gone: nothing below it to protect
          try {
            const parsed = parseManifest(stored.bytes, stored.mediaType);
            if (parsed.blobs.some((b) => b.digest === digest)) return tag;
            next.push(...parsed.manifests.map((m) => m.digest));
          } catch {
            // Stored manifests parsed once; one that no longer does protects only itself.
          }
        }
        frontier = next;
      }
    }
    return undefined;
  };

  const usage = async (namespace: string): Promise<number> => {
    const hit = usageCache.get(namespace);
    if (hit && Date.now() - hit.at < USAGE_TTL_MS) return hit.bytes;
    const bytes = await namespaceUsage(store, namespace);
    usageCache.set(namespace, { bytes, at: Date.now() });
    return bytes;
  };

  return {
    enabled: { immutable: immutable.length > 0, quotas: quotas.length > 0, retention: retention.length > 0 },

    async checkTagWrite(name, tags, digest) {
      for (const tag of tags) {
        if (!isImmutable(name, tag)) continue;
        const current = await store.manifests.resolve(name, tag).catch(() => undefined);
        if (current && current !== digest) {
          throw new OciError(
            'DENIED',
            `tag ${name}:${tag} is immutable (immutableTags) and already points to ${current}; push a new tag instead`,
          );
        }
      }
    },

    async checkDelete(name, reference) {
      if (!immutable.length) return;
      if (!isDigest(reference)) {
        if (isImmutable(name, reference))
          throw new OciError('DENIED', `tag ${name}:${reference} is immutable (immutableTags) and can't be deleted`);
        return;
      }
      // Deleting a manifest by digest also removes every tag pointing at it; deleting an index's child breaks the index.
      const tag = await immutableHolder(name, reference);
      if (tag)
        throw new OciError(
          'DENIED',
          `manifest ${reference} is part of the image held by immutable tag ${name}:${tag} (immutableTags) and can't be deleted`,
        );
    },

    async checkBlobDelete(name, digest) {
      if (!immutable.length || !isDigest(digest)) return;
      const tag = await immutableHolder(name, digest);
      if (tag)
        throw new OciError(
          'DENIED',
          `blob ${digest} is part of the image held by immutable tag ${name}:${tag} (immutableTags) and can't be deleted`,
        );
    },

    async checkQuota(name, bytes) {
      const q = quotaFor(name);
      if (!q) return;
      const used = (await usage(q.namespace)) + (inflight.get(q.namespace) ?? 0);
      if (used + bytes > q.maxBytes) {
        throw new OciError(
          'DENIED',
          `quota exceeded for namespace "${q.namespace}": ${used} of ${q.maxBytes} bytes used, this upload needs ${bytes} more; delete images (then GC) or raise quotas`,
          {
            detail: {
              namespace: q.namespace,
              used,
              limit: q.maxBytes,
              requested: bytes,
            },
          },
        );
      }
    },

    async quotaBody(name, already) {
      const q = quotaFor(name);
      if (!q) return undefined;
      const used = await usage(q.namespace);
      let mine = 0;
      const done = () => {
        _inflight(q.namespace, -mine);
        mine = 0;
      };
      return {
        take: (n, received) => {
          mine += n;
          _inflight(q.namespace, n);
          // Checked against every byte in flight into the namespace, so parallel bodies can't each take the rest.
          const others = (inflight.get(q.namespace) ?? 0) - mine;
          if (used + already + others + mine <= q.maxBytes) return undefined;
          done(); // this request's bytes go at once: the bodies streaming alongside may carry on
          const left = Math.max(0, q.maxBytes - used - already - others);
          return new OciError(
            'DENIED',
            `quota exceeded for namespace "${q.namespace}": ${used} of ${q.maxBytes} bytes used (${already + others} more in uploads), and this request sent more than the ${left} bytes left (${received} received); nothing of it was stored; delete images (then GC) or raise quotas`,
            {
              detail: {
                namespace: q.namespace,
                used,
                limit: q.maxBytes,
                received,
              },
            },
          );
        },
        done,
      };
    },

    noteStored(name, bytes) {
      const q = quotaFor(name);
      const hit = q && usageCache.get(q.namespace);
      if (hit) hit.bytes += bytes;
    },

    usage,

    recordPull(name, tag) {
      if (!retention.some((p) => p.keepPulledWithin && p.repo(name))) return;
      const key = `${name}:${tag}`;
      const now = Date.now();
      if (now - (pulls.get(key) ?? 0) < PULL_RECORD_EVERY_MS) return;
      pulls.set(key, now);
      if (pulls.size > 100_000) pulls.clear();
      store.manifests.notePull(name, tag, now).catch((e) => log.warn('recording a pull failed', { err: String(e) }));
    },

    async applyRetention(opts = {}) {
      const now = opts.now ?? Date.now();
      const deleted: string[] = [];
      if (!retention.length) return deleted;
      for (const name of await store.manifests.catalog()) {
        const policies = retention.filter((p) => p.repo(name));
        if (!policies.length) continue;
        const tags = await tagAges(store, name);
        tags.sort((a, b) => b.pushed - a.pushed || (a.tag < b.tag ? 1 : -1));
        // Each policy covering a tag votes keep or delete; a tag goes only when every covering policy says delete.
        const votes = new Map<string, boolean[]>();
        for (const p of policies) {
          const mine = tags.filter((t) => p.tag(t.tag));
          const maxAge = p.maxAge ? parseDuration(p.maxAge) : undefined;
          const pulledWithin = p.keepPulledWithin ? parseDuration(p.keepPulledWithin) : undefined;
          mine.forEach((t, i) => {
            const keep =
              (p.keepLast !== undefined && i < p.keepLast) ||
              (maxAge !== undefined && now - t.pushed <= maxAge) ||
              (maxAge === undefined && p.keepLast === undefined) ||
              (pulledWithin !== undefined && now - t.pulled <= pulledWithin) ||
              isImmutable(name, t.tag); // immutable tags outlive retention
            votes.set(t.tag, [...(votes.get(t.tag) ?? []), keep]);
          });
        }
        const doomed = [...votes].filter(([, v]) => v.every((keep) => !keep)).map(([tag]) => tag);
        for (const tag of doomed.sort()) {
          if (!opts.dryRun) {
            await store.manifests.delete(name, tag).catch(() => {});
            await store.manifests.forgetPull(name, tag).catch(() => {});
            audit?.record({ event: 'retention.delete', outcome: 'success', actor: 'retention', repository: name, tag });
          }
          deleted.push(`${name}:${tag}`);
          opts.report?.(`${opts.dryRun ? 'would delete' : 'deleted'} tag ${name}:${tag} (retention)`);
        }
      }
      if (deleted.length) log.info('retention', { deleted: deleted.length, dryRun: opts.dryRun ?? false });
      return deleted;
    },
  };
}
