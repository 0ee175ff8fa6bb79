// Plumbing shared by the image verbs (mutate, append, index, rebase, export, manifest, config, blob): where an
// image is read from and written to, platform selection in an index, KEY=VALUE flags, and output files that
// appear whole or not at all. The one seam where other media (oci:, archives) plug in is openSource/openTarget.
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { Writable } from 'node:stream';
import type { ImageSource, ImageTarget } from '../client/copy.js';
import { LayoutError } from '../client/layout.js';
import { loadImage, MutateError, parseJson, type LoadedImage } from '../client/mutate.js';
import type { Client } from '../client/remote.js';
import { type ImageRef, openImage, openImageTarget, TransportError } from '../client/transports.js';
import type { ImageIndex, Platform } from '../spec/manifest.js';
import { isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { formatReference } from '../spec/reference.js';
import { CLIError, EXIT } from './command.js';
import { hostPlatform, imageRef } from './_client.js';

export interface Opened {
  /** The image as the user named it (any transport). */
  image: ImageRef;
  /** How messages name it. */
  label: string;
  source: ImageSource;
  reference: string;
  /** Removes temp files (an unpacked archive). */
  close(): Promise<void>;
}

/** Opens REF for reading, whatever its transport (registry, oci:, oci-archive:, docker-archive:). */
export async function openSource(
  client: Client,
  input: string | undefined,
  what: string,
  command: string,
): Promise<Opened> {
  const image = imageRef(input, what, command);
  const opened = await openImage(image, client).catch(userError);
  return { image, label: imageLabel(image), ...opened };
}

export interface Target {
  image: ImageRef;
  target: ImageTarget;
  tag: string;
  /** Completes the write (packs an archive) once the root is stored. */
  finish(digest: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Where a verb writes: `-t REF` when given (any transport), else where REF was read from, under its tag (by digest
 * only when REF named a digest; an archive is rewritten whole). Blobs of `from` and `mountFrom` mount on the
 * target registry when they live on the same one.
 */
export async function openTarget(
  client: Client,
  from: ImageRef,
  tagFlag: string | undefined,
  command: string,
  mountFrom: ImageRef[] = [],
): Promise<Target> {
  const dst = tagFlag ? imageRef(tagFlag, '--tag', command) : from;
  if (tagFlag && (dst.ref?.digest || (dst.transport === 'oci' && dst.name?.includes(':'))))
    throw new CLIError(`--tag ${tagFlag} names a digest; write to a tag (the digest is the result)`, EXIT.usage);
  const sameRegistry = (m: ImageRef) => m.ref && dst.ref && m.ref.registry === dst.ref.registry;
  const mounts = [from, ...mountFrom].filter(sameRegistry).map((m) => m.ref!.repository);
  const opened = await openImageTarget(dst, client, { mountFrom: [...new Set(mounts)] }).catch(userError);
  return { image: dst, ...opened };
}

/** How a verb names what it wrote: `name@digest` for a registry or layout, the file for an archive. */
export function written(dst: ImageRef, digest: string): string {
  switch (dst.transport) {
    case 'docker': {
      const r = dst.ref!;
      return `${formatReference({ ...r, digest: undefined, tag: r.digest ? undefined : r.tag })}@${digest}`;
    }
    case 'oci':
      return `oci:${dst.path}@${digest}`;
    default:
      return `${dst.transport}:${dst.path} (${digest})`;
  }
}

/** REF as messages name it. */
export function imageLabel(r: ImageRef): string {
  return r.ref ? formatReference(r.ref) : r.input;
}

/**
 * The image `reference` names, for verbs that read one platform: an index is descended with `platform`, else with
 * this machine's platform (as docker and crane pick), and a missing platform is an error listing what there is.
 */
export async function selectImage(o: Opened, platform: Platform | undefined): Promise<LoadedImage> {
  const m = await o.source.manifest(o.reference);
  if (!isIndexType(m.mediaType)) {
    const img = await loadImage(o.source, m);
    if (platform && !platformMatches(img.platform, platform))
      throw new CLIError(
        `${o.label} is a single ${formatPlatform(img.platform)} image, not ${formatPlatform(platform)}`,
      );
    return img;
  }
  const index = parseJson<ImageIndex>(m.bytes, 'index');
  const want = platform ?? hostPlatform();
  const hit = index.manifests.find((d) => platformMatches(d.platform, want));
  if (!hit) {
    const have = index.manifests
      .filter((d) => d.platform && d.platform.os !== 'unknown')
      .map((d) => formatPlatform(d.platform!))
      .join(', ');
    throw new CLIError(
      `${o.label} has no image for ${formatPlatform(want)}; it has ${have || 'none'} — pick one with --platform`,
    );
  }
  return loadImage(o.source, await o.source.manifest(hit.digest), hit.platform);
}

/** Parses repeated `KEY=VALUE` flags; the error names the flag. */
export function keyValues(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new CLIError(`${flag} "${kv}" must be KEY=VALUE`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** `["/bin/sh","-c"]` (JSON, as in a Dockerfile) or `a,b,c` (as crane takes it); '' clears. */
export function argList(value: string | undefined, flag: string): string[] | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === '') return [];
  if (v.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch {
      throw new CLIError(`${flag} ${value} is not a JSON array; write it as '["/bin/app","--flag"]' or a,b,c`);
    }
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string'))
      throw new CLIError(`${flag} must be a JSON array of strings, e.g. '["/bin/app","--flag"]'`);
    return parsed;
  }
  return v.split(',');
}

/**
 * Runs `fn` with a stream to `file` (written to a temp file beside it and renamed when `fn` succeeds, removed when
 * it fails: never a partial file) or to stdout when `file` is undefined or `-`.
 */
export async function toOutput<T>(file: string | undefined, fn: (out: Writable) => Promise<T>): Promise<T> {
  if (!file || file === '-') {
    const out = new Writable({
      write(chunk, _enc, cb) {
        if (process.stdout.write(chunk)) cb();
        else process.stdout.once('drain', () => cb());
      },
    });
    return fn(out);
  }
  const tmp = join(dirname(file), `.${basename(file)}.berth-${process.pid}.tmp`);
  const out = createWriteStream(tmp, { flags: 'wx' });
  const opened = new Promise<void>((res, rej) => out.once('open', () => res()).once('error', rej));
  try {
    await opened;
  } catch (e) {
    throw new CLIError(`cannot write ${file}: ${(e as Error).message}`);
  }
  try {
    const r = await fn(out);
    if (!out.writableFinished) await new Promise<void>((res, rej) => out.end(() => res()).once('error', rej));
    await rename(tmp, file);
    return r;
  } catch (e) {
    out.destroy();
    await rm(tmp, { force: true });
    throw e;
  }
}

/** MutateError and friends are user errors: shown as one line, exit 1. */
export function userError(e: unknown): never {
  if (e instanceof MutateError || e instanceof TransportError || e instanceof LayoutError)
    throw new CLIError(e.message);
  throw e;
}
