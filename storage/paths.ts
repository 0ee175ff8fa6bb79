// The one place that knows berth's storage layout. Nobody else builds a storage path.
//
//   blobs/<alg>/<hex[0:2]>/<hex>/data                    content-addressed bytes, shared by all repositories
//   repositories/<name>/
//     _layers/<alg>/<hex>                                link: the repository may see this blob
//     _manifests/revisions/<alg>/<hex>                   link: manifest in this repository; holds its media type
//     _manifests/tags/<tag>                              holds the digest the tag points to
//     _referrers/<alg>/<subject-hex>/<alg>-<hex>         descriptor (JSON) of a manifest whose subject is <subject>
//   catalog/<name with "/" as "+">                       one empty object per repository, for a flat, cheap listing
//   uploads/<id>/data                                    appendable upload bytes
//   uploads/<id>/info                                    JSON: repository, subject, startedAt (binds the session)
//   gc/state                                             JSON: GC generation and phase; writers read it (storage/gc.ts)
//   gc/lease                                             JSON: holder and heartbeat, so one GC runs across replicas
//   pulls/<name with "/" as "+">/<tag>                   last pull of a tag (ISO time), for retention; throttled
//   auth/keys/<name>.pem                                 token signing/verification keys (registry/auth/keys.ts)
//   auth/robots/<id>.json                                robot token records (registry/auth/state.ts)
//   auth/refresh/<sha256>.json                           refresh token records; deleting one revokes it
//   mirror/sync/<rule>/lease                             JSON: holder and heartbeat, so one replica runs a sync rule
//   mirror/sync/<rule>/status                            JSON: the rule's last run (storage/mirror.ts)
//   mirror/replication/<rule>/queue/<id>                 JSON: one pending replication (push or delete) to a target
//   mirror/replication/<rule>/lease                      JSON: holder and heartbeat of the replica draining the queue
//   quarantine/<alg>/<hex>/<time>                        bytes that were stored under a digest they do not match,
//                                                        moved aside by `berth fsck` (storage/scrub.ts), kept for
//                                                        inspection; never served
//
// Every argument is validated here too, so a bug upstream can never turn into a path escape.
import { isValidName, isValidTag, parseDigest, type Digest } from '../spec/index.js';

function _name(name: string): string {
  if (!isValidName(name)) throw new Error(`invalid repository name ${JSON.stringify(name)}`);
  return name;
}
function _digest(d: string): { algorithm: string; encoded: string } {
  return parseDigest(d);
}
const UPLOAD_ID = /^[a-zA-Z0-9_-]{16,64}$/;
export function isUploadId(id: string): boolean {
  return UPLOAD_ID.test(id);
}
/** Whether `path` is an upload's data (`paths.uploadData`): the only objects berth ever appends to. */
export function isUploadDataPath(path: string): boolean {
  return /^uploads\/[a-zA-Z0-9_-]{16,64}\/data$/.test(path);
}
function _upload(id: string): string {
  if (!isUploadId(id)) throw new Error(`invalid upload id ${JSON.stringify(id)}`);
  return id;
}

export type MirrorKind = 'sync' | 'replication';
const MIRROR_RULE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const QUEUE_ID = /^[0-9a-z-]{1,80}$/;
function _mirror(kind: MirrorKind, rule: string): string {
  if (kind !== 'sync' && kind !== 'replication') throw new Error(`invalid mirror kind ${JSON.stringify(kind)}`);
  if (!MIRROR_RULE.test(rule)) throw new Error(`invalid rule name ${JSON.stringify(rule)}`);
  return `mirror/${kind}/${rule}`;
}

/** The kinds of auth state kept in storage, each a flat directory under `auth/` (storage/auth.ts). */
export type AuthKind = 'keys' | 'robots' | 'refresh';
const AUTH_KINDS: readonly AuthKind[] = ['keys', 'robots', 'refresh'];
const AUTH_FILE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

