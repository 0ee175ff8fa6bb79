// Where a build goes. Each output is client/'s medium fed by the build's ImageSource through the same `copy`
// the transfer verbs use: an OCI layout directory, a registry (skip existing blobs, mount from the base's
// repository when it lives on the same registry), or a docker-archive for `docker load`.
// Artifacts (the SBOMs) go after their images, as referrers, to the layout and registry outputs.
import { copy, remoteTarget, type CopyResult, type Progress } from '../client/copy.js';
import { writeDockerArchive } from '../client/docker-archive.js';
import { OciLayout, parseLayoutArg } from '../client/layout.js';
import type { Client } from '../client/remote.js';
import type { Platform } from '../spec/manifest.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { parseReference } from '../spec/reference.js';
import { putArtifacts, type Artifact } from './artifact.js';
import type { BuildResult } from './build.js';

/** `DIR` or `DIR:TAG` (skopeo's oci: form). Without a tag the image is listed by digest only. */
export async function writeLayout(result: BuildResult, arg: string, artifacts: Artifact[] = []): Promise<CopyResult> {
  const { dir, tag } = parseLayoutArg(arg);
  const layout = await OciLayout.create(dir);
  const r = await copy(result.source, result.root.digest, layout, tag ?? '', { force: true });
  r.referrers += await putArtifacts(layout, artifacts);
  return r;
}

/** Pushes to `ref` (tag or digest-less reference); returns the copy summary. */
export async function pushImage(result: BuildResult, ref: string, client: Client, progress?: Progress, artifacts: Artifact[] = []): Promise<CopyResult> {
  const r = parseReference(ref);
  if (r.digest) throw new Error(`--push ${ref}: push to a tag (the digest is the build's, not chosen)`);
  const mountFrom = result.base ? _sameRegistryRepo(result.base.name, r.registry) : undefined;
  const repo = client.repository(r, { push: true, mountFrom: mountFrom ? [mountFrom] : [] });
  const target = remoteTarget(repo);
  const pushed = await copy(result.source, result.root.digest, target, r.tag ?? 'latest', { progress });
  pushed.referrers += await putArtifacts(target, artifacts);
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

/** One platform's image as a docker-archive (`docker load`). With several platforms, `platform` picks one. */
export async function writeArchive(result: BuildResult, file: string, repoTags: string[], platform?: Platform): Promise<void> {
  let img = result.images[0];
  if (result.images.length > 1) {
    if (!platform) {
      throw new Error(`--docker-archive holds one platform and this build has ${result.images.map((i) => formatPlatform(i.platform)).join(', ')}; add --platform`);
    }
    const hit = result.images.find((i) => platformMatches(i.platform, platform));
    if (!hit) throw new Error(`--docker-archive: the build has no ${formatPlatform(platform)} image`);
    img = hit;
  }
  await writeDockerArchive(file, result.source, img.manifest, repoTags);
}
