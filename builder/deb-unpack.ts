// A .deb as layer members, without dpkg and without running anything from it (deb(5)): an `ar` archive holding
// `debian-binary` ("2.0"), `control.tar[.gz|.xz|.zst]` (control, md5sums, maintainer scripts — only control and
// md5sums are read) and `data.tar[.gz|.xz|.zst]` (the files). data.tar goes through tar-input.ts, so the usual
// rules hold (no `..`, nothing through an own symlink, hard links become copies), keeping the archive's numeric
// owners. Members stream from the cached .deb: a file's bytes are never all in memory unless it is small.
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { BlobDir } from './blobs.js';
import { touch } from './cache.js';
import { fileIdentity } from './context.js';
import { decompressStream, DebRepoError } from './deb-repo.js';
import type { Member } from './plan.js';
import { readTarStream } from './tar-input.js';
import { loadZstd } from './zstd.js';

export interface DebContents {
  /** The control file (deb822 text). */
  control: string;
  /** `md5sum  path` lines, when the package has them. */
  md5sums?: string;
  members: Member[];
}

interface _ArMember {
  name: string;
  offset: number;
  size: number;
}

/** The members of an ar archive (common format, as dpkg-deb writes it). */
export async function arMembers(path: string, label: string): Promise<_ArMember[]> {
  const fh = await open(path, 'r');
  try {
    const { size: total } = await fh.stat();
    const magic = Buffer.alloc(8);
    await fh.read(magic, 0, 8, 0);
    if (magic.toString('latin1') !== '!<arch>\n') throw new DebRepoError(`${label} is not a .deb (no ar header)`);
    const out: _ArMember[] = [];
    let pos = 8;
    const header = Buffer.alloc(60);
    while (pos + 60 <= total) {
      await fh.read(header, 0, 60, pos);
      if (header.toString('latin1', 58, 60) !== '`\n') throw new DebRepoError(`${label}: corrupt ar member header`);
      const name = header.toString('latin1', 0, 16).trim().replace(/\/$/, '');
      const size = Number(header.toString('latin1', 48, 58).trim());
      if (!Number.isSafeInteger(size) || pos + 60 + size > total)
        throw new DebRepoError(`${label}: ar member ${name} runs past the end of the file`);
      out.push({ name, offset: pos + 60, size });
      pos += 60 + size + (size % 2);
    }
    return out;
  } finally {
    await fh.close();
  }
}

type _Compression = 'xz' | 'gzip' | 'zstd' | 'none';

function _compression(name: string, label: string): _Compression {
  const ext = name.replace(/^(control|data)\.tar/, '');
  switch (ext) {
    case '':
      return 'none';
    case '.gz':
      return 'gzip';
    case '.xz':
      return 'xz';
    case '.zst':
      return 'zstd';
    default:
      throw new DebRepoError(`${label}: ${name} uses a compression berth does not read (gz, xz, zst)`);
  }
}

async function _decoded(path: string, m: _ArMember, c: _Compression): Promise<Readable> {
  const raw = createReadStream(path, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 20 });
  if (c !== 'zstd') return decompressStream(raw, c);
  const zstd = await loadZstd();
  return raw.pipe(new zstd.DecompressStream() as unknown as NodeJS.WritableStream) as unknown as Readable;
}

/** Reads control, md5sums and the data members of the .deb at `path` (already verified against its checksum). */
export async function readDeb(path: string, label: string, staging: BlobDir): Promise<DebContents> {
  const members = await arMembers(path, label);
  const version = members[0];
  if (version?.name !== 'debian-binary') throw new DebRepoError(`${label}: the first ar member is not debian-binary`);
  const control = members.find((m) => m.name.startsWith('control.tar'));
  const data = members.find((m) => m.name.startsWith('data.tar'));
  if (!control || !data) throw new DebRepoError(`${label} has no ${control ? 'data' : 'control'}.tar member`);
  const meta = await _controlFiles(await _decoded(path, control, _compression(control.name, label)), label);
  if (!meta.control) throw new DebRepoError(`${label}: control.tar has no control file`);
  const dataMembers = await readTarStream(
    [await _decoded(path, data, _compression(data.name, label))],
    `${data.name} in ${label}`,
    { label: `${label}!${data.name}`, dest: '', owner: { uid: 0, gid: 0 }, staging, keepOwners: true },
  );
  return { control: meta.control, md5sums: meta.md5sums, members: dataMembers };
}

async function _controlFiles(stream: Readable, label: string): Promise<{ control?: string; md5sums?: string }> {
  const ex = tar.extract();
  stream.on('error', (e) => ex.destroy(e));
  stream.pipe(ex);
  const out: { control?: string; md5sums?: string } = {};
  try {
    for await (const entry of ex) {
      const name = entry.header.name.replace(/^\.\//, '');
      const parts: Buffer[] = [];
      for await (const c of entry) parts.push(c as Buffer);
      // Both are small text files (md5sums of a big package is a few hundred KB at most).
      if (name === 'control') out.control = Buffer.concat(parts).toString('utf8');
      else if (name === 'md5sums') out.md5sums = Buffer.concat(parts).toString('utf8');
    }
  } catch (e) {
    throw new DebRepoError(`${label}: cannot read control.tar: ${(e as Error).message}`);
  }
  return out;
}

/** A member as the unpack cache stores it: a file's bytes are named by their digest in the staging store. */
interface _CachedMember extends Omit<Member, 'source'> {
  sha256?: string;
}

/**
 * readDeb, remembered per .deb SHA-256 in `dir` (as apko caches its expanded APKs): the member list and control
 * files as JSON, the file bytes already in the staging store. A missing staged file means "unpack again".
 */
export async function readDebCached(
  path: string,
  sha256: string,
  label: string,
  staging: BlobDir,
  dir: string | undefined,
): Promise<DebContents> {
  const file = dir && join(dir, `${sha256}.json`);
  if (file) {
    const hit = await _cached(file, staging).catch(() => undefined);
    if (hit) return hit;
  }
  const contents = await readDeb(path, label, staging);
  if (file && dir) {
    const members: _CachedMember[] = contents.members.map(({ source, ...m }) => ({
      ...m,
      ...(source && 'abs' in source ? { sha256: basename(source.abs) } : {}),
    }));
    if (members.every((m) => m.type !== 'file' || m.sha256)) {
      await mkdir(dir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify({ v: 1, control: contents.control, md5sums: contents.md5sums, members }));
      await rename(tmp, file);
    }
  }
  return contents;
}

async function _cached(file: string, staging: BlobDir): Promise<DebContents | undefined> {
  const doc = JSON.parse(await readFile(file, 'utf8'));
  if (doc?.v !== 1 || typeof doc.control !== 'string' || !Array.isArray(doc.members)) return undefined;
  const members: Member[] = [];
  for (const m of doc.members as _CachedMember[]) {
    const { sha256, ...rest } = m;
    if (m.type !== 'file') {
      members.push(rest);
      continue;
    }
    if (!sha256 || !/^[0-9a-f]{64}$/.test(sha256)) return undefined;
    const abs = staging.path(`sha256:${sha256}`);
    const st = await stat(abs).catch(() => undefined);
    if (!st || st.size !== m.size) return undefined;
    members.push({ ...rest, source: { abs, stats: fileIdentity(st) } });
  }
  await touch(file);
  return { control: doc.control, md5sums: doc.md5sums, members };
}
