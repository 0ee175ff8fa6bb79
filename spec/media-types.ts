// Media types of image-spec (media-types.md) and Docker's schema2, which real clients still push.
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const DOCKER_FOREIGN_LAYER = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';

/** Manifest media types berth stores and serves. */
export const MANIFEST_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST] as const;
export type ManifestMediaType = (typeof MANIFEST_TYPES)[number];

export function isManifestType(t: string): t is ManifestMediaType {
  return (MANIFEST_TYPES as readonly string[]).includes(t);
}
export function isIndexType(t: string): boolean {
  return t === OCI_INDEX || t === DOCKER_MANIFEST_LIST;
}

/** `Accept` value clients send to get any manifest kind. */
export const ACCEPT_ALL_MANIFESTS = MANIFEST_TYPES.join(', ');

/** Strips parameters and whitespace: `application/json; charset=utf-8` → `application/json`. */
export function baseMediaType(contentType: string | null | undefined): string {
  return (contentType ?? '').split(';')[0].trim().toLowerCase();
}
