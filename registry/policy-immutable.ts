// Immutable tags (config `immutableTags`): a tag matching a rule never moves once written, and nothing its image
// consists of — its manifest, an index's children, every config and layer — can be deleted by tag, digest or blob.
import picomatch from 'picomatch';
import { OciError, isDigest, parseManifest, type Digest } from '../spec/index.js';
import type { Store } from '../storage/index.js';
import type { Config } from './config.js';

export const matcher = (globs: string[] | undefined) => (globs?.length ? picomatch(globs, { dot: true }) : () => true);

export interface ImmutableTags {
  readonly enabled: boolean;
  isImmutable(name: string, tag: string): boolean;
  checkTagWrite(name: string, tags: string[], digest?: Digest): Promise<void>;
  checkDelete(name: string, reference: string): Promise<void>;
  checkBlobDelete(name: string, digest: string): Promise<void>;
}

export function immutableTags(config: Config, store: Store): ImmutableTags {
  const immutable = (config.immutableTags ?? []).map((r) => ({
    repo: matcher(r.repositories),
    tag: matcher(r.tags),
  }));
  const isImmutable = (name: string, tag: string) => immutable.some((r) => r.repo(name) && r.tag(tag));

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

  return {
    enabled: immutable.length > 0,
    isImmutable,

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
  };
}
