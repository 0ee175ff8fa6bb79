// Where a build goes: each Output is one medium of client/ fed by the build's ImageSource through the same `copy`
// the transfer verbs use — an OCI layout directory, a registry (skip existing blobs, mount from the base's
// repository when it lives on the same registry), or a docker-archive for `docker load`. The pipeline
// (pipeline.ts) writes every output in one loop, as ko's publishers do; artifacts (the SBOMs) go after their
// images, as referrers, to the outputs that can hold them.
import { copy, remoteTarget, type CopyResult, type Progress } from '../client/copy.js';
import { writeDockerArchive } from '../client/docker-archive.js';
import { OciLayout, parseLayoutArg } from '../client/layout.js';
import type { Client } from '../client/remote.js';
import type { Digest } from '../spec/digest.js';
import type { Platform } from '../spec/manifest.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { parseReference } from '../spec/reference.js';
import { putArtifacts, type Artifact } from './artifact.js';
import type { BuildResult } from './build.js';

export type OutputKind = 'oci-layout' | 'docker-archive' | 'registry';

export interface Output {
  readonly kind: OutputKind;
  /** What the caller named: `DIR[:TAG]`, a file, a reference. */
  readonly target: string;
  /** Whether referrers (SBOMs) can travel with the image; a docker-archive has no place for them. */
  readonly holdsArtifacts: boolean;
  /**
   * `artifacts` (SBOMs, signatures) may still be in the making: the output copies the image's blobs meanwhile and
   * stores its root manifest only once they are ready — if they fail, the output's tag is left as it was.
   */
  write(result: BuildResult, artifacts: Artifact[] | Promise<Artifact[]>): Promise<OutputReport>;
}

export interface OutputReport {
  output: Output;
  /** The manifest written: the build's root, or for a docker-archive the one platform image. */
  digest: Digest;
  /** What the copy did (registry and layout outputs). */
  copy?: CopyResult;
  /** docker-archive: the names `docker load` gives the image. */
  tags?: string[];
}

/** An output that cannot be written as asked; `detail` says why without naming how the caller spelled it. */
export class OutputError extends Error {
  constructor(
    readonly output: Pick<Output, 'kind' | 'target'>,
    readonly detail: string,
  ) {
    super(`${output.kind} ${output.target}: ${detail}`);
  }
}

/** `DIR` or `DIR:TAG` (skopeo's oci: form). Without a tag the image is listed by digest only. */
export function ociLayoutOutput(arg: string): Output {
  return {
    kind: 'oci-layout',
    target: arg,
    holdsArtifacts: true,
    async write(result, artifacts) {
      const r = await writeLayout(result, arg, artifacts);
      return { output: this, digest: r.digest, copy: r };
    },
  };
}

/** Pushes to a tag (or a digest-less reference, meaning `latest`); the digest is the build's, never chosen. */
export function registryOutput(ref: string, client: Client, opts: { progress?: Progress } = {}): Output {
  const out = { kind: 'registry' as const, target: ref };
  let digest: string | undefined;
  try {
    digest = parseReference(ref).digest;
  } catch (e) {
    throw new OutputError(out, (e as Error).message);
  }
  if (digest) throw new OutputError(out, "push to a tag, not a digest (the digest is the build's, not chosen)");
  return {
    ...out,
    holdsArtifacts: true,
    async write(result, artifacts) {
      const r = await pushImage(result, ref, client, opts.progress, artifacts);
      return { output: this, digest: r.digest, copy: r };
    },
  };
}

/** One platform's image for `docker load`; with several platforms, `platform` picks it. */
export function dockerArchiveOutput(file: string, opts: { tags?: string[]; platform?: Platform } = {}): Output {
  const tags = opts.tags ?? [];
  return {
    kind: 'docker-archive',
    target: file,
    holdsArtifacts: false,
    async write(result) {
      const digest = await writeArchive(result, file, tags, opts.platform);
      return { output: this, digest, tags };
    },
  };
}

/** Writes (or adds to) an OCI layout; prefer ociLayoutOutput. */
export async function writeLayout(
  result: BuildResult,
  arg: string,
  artifacts: Artifact[] | Promise<Artifact[]> = [],
): Promise<CopyResult> {
  const { dir, tag } = parseLayoutArg(arg);
  const layout = await OciLayout.create(dir);
  const ready = Promise.resolve(artifacts);
  const r = await copy(result.source, result.root.digest, layout, tag ?? '', { force: true, rootGate: ready });
  r.referrers += await putArtifacts(layout, await ready);
  return r;
}

/** Pushes to `ref` (tag or digest-less reference); prefer registryOutput. */
export async function pushImage(
  result: BuildResult,
  ref: string,
  client: Client,
  progress?: Progress,
  artifacts: Artifact[] | Promise<Artifact[]> = [],
): Promise<CopyResult> {
  const r = parseReference(ref);
  if (r.digest)
    throw new OutputError(
      { kind: 'registry', target: ref },
      "push to a tag, not a digest (the digest is the build's, not chosen)",
    );
  const mountFrom = result.base ? _sameRegistryRepo(result.base.name, r.registry) : undefined;
  const repo = client.repository(r, { push: true, mountFrom: mountFrom ? [mountFrom] : [] });
  const target = remoteTarget(repo);
  const ready = Promise.resolve(artifacts);
  const pushed = await copy(result.source, result.root.digest, target, r.tag ?? 'latest', {
    progress,
    rootGate: ready,
  });
  pushed.referrers += await putArtifacts(target, await ready);
  return pushed;
}

function _sameRegistryRepo(baseName: string, host: string): string | undefined {
  try {
    const b = parseReference(baseName);
    return b.registry === host ? b.repository : undefined;
  } catch {
    return undefined;
  }
}

/** One platform's image as a docker-archive; returns that image's manifest digest. */
export async function writeArchive(
  result: BuildResult,
  file: string,
  repoTags: string[],
  platform?: Platform,
): Promise<Digest> {
  const out = { kind: 'docker-archive' as const, target: file };
  let img = result.images[0];
  if (result.images.length > 1) {
    const have = result.images.map((i) => formatPlatform(i.platform)).join(', ');
    if (!platform)
      throw new OutputError(out, `a docker-archive holds one platform and this build has ${have}; choose one`);
    const hit = result.images.find((i) => platformMatches(i.platform, platform));
    if (!hit) throw new OutputError(out, `the build has no ${formatPlatform(platform)} image (it has ${have})`);
    img = hit;
  }
  await writeDockerArchive(file, result.source, img.manifest, repoTags);
  return img.manifest.digest;
}
