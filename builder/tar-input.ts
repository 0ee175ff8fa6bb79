// `tar:` entries: an existing archive from the build context, read as a stream and re-emitted as plan members.
//
// Rules (documented in the README's "berth build" section; builder/tar-input.test.ts pins them):
// - Plain, gzip and zstd archives, told apart by their magic bytes (RFC 1952 §2.3.1; RFC 8878 §3.1.1), never by
//   the file name. Any of the three gives the same members, so the same layer digest.
// - Member names are cleaned (leading `/` and `./`, empty and `.` segments dropped) and placed under `dest`. A name
//   with a `..` segment is refused, as is a member that would be written through a symlink of the same archive
//   (`evil -> /etc`, then `evil/passwd`: the classic tar escape). Symlink targets are kept verbatim: in an image
//   they resolve against the container's root, like a `symlink:` entry.
// - Hard links become regular files with the content (and mode) of the earlier member they name: layer members
//   stand alone, and a copy is what every unpacker can reproduce. Devices, FIFOs and other types are refused.
// - Metadata: permission bits (& 0o7777) come from the archive unless the properties set `mode` (files) or
//   `dirMode` (directories); owners come only from the properties (default 0:0, no names); times are the epoch,
//   like every member (tar.ts). Nothing the archive's creator machine left in it reaches the layer.
// - A name repeated in the archive: the later member wins, as when the archive is extracted.
// - Memory: each file's bytes stream into a content-addressed store under the build cache (`tar-inputs/sha256/…`),
//   and the member points there, so tar.ts and the layer cache treat it like any file in the context.
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar, { type Header } from 'tar-stream';
import { Digester, digestOf, type Digest } from '../spec/digest.js';
import type { BlobDir } from './blobs.js';
import { ContextError, fileIdentity } from './context.js';
import type { Member } from './plan.js';
import { loadZstd } from './zstd.js';

/** One member as tar-stream's extractor yields it: its header and its bytes. */
type Entry = AsyncIterable<unknown> & { header: Header };

export type ArchiveFormat = 'tar' | 'gzip' | 'zstd';

export interface TarInputOptions {
  /** The archive's path in the build context, for messages. */
  label: string;
  /** Image path the archive's root maps to ('' = '/'), already cleaned by imagePath(). */
  dest: string;
  owner: { uid: number; gid: number; uname?: string; gname?: string };
  /** Overrides the archive's permission bits for files / directories (from the cascaded properties). */
  mode?: number;
  dirMode?: number;
  /** Content-addressed store the file members' bytes are staged in. */
  staging: BlobDir;
  /** Keep the archive's numeric uid/gid (a Debian package's data.tar) instead of `owner`'s; names are never kept. */
  keepOwners?: boolean;
}

/** Files up to this size are hashed in memory before touching the disk; larger ones stream through a temp file. */
const SMALL_FILE = 1 << 20;

/** The archive's compression, from its first bytes. Refuses the formats people commonly expect to work. */
export function detectFormat(head: Buffer, label: string): ArchiveFormat {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  const other =
    head.subarray(0, 3).toString('latin1') === 'BZh'
      ? 'bzip2'
      : head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))
        ? 'xz'
        : undefined;
  if (other) throw new ContextError(`'${label}' is ${other}-compressed; tar entries read plain, gzip or zstd archives`);
  return 'tar';
}

/** The archive's members as plan members under `dest`, in archive order (later duplicates replace earlier ones). */
export async function readTarMembers(abs: string, opts: TarInputOptions): Promise<Member[]> {
  const format = detectFormat(await _head(abs), opts.label);
  const decoders: Transform[] =
    format === 'gzip'
      ? [createGunzip()]
      : format === 'zstd'
        ? [new (await _zstd(opts.label)).DecompressStream() as unknown as Transform]
        : [];
  return readTarStream(
    [createReadStream(abs), ...decoders],
    format === 'tar' ? 'tar' : `${format}-compressed tar`,
    opts,
  );
}

/**
 * The members of the tar that `streams` (a source and its decoders) yield, by the rules above. `what` names the
 * archive's format in messages.
 */
export async function readTarStream(
  streams: NodeJS.ReadableStream[],
  what: string,
  opts: TarInputOptions,
): Promise<Member[]> {
  const ex = tar.extract();
  const feed = pipeline([...streams, ex as unknown as NodeJS.WritableStream] as [
    NodeJS.ReadableStream,
    NodeJS.WritableStream,
  ]);
  feed.catch(() => {}); // awaited below; this only keeps an early failure from being "unhandled" meanwhile
  const byName = new Map<string, Member>();
  try {
    for await (const entry of ex) {
      const m = await _member(entry, byName, opts);
      if (m) byName.set(m.name, m.member);
    }
    await feed;
  } catch (e) {
    ex.destroy();
    if (e instanceof ContextError) throw e;
    throw new ContextError(`cannot read '${opts.label}' as a ${what} archive: ${(e as Error).message}`);
  }
  _refuseWritesThroughSymlinks(byName, opts.label);
  return [...byName.entries()].filter(([name]) => name !== '' || opts.dest !== '').map(([, m]) => m);
}

/** `./a//b/` → `a/b`; undefined for a `..` segment. '' is the archive's root directory. */
export function cleanMemberName(name: string): string | undefined {
  const parts = name.split('/').filter((s) => s !== '' && s !== '.');
  return parts.includes('..') ? undefined : parts.join('/');
}

