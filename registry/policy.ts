// Repository policies: immutable tags, quotas per namespace, tag retention — one interface for the routes, each
// policy in its own module (policy-immutable.ts, policy-quota.ts, policy-retention.ts).
export type { RetentionPolicy, RetentionConfig, ImmutableRule, QuotaRule } from '../spec/config-schema.js';

import type { Digest } from '../spec/index.js';
import type { Store } from '../storage/index.js';
import type { Audit } from './audit.js';
import type { BodyLimit } from './body.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { immutableTags } from './policy-immutable.js';
import { quotas } from './policy-quota.js';
import { retention, type RetentionRun } from './policy-retention.js';

export type { RetentionRun } from './policy-retention.js';

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
  const immutable = immutableTags(config, store);
  const quota = quotas(config, store);
  const retain = retention(config, store, log, immutable.isImmutable, audit);
  return {
    enabled: { immutable: immutable.enabled, quotas: quota.enabled, retention: retain.enabled },
    checkTagWrite: immutable.checkTagWrite,
    checkDelete: immutable.checkDelete,
    checkBlobDelete: immutable.checkBlobDelete,
    checkQuota: quota.checkQuota,
    quotaBody: quota.quotaBody,
    noteStored: quota.noteStored,
    usage: quota.usage,
    recordPull: retain.recordPull,
    applyRetention: retain.applyRetention,
  };
}
