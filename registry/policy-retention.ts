// Tag retention (config `retention.policies`): per repository and tag glob, keep the newest N, those pushed within
// maxAge or pulled within keepPulledWithin; a tag goes only when every policy covering it says so, and immutable
// tags outlive retention. Pulls are recorded at most once a minute per tag and process.
import { tagAges, type Store } from '../storage/index.js';
import { parseDuration } from '../spec/units.js';
import type { Audit } from './audit.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { matcher } from './policy-immutable.js';

const PULL_RECORD_EVERY_MS = 60_000;

export interface RetentionRun {
  dryRun?: boolean;
  now?: number;
  report?: (line: string) => void;
}

export interface Retention {
  readonly enabled: boolean;
  recordPull(name: string, tag: string): void;
  applyRetention(opts?: RetentionRun): Promise<string[]>;
}

export function retention(
  config: Config,
  store: Store,
  log: Logger,
  isImmutable: (name: string, tag: string) => boolean,
  audit?: Audit,
): Retention {
  const pulls = new Map<string, number>();
  const retention = (config.retention?.policies ?? []).map((p) => ({
    ...p,
    repo: matcher(p.repositories),
    tag: matcher(p.tags),
  }));

  return {
    enabled: retention.length > 0,

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