export const paths = {
  blobData(digest: Digest | string): string {
    const { algorithm, encoded } = _digest(digest);
    return `blobs/${algorithm}/${encoded.slice(0, 2)}/${encoded}/data`;
  },
  blobsRoot: 'blobs',
  repositoriesRoot: 'repositories',
  repository(name: string): string {
    return `repositories/${_name(name)}`;
  },
  layerLink(name: string, digest: Digest | string): string {
    const { algorithm, encoded } = _digest(digest);
    return `repositories/${_name(name)}/_layers/${algorithm}/${encoded}`;
  },
  layerLinks(name: string): string {
    return `repositories/${_name(name)}/_layers`;
  },
  manifestRevision(name: string, digest: Digest | string): string {
    const { algorithm, encoded } = _digest(digest);
    return `repositories/${_name(name)}/_manifests/revisions/${algorithm}/${encoded}`;
  },
  manifestRevisions(name: string): string {
    return `repositories/${_name(name)}/_manifests/revisions`;
  },
  tag(name: string, tag: string): string {
    if (!isValidTag(tag)) throw new Error(`invalid tag ${JSON.stringify(tag)}`);
    return `repositories/${_name(name)}/_manifests/tags/${tag}`;
  },
  tags(name: string): string {
    return `repositories/${_name(name)}/_manifests/tags`;
  },
  referrers(name: string, subject: Digest | string): string {
    const { algorithm, encoded } = _digest(subject);
    return `repositories/${_name(name)}/_referrers/${algorithm}/${encoded}`;
  },
  referrer(name: string, subject: Digest | string, referrer: Digest | string): string {
    const r = _digest(referrer);
    return `${paths.referrers(name, subject)}/${r.algorithm}-${r.encoded}`;
  },
  catalogRoot: 'catalog',
  catalogEntry(name: string): string {
    return `catalog/${_name(name).replaceAll('/', '+')}`;
  },
  catalogName(entry: string): string {
    return entry.replaceAll('+', '/');
  },
  gcState: 'gc/state',
  gcLease: 'gc/lease',
  /** Last-pull records live outside repositories/ so GC and listings of a repository never see them. */
  pulls(name: string): string {
    return `pulls/${_name(name).replaceAll('/', '+')}`;
  },
  lastPull(name: string, tag: string): string {
    if (!isValidTag(tag)) throw new Error(`invalid tag ${JSON.stringify(tag)}`);
    return `${paths.pulls(name)}/${tag}`;
  },
  authRoot: 'auth',
  auth(kind: AuthKind): string {
    if (!AUTH_KINDS.includes(kind)) throw new Error(`invalid auth state kind ${JSON.stringify(kind)}`);
    return `auth/${kind}`;
  },
  authFile(kind: AuthKind, file: string): string {
    if (!AUTH_FILE.test(file)) throw new Error(`invalid auth state file name ${JSON.stringify(file)}`);
    return `${paths.auth(kind)}/${file}`;
  },
  /** A sync rule's or replication rule's lease; `kind` says which. */
  mirrorLease(kind: MirrorKind, rule: string): string {
    return `${_mirror(kind, rule)}/lease`;
  },
  syncStatus(rule: string): string {
    return `${_mirror('sync', rule)}/status`;
  },
  replicationQueue(rule: string): string {
    return `${_mirror('replication', rule)}/queue`;
  },
  replicationItem(rule: string, id: string): string {
    if (!QUEUE_ID.test(id)) throw new Error(`invalid queue item id ${JSON.stringify(id)}`);
    return `${paths.replicationQueue(rule)}/${id}`;
  },
  quarantineRoot: 'quarantine',
  /** Where `berth fsck` keeps bytes found under `digest` that do not hash to it; `stamp` tells finds apart. */
  quarantined(digest: Digest | string, stamp: string): string {
    const { algorithm, encoded } = _digest(digest);
    if (!/^[0-9A-Za-z-]{1,40}$/.test(stamp)) throw new Error(`invalid quarantine stamp ${JSON.stringify(stamp)}`);
    return `quarantine/${algorithm}/${encoded}/${stamp}`;
  },
  uploadsRoot: 'uploads',
  upload(id: string): string {
    return `uploads/${_upload(id)}`;
  },
  uploadData(id: string): string {
    return `uploads/${_upload(id)}/data`;
  },
  uploadInfo(id: string): string {
    return `uploads/${_upload(id)}/info`;
  },
};

/**
 * The top-level entries berth may create in a storage root (the tree above; `_tmp` is the fs driver's temp dir).
 * Commands that must not create storage by accident (berth gc, fsck, token) recognise a berth root by them.
 */
export const TOP_LEVEL_ENTRIES: readonly string[] = [
  'blobs',
  'repositories',
  'catalog',
  'uploads',
  'gc',
  'pulls',
  'auth',
  'quarantine',
  'mirror',
  '_tmp',
];
