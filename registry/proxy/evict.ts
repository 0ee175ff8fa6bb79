// Eviction of cached (mirrored) content by age of last pull and by a size cap. It only removes a mirrored
// repository's links (layer links, manifest revisions with their tags); GC reclaims the bytes nobody links any more.
// Last-pull times are the mtimes of those links (the cache rewrites a link when it serves the content, at most every
// few minutes), so they survive restarts and are shared by replicas on the same storage.
import type { Digest } from '../../spec/index.js';
import type { Store } from '../../storage/index.js';
import type { Upstream } from './config.js';

export interface EvictOptions {
  /** Remove content not pulled for this many ms. */
  maxAgeMs?: number;
  /** Then remove least recently pulled blobs until mirrored blobs take at most this many bytes. */
  maxBytes?: number;
  now?: number;
}

export interface EvictResult {
  manifests: number;
  blobs: number;
  /** Bytes of distinct blobs linked from mirrored repositories, before and after. */
  bytesBefore: number;
  bytesAfter: number;
}

interface Entry {
  repository: string;
  digest: Digest;
  pulled: number;
}

export async function evict(store: Store, upstreams: Upstream[], opts: EvictOptions): Promise<EvictResult> {
  const now = opts.now ?? Date.now();
  const mirrored = (await store.manifests.catalog()).filter((name) =>
    upstreams.some((u) => name.startsWith(`${u.prefix}/`)),
  );
  let blobs: Entry[] = [];
  const manifests: Entry[] = [];
  for (const repository of mirrored) {
    const entry = ({ digest, modified }: { digest: Digest; modified: Date }): Entry => ({
      repository,
      digest,
      pulled: modified.getTime(),
    });
    blobs.push(...(await store.blobs.linkTimes(repository)).map(entry));
    manifests.push(...(await store.manifests.revisionTimes(repository)).map(entry));
  }
  const sizes = new Map<Digest, number>();
  for (const b of blobs) if (!sizes.has(b.digest)) sizes.set(b.digest, (await store.blobs.dataSize(b.digest)) ?? 0);
  const total = (list: Entry[]) => [...new Set(list.map((b) => b.digest))].reduce((n, d) => n + (sizes.get(d) ?? 0), 0);
  const result: EvictResult = { manifests: 0, blobs: 0, bytesBefore: total(blobs), bytesAfter: 0 };

  if (opts.maxAgeMs !== undefined) {
    const cutoff = now - opts.maxAgeMs;
    for (const m of manifests.filter((e) => e.pulled < cutoff)) {
      await store.manifests.delete(m.repository, m.digest).catch(() => {});
      result.manifests++;
    }
    const old = blobs.filter((e) => e.pulled < cutoff);
    for (const b of old) await store.blobs.dropLink(b.repository, b.digest);
    result.blobs += old.length;
    blobs = blobs.filter((e) => e.pulled >= cutoff);
  }

  if (opts.maxBytes !== undefined) {
    // Least recently pulled first; a digest's last pull is the latest over every repository linking it.
    const last = new Map<Digest, number>();
    for (const b of blobs) last.set(b.digest, Math.max(last.get(b.digest) ?? 0, b.pulled));
    let bytes = total(blobs);
    for (const [digest] of [...last].sort((a, b) => a[1] - b[1])) {
      if (bytes <= opts.maxBytes) break;
      for (const b of blobs.filter((e) => e.digest === digest)) {
        await store.blobs.dropLink(b.repository, b.digest);
        result.blobs++;
      }
      bytes -= sizes.get(digest) ?? 0;
      blobs = blobs.filter((e) => e.digest !== digest);
    }
  }
  result.bytesAfter = total(blobs);
  return result;
}