async function _member(
  entry: Entry,
  byName: Map<string, Member>,
  opts: TarInputOptions,
): Promise<{ name: string; member: Member } | undefined> {
  const h = entry.header;
  const what = `'${opts.label}' member '${h.name}'`;
  const name = cleanMemberName(h.name);
  if (name === undefined)
    throw new ContextError(`${what} contains '..'; an archive's members must stay below its root`);
  // tar-stream decodes names as UTF-8 with replacement; the context refuses undecodable names, so must we.
  if (name.includes('\uFFFD'))
    throw new ContextError(`${what} is not valid UTF-8; repack the archive with UTF-8 names`);
  if (name === '' && h.type !== 'directory') throw new ContextError(`${what} has an empty name`);
  const path = opts.dest && name ? `${opts.dest}/${name}` : opts.dest || name;
  const owner = opts.keepOwners ? { uid: h.uid ?? 0, gid: h.gid ?? 0 } : opts.owner;
  const base = { path, ...owner, size: 0 };
  const bits = h.mode === undefined ? undefined : h.mode & 0o7777;
  switch (h.type) {
    case 'file':
    case 'contiguous-file': {
      const staged = await _stage(entry, h, opts.staging, what);
      return {
        name,
        member: { ...base, type: 'file', mode: opts.mode ?? bits ?? 0o644, size: staged.size, source: staged.source },
      };
    }
    case 'directory':
      await _drain(entry);
      return { name, member: { ...base, type: 'directory', mode: opts.dirMode ?? bits ?? 0o755 } };
    case 'symlink':
      await _drain(entry);
      if (!h.linkname) throw new ContextError(`${what} is a symlink with an empty target`);
      return { name, member: { ...base, type: 'symlink', mode: 0o777, linkname: h.linkname } };
    case 'link': {
      await _drain(entry);
      const target = cleanMemberName(h.linkname ?? '');
      const same = target === undefined ? undefined : byName.get(target);
      if (same?.type !== 'file') {
        throw new ContextError(
          `${what} is a hard link to '${h.linkname}', which is not a regular file earlier in the archive`,
        );
      }
      // A hard link shares its target's inode: same content and mode. It becomes an independent copy.
      return { name, member: { ...base, type: 'file', mode: same.mode, size: same.size, source: same.source } };
    }
    case 'character-device':
    case 'block-device':
    case 'fifo':
      throw new ContextError(
        `${what} is a ${h.type.replace('-', ' ')}; a layer can hold only files, directories and symlinks (drop it from the archive)`,
      );
    default:
      throw new ContextError(
        `${what} has an unsupported entry type${h.type ? ` (${h.type})` : ''}; a layer can hold only files, directories and symlinks`,
      );
  }
}

/** `evil -> /etc` then `evil/passwd`: extraction would write outside the tree, so the archive is refused. */
function _refuseWritesThroughSymlinks(byName: Map<string, Member>, label: string): void {
  for (const name of byName.keys()) {
    for (let p = posix.dirname(name); p !== '.'; p = posix.dirname(p)) {
      const parent = byName.get(p);
      if (parent?.type === 'symlink') {
        throw new ContextError(
          `'${label}' member '${name}' would be written through the symlink '${p}' (-> ${parent.linkname}); an archive must not place members under its own symlinks`,
        );
      }
    }
  }
}

/** Writes one file member's bytes into the content-addressed store (once per content) and returns where. */
async function _stage(
  entry: Entry,
  h: Header,
  staging: BlobDir,
  what: string,
): Promise<{ size: number; source: Member['source'] }> {
  const size = h.size ?? 0;
  let digest: Digest;
  let tmp: string | undefined;
  if (size <= SMALL_FILE) {
    const parts: Buffer[] = [];
    for await (const c of entry) parts.push(c as Buffer);
    const data = Buffer.concat(parts);
    digest = digestOf(data);
    if (!(await staging.has(digest, data.length))) {
      tmp = await staging.staging();
      await writeFile(tmp, data);
    }
  } else {
    tmp = await staging.staging();
    const tap = new _Tap();
    try {
      await pipeline(entry as unknown as Readable, tap, createWriteStream(tmp));
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    digest = tap.d.digest();
  }
  const path = staging.path(digest);
  if (tmp) {
    // Keep an existing copy: its unchanged stat identity is what lets the layer cache skip re-hashing it.
    if (await staging.has(digest, size)) await rm(tmp, { force: true });
    else await rename(tmp, path);
  }
  const s = await stat(path);
  if (s.size !== size) throw new ContextError(`${what} is truncated (${s.size} of ${size} bytes)`);
  return { size, source: { abs: path, stats: fileIdentity(s) } };
}

class _Tap extends Transform {
  readonly d = new Digester();
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.d.update(chunk);
    cb(null, chunk);
  }
}

async function _drain(entry: Entry): Promise<void> {
  for await (const _ of entry) {
    // Directory, link and device members carry no data, but the extractor waits until each entry is consumed.
  }
}

async function _head(abs: string): Promise<Buffer> {
  const fh = await open(abs, 'r');
  try {
    const buf = Buffer.alloc(6); // a shorter file leaves zeros: not a magic number, so "plain tar"
    await fh.read(buf, 0, 6, 0);
    return buf;
  } finally {
    await fh.close();
  }
}

/** zstd, loaded on first use; its absence is reported as a problem with the entry that needs it. */
async function _zstd(label: string) {
  try {
    return await loadZstd();
  } catch (e) {
    throw new ContextError(`'${label}' is zstd-compressed: ${(e as Error).message}`);
  }
}
