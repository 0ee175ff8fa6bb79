// Image references with a transport, as skopeo spells them (containers-transports(5)), and one way to read and
// write an image whatever the medium:
//   [docker://]HOST/NAME[:TAG|@DIGEST]   a registry (the default when no transport is named)
//   oci:DIR[:TAG|@DIGEST]                an OCI image layout directory (layout.ts)
//   oci-archive:FILE[:TAG]               an OCI image layout in a tar file
//   docker-archive:FILE[:NAME:TAG]       `docker save` / `docker load` tar (docker-archive.ts)
// As in skopeo, DIR and FILE end at the first `:`. Every medium is an ImageSource to read and a writer that takes
// any ImageSource (copy.ts does the work; a docker-archive holds one platform; an oci-archive is a layout packed
// into a tar once complete, and unpacked into a temp dir to be read).
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, normalize, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { Digest } from '../spec/digest.js';
import type { ImageIndex, Platform } from '../spec/manifest.js';
import { isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { DOCKER_HUB, isValidTag, parseReference, type Reference } from '../spec/reference.js';
import {
  copy,
  remoteSource,
  remoteTarget,
  type CopyOptions,
  type CopyResult,
  type ImageSource,
  type ImageTarget,
} from './copy.js';
import { DockerArchive, writeDockerArchive } from './docker-archive.js';
import { OciLayout } from './layout.js';
import type { Client, FetchedManifest } from './remote.js';
import { tempBeside } from './temp.js';

export type TransportName = 'docker' | 'oci' | 'oci-archive' | 'docker-archive';

export interface ImageRef {
  transport: TransportName;
  /** The registry reference (docker). */
  ref?: Reference;
  /** The directory or file (other transports). */
  path?: string;
  /** oci / oci-archive: tag (ref.name) or digest; docker-archive: the image's name:tag. Empty: the only image. */
  name?: string;
  /** As the user wrote it, for messages. */
  input: string;
}

/** A reference that cannot be parsed; the message says how to write it. */
export class TransportError extends Error {}

const FORMS =
  '[docker://][HOST[:PORT]/]NAME[:TAG|@DIGEST], oci:DIR[:TAG|@DIGEST], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]';

export function parseImageRef(input: string): ImageRef {
  const m = /^(docker|oci|oci-archive|docker-archive):(.*)$/s.exec(input);
  if (!m) return { transport: 'docker', ref: _registryRef(input), input };
  const [, transport, rest] = m as unknown as [string, TransportName, string];
  if (transport === 'docker') {
    if (!rest.startsWith('//'))
      throw new TransportError(`"${input}": write a registry image as docker://HOST/NAME:TAG`);
    return { transport, ref: _registryRef(rest.slice(2)), input };
  }
  let path = rest;
  let name: string | undefined;
  const at = transport === 'oci' ? rest.search(/@sha(256|512):/) : -1;
  if (at >= 0) {
    path = rest.slice(0, at);
    name = rest.slice(at + 1);
  } else {
    const i = rest.indexOf(':');
    if (i >= 0) {
      path = rest.slice(0, i);
      name = rest.slice(i + 1);
    }
  }
  if (!path) throw new TransportError(`"${input}" names no ${transport === 'oci' ? 'directory' : 'file'}; ${FORMS}`);
  if (name !== undefined && transport !== 'docker-archive' && !name.includes(':') && !isValidTag(name))
    throw new TransportError(`"${input}": "${name}" is not a valid tag`);
  if (name !== undefined && transport === 'docker-archive') {
    try {
      parseReference(name);
    } catch (e) {
      throw new TransportError(`"${input}": ${(e as Error).message}; write it as docker-archive:FILE:NAME:TAG`);
    }
  }
  return { transport, path, name: name || undefined, input };
}

function _registryRef(text: string): Reference {
  try {
    return parseReference(text);
  } catch (e) {
    throw new TransportError(`${(e as Error).message}; write an image reference as ${FORMS}`);
  }
}

/** The tag or digest to read from a registry. */
function _regId(r: Reference): string {
  return r.digest ?? r.tag ?? 'latest';
}

export interface OpenedSource {
  source: ImageSource;
  /** What to ask the source for (tag, digest, archive image name; empty: its only image). */
  reference: string;
  /** Removes temp files (an unpacked oci-archive). */
  close(): Promise<void>;
}

/** Opens an image for reading, whatever its transport. */
export async function openImage(r: ImageRef, client: Client): Promise<OpenedSource> {
  const none = async () => {};
  switch (r.transport) {
    case 'docker':
      return { source: remoteSource(client.repository(r.ref!)), reference: _regId(r.ref!), close: none };
    case 'oci':
      return { source: await OciLayout.open(r.path!), reference: r.name ?? '', close: none };
    case 'docker-archive':
      return { source: await DockerArchive.open(r.path!), reference: r.name ?? '', close: none };
    case 'oci-archive': {
      const dir = await mkdtemp(join(tmpdir(), 'berth-oci-archive-'));
      try {
        await unpackTar(r.path!, dir);
        return {
          source: await OciLayout.open(dir),
          reference: r.name ?? '',
          close: () => rm(dir, { recursive: true, force: true }),
        };
      } catch (e) {
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
    }
  }
}

export interface WriteOptions extends CopyOptions {
  /** docker-archive: the platform to keep from an index (default: the only one, else an error naming them). */
  platform?: Platform;
}

export interface WriteResult {
  digest: Digest;
  mediaType: string;
  copy?: CopyResult;
}

/**
 * Writes `reference` of `src` to the medium `r` names. Registry and layout targets get the whole image or index
 * (copy); a docker-archive one platform's image; an oci-archive appears only once complete.
 */
export async function writeImage(
  src: ImageSource,
  reference: string,
  r: ImageRef,
  client: Client,
  opts: WriteOptions = {},
): Promise<WriteResult> {
  switch (r.transport) {
    case 'docker': {
      const dst = r.ref!;
      if (dst.digest)
        throw new TransportError(`${r.input}: write to a tag, not a digest (the digest is the content's)`);
      const sameHost = src.remote && client.registry(dst.registry).host === src.remote.host;
      const repo = client.repository(dst, { push: true, mountFrom: sameHost ? [src.remote!.name] : [] });
      const res = await copy(src, reference, remoteTarget(repo), dst.tag ?? 'latest', opts);
      return { digest: res.digest, mediaType: res.mediaType, copy: res };
    }
    case 'oci': {
      if (r.name?.includes(':')) throw new TransportError(`${r.input}: write to oci:DIR[:TAG], not to a digest`);
      const layout = await OciLayout.create(r.path!);
      const res = await copy(src, reference, layout, r.name ?? '', opts);
      return { digest: res.digest, mediaType: res.mediaType, copy: res };
    }
    case 'oci-archive': {
      const dir = await mkdtemp(join(tmpdir(), 'berth-oci-archive-'));
      try {
        const layout = await OciLayout.create(dir);
        const res = await copy(src, reference, layout, r.name ?? '', opts);
        await packTar(dir, r.path!);
        return { digest: res.digest, mediaType: res.mediaType, copy: res };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    case 'docker-archive': {
      let m = await src.manifest(reference);
      if (isIndexType(m.mediaType)) {
        const index = JSON.parse(m.bytes.toString('utf8')) as ImageIndex;
        const images = index.manifests.filter((d) => d.platform && d.platform.os !== 'unknown');
        const wanted = opts.platform ?? opts.platforms?.[0];
        const hit = wanted ? images.find((d) => platformMatches(d.platform, wanted)) : images.length === 1 && images[0];
        if (!hit) {
          const have = images.map((d) => formatPlatform(d.platform!)).join(', ');
          throw new TransportError(
            `${r.input}: a docker-archive holds one platform; ${wanted ? `${formatPlatform(wanted)} is not among` : 'pick one of'} ${have} with --platform`,
          );
        }
        m = await src.manifest(hit.digest);
      }
      const tags = r.name ? [dockerTag(parseReference(r.name))] : [];
      await saveDockerArchive(r.path!, src, m, tags, opts);
      return { digest: m.digest, mediaType: m.mediaType };
    }
  }
}

export interface OpenedTarget {
  target: ImageTarget;
  /** The tag to write the root under ('' = by digest only). */
  tag: string;
  /** Completes the write once the root `digest` is stored (an archive is packed here); then `close`. */
  finish(digest: Digest): Promise<void>;
  /** Removes temp files; safe after a failure (nothing partial is left at the destination). */
  close(): Promise<void>;
}

/**
 * Opens a medium to write an image into with any ImageTarget writer (the image verbs' rewrite, indexes…), not only
 * copy: a registry or a layout is written directly; an archive is written into a temp layout and packed into the
 * file by `finish` (so the file appears only once complete). `mountFrom` are repositories on the target registry
 * whose blobs may be mounted.
 */
export async function openImageTarget(
  r: ImageRef,
  client: Client,
  opts: { mountFrom?: string[] } = {},
): Promise<OpenedTarget> {
  const none = async () => {};
  switch (r.transport) {
    case 'docker': {
      const dst = r.ref!;
      const repo = client.repository(dst, { push: true, mountFrom: opts.mountFrom ?? [] });
      return { target: remoteTarget(repo), tag: dst.digest ? '' : (dst.tag ?? 'latest'), finish: none, close: none };
    }
    case 'oci':
      return {
        target: await OciLayout.create(r.path!),
        tag: r.name?.includes(':') ? '' : (r.name ?? ''),
        finish: none,
        close: none,
      };
    case 'oci-archive':
    case 'docker-archive': {
      const dir = await mkdtemp(join(tmpdir(), 'berth-write-'));
      const close = () => rm(dir, { recursive: true, force: true });
      try {
        const layout = await OciLayout.create(dir);
        return {
          target: layout,
          tag: '',
          finish: async (digest) => {
            await writeImage(layout, digest, r, client);
          },
          close,
        };
      } catch (e) {
        await close();
        throw e;
      }
    }
  }
}

/**
 * Writes one platform image `m` of `src` as a docker-archive at `file`. From a registry the blobs are first
 * downloaded into a staging OCI layout beside the file (`.FILE.berth-pull/`), where an interrupted download stays
 * as a resumable `.partial` and finished blobs stay too, so a rerun fetches only what is missing (issue 17); the
 * tar is then packed from local files and the staging layout removed. Local sources are packed directly.
 */
export async function saveDockerArchive(
  file: string,
  src: ImageSource,
  m: FetchedManifest,
  repoTags: string[],
  opts: CopyOptions = {},
): Promise<void> {
  const progress = opts.progress;
  if (!src.remote) {
    await writeDockerArchive(file, src, m, repoTags, { onBytes: (d, n) => progress?.blobBytes(d, n) });
    return;
  }
  const staging = join(dirname(file), `.${basename(file)}.berth-pull`);
  const layout = await OciLayout.create(staging);
  await copy(src, m.digest, layout, '', { ...opts, platforms: undefined, referrers: false });
  // The layout hashed every blob as it wrote it (a staged blob is published only under its verified digest).
  await writeDockerArchive(file, layout, m, repoTags, { verified: true });
  await rm(staging, { recursive: true, force: true });
}

/** The RepoTag docker load applies: docker's short form for Docker Hub names. */
export function dockerTag(r: Reference): string {
  let name = `${r.registry}/${r.repository}`;
  if (r.registry === DOCKER_HUB) name = r.repository.startsWith('library/') ? r.repository.slice(8) : r.repository;
  return `${name}:${r.tag ?? 'latest'}`;
}

/** Packs a directory into a tar at `file` (streamed; the file appears only when complete). */
export async function packTar(dir: string, file: string): Promise<void> {
  const files = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) =>
      relative(dir, join(e.parentPath ?? (e as any).path, e.name))
        .split(sep)
        .join('/'),
    )
    .sort();
  const { tmp, done: untrack } = tempBeside(file);
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(tmp));
  const mtime = new Date(0);
  try {
    for (const name of files) {
      const size = (await stat(join(dir, name))).size;
      await pipeline(createReadStream(join(dir, name)), pack.entry({ name, size, mode: 0o644, mtime }));
    }
    pack.finalize();
    await written;
    await rename(tmp, file);
  } catch (e) {
    pack.destroy(e as Error);
    await written.catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  } finally {
    untrack();
  }
}

/** Unpacks a tar's regular files under `dir`, refusing entries that would land outside it. */
export async function unpackTar(file: string, dir: string): Promise<void> {
  const ex = tar.extract();
  const feed = pipeline(createReadStream(file), ex as unknown as NodeJS.WritableStream);
  feed.catch(() => {});
  for await (const entry of ex) {
    const name = normalize(entry.header.name);
    if (name.startsWith('..') || name.startsWith('/')) {
      ex.destroy();
      throw new TransportError(`${file}: entry "${entry.header.name}" points outside the archive`);
    }
    if (entry.header.type !== 'file') {
      entry.resume();
      continue;
    }
    const out = join(dir, name);
    await mkdir(dirname(out), { recursive: true });
    await pipeline(entry, createWriteStream(out));
  }
  await feed;
}
