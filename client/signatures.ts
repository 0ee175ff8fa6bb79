// signing/'s reader and writer over one remote repository (client/remote.ts): what `berth sign`, `berth verify`
// and the builder's --sign use to find and store signatures on a registry.
import type { Digest } from '../spec/digest.js';
import type { Descriptor } from '../spec/manifest.js';
import type { SignatureWriter, StoredManifest } from '../signing/source.js';
import { RegistryError } from './registry.js';
import type { Repository } from './remote.js';

export function signatureStore(repo: Repository): SignatureWriter {
  return {
    async manifest(reference: string): Promise<StoredManifest | undefined> {
      try {
        return await repo.getManifest(reference);
      } catch (e) {
        if (e instanceof RegistryError && e.status === 404) return undefined;
        throw e;
      }
    },
    blob: (desc: Pick<Descriptor, 'digest' | 'size'>, limit: number) => repo.getBlobBytes(desc, limit),
    referrers: (digest: Digest, artifactType?: string) => repo.referrers(digest, artifactType),
    async putBlob(bytes: Buffer) {
      const d = await repo.pushBytes(bytes);
      return { digest: d.digest, size: d.size };
    },
    putManifest: (reference: string, bytes: Buffer, mediaType: string) => repo.putManifest(reference, bytes, mediaType),
    addReferrerFallback: (subject: Digest, referrer: Descriptor) => repo.addReferrerFallback(subject, referrer),
  };
}
