// This registry's own storage as a medium for client/copy.ts: a target for sync (images arrive through the same
// stores a push uses — digests verified, manifests checked for their blobs, GC protocol, tag policies) and a source
// for push replication. One copier for every medium; this file only adapts the stores.
import { Transform, type Readable } from 'node:stream';
import type { ImageSource, ImageTarget } from '../../client/copy.js';
import type { PushResult } from '../../client/remote.js';
import { isDigest, OciError, type Digest } from '../../spec/index.js';
import type { Store } from '../../storage/index.js';

/** Repository `name` of `store` as a copy target. */
export function storeTarget(store: Store, name: string): ImageTarget {
  return {
    label: `berth:${name}`,
    // uploads.putMonolithic hashes every byte and publishes nothing that does not match.
    verifiesBlobs: true,
    async resolve(reference) {
      if (isDigest(reference)) return (await store.manifests.has(name, reference)) ? reference : undefined;
      return store.manifests.tagged(name, reference);
    },
    async pushBlob(d, source, opts): Promise<PushResult> {
      if ((await store.blobs.isLinked(name, d.digest)) && (await store.blobs.dataSize(d.digest)) !== undefined)
        return 'exists';
      // Stored for another repository: link it here from the local bytes (verified as they are read), no download.
      if ((await store.blobs.dataSize(d.digest)) !== undefined) {
        try {
          await store.uploads.putMonolithic(name, d.digest, await store.blobs.read(d.digest), d.size);
          return 'mounted';
        } catch (e) {
          if (!(e instanceof OciError)) throw e; // swept meanwhile, or damaged: download it instead
        }
      }
      const body = await source(0);
      await store.uploads.putMonolithic(name, d.digest, _counted(body, opts.onBytes), d.size);
      return 'uploaded';
    },
    async putManifest(reference, m) {
      await store.manifests.put(name, reference, m.bytes, m.mediaType);
    },
  };
}

/** Repository `name` of `store` as a copy source (push replication). */
export function storeSource(store: Store, name: string): ImageSource {
  return {
    label: `berth:${name}`,
    manifest: (reference) => store.manifests.get(name, reference),
    async blob(d, offset) {
      // Local bytes were verified when stored; the remote target verifies the digest again on its closing PUT.
      if (d.size === 0) return store.blobs.read(d.digest);
      return store.blobs.read(d.digest, { start: offset, end: d.size - 1 });
    },
    referrers: (digest: Digest) => store.manifests.referrers(name, digest),
  };
}

function _counted(body: Readable, onBytes?: (n: number) => void): Readable {
  if (!onBytes) return body;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
  body.on('error', (e) => tap.destroy(e));
  return body.pipe(tap);
}
