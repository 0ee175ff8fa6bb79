// Repository names, tags and full references (`host:port/a/b:tag@sha256:…`).
// Grammar: distribution-spec "Pulling manifests" and distribution/reference's regexp.go.
import { parseDigest, type Digest } from './digest.js';

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
export const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
export const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
export const NAME_MAX = 255;
// A registry host: a domain name or IPv4 or [IPv6], with an optional port.
const HOST_RE =
  /^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;

export const DOCKER_HUB = 'docker.io';

export class ReferenceError_ extends Error {}
export { ReferenceError_ as InvalidReferenceError };

export function isValidName(name: string): boolean {
  return typeof name === 'string' && name.length > 0 && name.length <= NAME_MAX && NAME_RE.test(name);
}

export function isValidTag(tag: string): boolean {
  return typeof tag === 'string' && TAG_RE.test(tag);
}

export interface Reference {
  /** Registry host[:port], e.g. `docker.io`, `localhost:5000`. */
  registry: string;
  /** Repository path inside the registry, e.g. `library/alpine`. */
  repository: string;
  tag?: string;
  digest?: Digest;
}

function _looksLikeHost(first: string): boolean {
  return first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[');
}

/**
 * Parses `[host[:port]/]name[:tag][@digest]` the way docker does: the first component is a registry host only when
 * it looks like one (has `.` or `:` or is `localhost`); Docker Hub names get `library/` when they have one component.
 */
export function parseReference(input: string, opts: { defaultRegistry?: string; defaultTag?: string } = {}): Reference {
  const fail = (why: string): never => {
    throw new ReferenceError_(`invalid reference "${input}": ${why}`);
  };
  if (!input || typeof input !== 'string') fail('empty');
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    try {
      digest = parseDigest(rest.slice(at + 1)).digest;
    } catch (e) {
      fail((e as Error).message);
    }
    rest = rest.slice(0, at);
  }
  let registry = opts.defaultRegistry ?? DOCKER_HUB;
  const slash = rest.indexOf('/');
  if (slash > 0 && _looksLikeHost(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    if (!HOST_RE.test(registry)) fail(`bad registry host "${registry}"`);
    rest = rest.slice(slash + 1);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) fail(`bad tag "${tag}" (allowed: [A-Za-z0-9_][A-Za-z0-9._-]{0,127})`);
  }
  if (registry === DOCKER_HUB && !rest.includes('/')) rest = `library/${rest}`;
  if (!isValidName(rest)) fail(`bad repository name "${rest}" (lowercase letters, digits, separators . _ __ - and /)`);
  if (`${registry}/${rest}`.length > NAME_MAX) fail('name longer than 255 characters');
  if (!tag && !digest) tag = opts.defaultTag ?? 'latest';
  return { registry, repository: rest, tag, digest };
}

export function formatReference(ref: Reference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

/** The artifacts cosign attaches to an image by tag rather than as OCI 1.1 referrers. */
export const COSIGN_TAG_KINDS = ['sig', 'att', 'sbom'] as const;
export type CosignTagKind = (typeof COSIGN_TAG_KINDS)[number];

/**
 * cosign's tag scheme: the signatures, attestations and SBOMs of `sha256:<hex>` live under the tags
 * `sha256-<hex>.sig`, `.att` and `.sbom` of the same repository (sigstore/cosign pkg/oci/remote "tag scheme").
 * Undefined when the digest has no such tag (a sha512 one would not fit the 128-character tag grammar).
 */
export function cosignTag(digest: Digest, kind: CosignTagKind): string | undefined {
  const { algorithm, encoded } = parseDigest(digest);
  const tag = `${algorithm}-${encoded}.${kind}`;
  return isValidTag(tag) ? tag : undefined;
}

/** Whether `tag` is one of cosign's `sha256-<hex>.sig|.att|.sbom` tags (not an image of its own). */
export function isCosignTag(tag: string): boolean {
  return /^sha256-[0-9a-f]{64}\.(?:sig|att|sbom)$/.test(tag);
}
