// storage/: the driver interface, drivers, and the OCI stores built on them.
import type { Driver } from './driver.js';
import { BlobStore } from './blobs.js';
import { ManifestStore, type ManifestStoreOptions } from './manifests.js';
import { UploadStore } from './uploads.js';
import { AuthStore } from './auth.js';
import { GarbageCollector } from './gc.js';
import { BrowseStore } from './browse.js';
import { MirrorStore } from './mirror.js';

export * from './driver.js';
export { paths } from './paths.js';
export { BlobStore } from './blobs.js';
export { ManifestStore, type StoredManifest } from './manifests.js';
export { UploadStore, type UploadInfo } from './uploads.js';
export { AuthStore, type AuthKind } from './auth.js';
export { MirrorStore, type MirrorLease } from './mirror.js';
export { BrowseStore, listFiles, type TagTime, type RepositorySummary } from './browse.js';

/** The stores: registry/ reaches storage only through these (issue 15), never through the driver. */
export interface Store {
  blobs: BlobStore;
  manifests: ManifestStore;
  uploads: UploadStore;
  /** Auth state: signing keys, robot and refresh tokens (registry/auth). */
  auth: AuthStore;
  /** Read-only views for the web UI: tags with push times from one listing, repository summaries. */
  browse: BrowseStore;
  /** Sync and replication state: per-rule leases, sync status, replication queues (registry/mirror). */
  mirror: MirrorStore;
  /** A garbage collector over this storage (storage/gc.ts). */
  collector(): GarbageCollector;
}

export function createStore(driver: Driver, opts: Partial<ManifestStoreOptions> = {}): Store {
  const blobs = new BlobStore(driver);
  const manifests = new ManifestStore(driver, blobs, { maxManifestBytes: opts.maxManifestBytes ?? 4 * 1024 * 1024 });
  const browse = new BrowseStore(driver, blobs, manifests);
  // What this process writes, the UI's listings show at once (other replicas' writes within browse.ttlMs).
  manifests.changed = blobs.changed = (name) => browse.forget(name);
  return {
    blobs,
    manifests,
    browse,
    uploads: new UploadStore(driver, blobs),
    auth: new AuthStore(driver),
    mirror: new MirrorStore(driver),
    collector: () => new GarbageCollector(driver),
  };
}
export { scrubBlobs, type ScrubResult, type DamagedBlob } from './scrub.js';
export { namespaceUsage, tagAges, type TagAge } from './scans.js';
