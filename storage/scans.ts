// Whole-repository scans the registry's policies run (issue 15: registry/ never lists storage itself):
//   namespaceUsage(store, namespace)  bytes of distinct blobs linked by the namespace's repositories (quotas)
//   tagAges(store, name)              each tag with its last write and last recorded pull (retention)
// Eviction's scan is store.blobs.linkTimes / store.manifests.revisionTimes (registry/proxy/evict.ts).
import type { BlobStore } from './blobs.js';
import type { ManifestStore } from './manifests.js';

interface Stores {
  blobs: BlobStore;
  manifests: ManifestStore;
}

/** Bytes of the distinct blobs linked into `namespace` and the repositories below it (each blob counted once). */
export async function namespaceUsage(store: Stores, namespace: string): Promise<number> {
  const repos = (await store.manifests.catalog()).filter((n) => n === namespace || n.startsWith(`${namespace}/`));
  const seen = new Set<string>();
  let bytes = 0;
  for (const repo of repos) {
    for (const d of await store.blobs.linkedDigests(repo)) {
      if (seen.has(d)) continue;
      seen.add(d);
      bytes += (await store.blobs.dataSize(d)) ?? 0;
    }
  }
  return bytes;
}

export interface TagAge {
  tag: string;
  /** Last write of the tag (push or move), ms. */
  pushed: number;
  /** Last recorded pull (ManifestStore.notePull), ms; 0 when none. */
  pulled: number;
}

/** Tags of `name` with their push and last-pull times. */
export async function tagAges(store: Stores, name: string): Promise<TagAge[]> {
  const out: TagAge[] = [];
  for (const { tag, modified } of await store.manifests.tagTimes(name)) {
    out.push({ tag, pushed: modified.getTime(), pulled: await store.manifests.lastPull(name, tag) });
  }
  return out;
}
