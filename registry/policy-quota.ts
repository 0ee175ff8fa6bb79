// Namespace quotas (config `quotas`): usage is the distinct blobs linked by a namespace's repositories (cached for
// USAGE_TTL_MS and kept current by this process's own pushes), and request bodies are capped as they stream so
// parallel uploads cannot each take what is left.
import { OciError } from '../spec/index.js';
import { namespaceUsage, type Store } from '../storage/index.js';
import type { BodyLimit } from './body.js';
import type { Config } from './config.js';

const USAGE_TTL_MS = 30_000;

export interface Quotas {
  readonly enabled: boolean;
  checkQuota(name: string, bytes: number): Promise<void>;
  quotaBody(name: string, already: number): Promise<(BodyLimit & { done(): void }) | undefined>;
  noteStored(name: string, bytes: number): void;
  usage(namespace: string): Promise<number>;
}

export function quotas(config: Config, store: Store): Quotas {
  const quotas = config.quotas ?? [];
  const usageCache = new Map<string, { bytes: number; at: number }>();
  /** Bytes request bodies are streaming into each namespace right now (this process), not yet in usageCache. */
  const inflight = new Map<string, number>();
  const _inflight = (ns: string, n: number) => {
    const v = (inflight.get(ns) ?? 0) + n;
    if (v > 0) inflight.set(ns, v);
    else inflight.delete(ns);
  };

  /** The quota that covers `name`, with the namespace it is counted under. */
  const quotaFor = (name: string): { namespace: string; maxBytes: number } | undefined => {
    const exact = quotas
      .filter((q) => q.namespace !== '*' && (name === q.namespace || name.startsWith(`${q.namespace}/`)))
      .sort((a, b) => b.namespace.length - a.namespace.length)[0];
    if (exact) return exact;
    const any = quotas.find((q) => q.namespace === '*');
    return any && { namespace: name.split('/')[0], maxBytes: any.maxBytes };
  };

  const usage = async (namespace: string): Promise<number> => {
    const hit = usageCache.get(namespace);
    if (hit && Date.now() - hit.at < USAGE_TTL_MS) return hit.bytes;
    const bytes = await namespaceUsage(store, namespace);
    usageCache.set(namespace, { bytes, at: Date.now() });
    return bytes;
  };

  return {
    enabled: quotas.length > 0,

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
  };
}
