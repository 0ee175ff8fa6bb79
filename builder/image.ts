// Images as immutable values and the pure steps that build them (after go-containerregistry's `empty` + `mutate`):
//   scratch(platform, epoch) → appendLayers(img, layers) → withConfig(img, spec.config) → annotate(img, {...})
// Each step returns a new Image. `serializeImage` turns one into canonical config + manifest bytes; `imageIndex`
// groups per-platform images. Nothing here touches the disk: layer bytes are reached through Layer.open().
import type { Readable } from 'node:stream';
import { canonicalBytes } from '../spec/canonical-json.js';
import { digestOf, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex, ImageManifest, Platform } from '../spec/manifest.js';
import { OCI_CONFIG, OCI_INDEX, OCI_MANIFEST } from '../spec/media-types.js';
import type { ImageConfigSpec } from '../spec/build-spec.js';

export interface Layer {
  /** mediaType, digest, size (+ annotations) exactly as the manifest lists it. */
  descriptor: Descriptor;
  diffId: Digest;
  /** The compressed blob's bytes. */
  open(): Promise<Readable>;
  /** `length` bytes of the compressed blob from `offset` (layers built here: one segment). */
  openRange?(offset: number, length: number): Promise<Readable>;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** The OCI image config document (image-spec config.md); rootfs/history are kept in step with `layers`. */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  config?: Record<string, unknown>;
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history?: HistoryEntry[];
  [k: string]: unknown;
}

export interface Image {
  readonly platform: Platform;
  readonly layers: readonly Layer[];
  readonly config: Readonly<ImageConfig>;
  readonly annotations: Readonly<Record<string, string>>;
}

export interface Blob {
  descriptor: Descriptor;
  bytes: Buffer;
}

/** RFC 3339 UTC for an epoch in seconds: what `created` holds everywhere. */
export function epochTime(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/** FROM scratch: no layers, only the platform and a `created` fixed by the epoch. */
export function scratch(platform: Platform, epoch: number): Image {
  const config: ImageConfig = {
    created: epochTime(epoch),
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {},
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
  return { platform, layers: [], config, annotations: {} };
}

/** An image built on a base config and layers (from a registry or layout); its layers are never unpacked. */
export function fromBase(platform: Platform, config: ImageConfig, layers: Layer[]): Image {
  if (config.rootfs?.diff_ids?.length !== layers.length) {
    throw new Error(
      `base image config lists ${config.rootfs?.diff_ids?.length ?? 0} diff_ids but the manifest has ${layers.length} layers`,
    );
  }
  return { platform, layers, config: structuredClone(config), annotations: {} };
}

export function appendLayers(img: Image, layers: { layer: Layer; history?: HistoryEntry }[]): Image {
  const config = structuredClone(img.config) as ImageConfig;
  config.rootfs = { type: 'layers', diff_ids: [...config.rootfs.diff_ids, ...layers.map((l) => l.layer.diffId)] };
  config.history = [...(config.history ?? []), ...layers.map((l) => ({ created: config.created, ...l.history }))];
  return { ...img, layers: [...img.layers, ...layers.map((l) => l.layer)], config };
}

/** Applies the spec's `config` over the base's (env merges by name; the rest replaces). */
export function withConfig(img: Image, spec: ImageConfigSpec | undefined, created?: string): Image {
  const config = structuredClone(img.config) as ImageConfig;
  if (created) {
    config.created = created;
    // A base's own history keeps its times; only ours is pinned to the epoch.
  }
  const c: Record<string, unknown> = { ...(config.config ?? {}) };
  if (spec?.env) {
    const env = new Map<string, string>();
    for (const kv of (c.Env as string[] | undefined) ?? []) {
      const i = kv.indexOf('=');
      env.set(i < 0 ? kv : kv.slice(0, i), i < 0 ? '' : kv.slice(i + 1));
    }
    const pairs = Array.isArray(spec.env)
      ? spec.env.map((kv) => [kv.split('=')[0], kv.slice(kv.indexOf('=') + 1)] as const)
      : Object.entries(spec.env);
    for (const [k, v] of pairs) env.set(k, v);
    c.Env = [...env].map(([k, v]) => `${k}=${v}`);
  }
  if (spec?.entrypoint) {
    c.Entrypoint = spec.entrypoint;
    // As in docker: a new entrypoint drops the base's cmd unless cmd is given too.
    if (!spec.cmd) delete c.Cmd;
  }
  if (spec?.cmd) c.Cmd = spec.cmd;
  if (spec?.workdir) c.WorkingDir = spec.workdir;
  if (spec?.user !== undefined) c.User = spec.user;
  if (spec?.labels) c.Labels = { ...((c.Labels as Record<string, string>) ?? {}), ...spec.labels };
  if (spec?.exposedPorts) {
    const ports: Record<string, object> = { ...((c.ExposedPorts as Record<string, object>) ?? {}) };
    for (const p of spec.exposedPorts) ports[/\//.test(String(p)) ? String(p) : `${p}/tcp`] = {};
    c.ExposedPorts = ports;
  }
  if (spec?.volumes) {
    const vols: Record<string, object> = { ...((c.Volumes as Record<string, object>) ?? {}) };
    for (const v of spec.volumes) vols[v] = {};
    c.Volumes = vols;
  }
  if (spec?.stopSignal) c.StopSignal = spec.stopSignal;
  config.config = c;
  return { ...img, config };
}

export function annotate(img: Image, annotations: Record<string, string>): Image {
  return { ...img, annotations: { ...img.annotations, ...annotations } };
}

/** Canonical config and manifest bytes with their descriptors. */
export function serializeImage(img: Image): { config: Blob; manifest: Blob } {
  const configBytes = canonicalBytes(img.config);
  const configDesc: Descriptor = { mediaType: OCI_CONFIG, digest: digestOf(configBytes), size: configBytes.length };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: configDesc,
    layers: img.layers.map((l) => l.descriptor),
    ...(Object.keys(img.annotations).length ? { annotations: { ...img.annotations } } : {}),
  };
  const bytes = canonicalBytes(manifest);
  return {
    config: { descriptor: configDesc, bytes: configBytes },
    manifest: {
      descriptor: { mediaType: OCI_MANIFEST, digest: digestOf(bytes), size: bytes.length, platform: img.platform },
      bytes,
    },
  };
}

/** An OCI index over per-platform manifests, in the order given (the spec's platform order). */
export function imageIndex(manifests: Descriptor[], annotations: Record<string, string> = {}): Blob {
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests,
    ...(Object.keys(annotations).length ? { annotations } : {}),
  };
  const bytes = canonicalBytes(index);
  return { descriptor: { mediaType: OCI_INDEX, digest: digestOf(bytes), size: bytes.length }, bytes };
}
