// A Debian archive as the builder reads it, with apt's chain of trust and nothing less:
//   dists/<suite>/InRelease — OpenPGP-signed, checked by `gpgv` against the source's keyring (the system's
//   debian-archive-keyring by default); only the signed text is parsed (a cleartext signature can carry unsigned
//   lines around it) → the Packages index of each component, whose SHA256 and size must match the Release →
//   each .deb, whose SHA256 and size must match its index entry (or berth.lock).
// Downloads stream to a temp file while hashing and become visible in the cache (content-addressed by SHA-256,
// `<cache>/debian/sha256/…`) only once verified: a tampered or truncated file is never stored.
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve as resolvePath } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { DebianSource } from '../spec/build-spec.js';
import { Digester, type Digest } from '../spec/digest.js';
import type { BlobDir } from './blobs.js';
import { touch } from './cache.js';
import { field, parseStanzas } from './deb-control.js';
import type { DebCandidate } from './deb-resolve.js';

export const DEFAULT_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A problem with the archive's data (signature, checksum, format): never retried, always names what and where. */
export class DebRepoError extends Error {}

export interface Release {
  url: string;
  suite: string;
  /** `debian-12` from `Version: 12.8`, else the codename/suite (purl `distro` qualifier). */
  distro: string;
  /** path under dists/<suite>/ → expected SHA-256 and size. */
  files: Map<string, { sha256: string; size: number }>;
  architectures?: string[];
  /** Debian puts arch:all packages into each binary-<arch> index when this is "Packages". */
  allInArch: boolean;
  /** Indexes are also published under by-hash/SHA256/<hex>: fetched there, a mirror mid-update can't mix versions. */
  byHash: boolean;
}

/** Reads a source's Release files and indexes once per build (architectures share the Release). */
export class DebRepo {
  private releases = new Map<string, Promise<Release>>();

  constructor(
    private readonly cache: BlobDir,
    /** Where a relative keyring path is looked up (the build context). */
    private readonly contextDir: string,
  ) {}

  /** Every candidate of the source's suites and components for `arch` (and `all`). */
  async candidates(source: DebianSource, arch: string): Promise<DebCandidate[]> {
    const out: DebCandidate[] = [];
    for (const suite of source.suites) {
      const release = await this.release(source, suite);
      if (release.architectures && !release.architectures.includes(arch))
        throw new DebRepoError(
          `${release.url} ${suite} has no ${arch} packages (Architectures: ${release.architectures.join(' ')})`,
        );
      for (const comp of source.components ?? ['main']) {
        const archs = release.allInArch ? [arch] : [arch, 'all'];
        for (const a of archs) {
          const index = await this._index(release, `${comp}/binary-${a}/Packages`, a === 'all');
          if (index) out.push(...index);
        }
      }
    }
    return out;
  }

  release(source: DebianSource, suite: string): Promise<Release> {
    const key = `${source.url}\0${suite}\0${source.keyring ?? ''}`;
    let p = this.releases.get(key);
    if (!p) {
      p = this._release(source, suite);
      this.releases.set(key, p);
    }
    return p;
  }

  private async _release(source: DebianSource, suite: string): Promise<Release> {
    const base = source.url.replace(/\/+$/, '');
    const url = `${base}/dists/${suite}/InRelease`;
    const signed = await _get(url);
    const keyring = this._keyring(source.keyring);
    const text = await verifyInRelease(signed, keyring, url);
    const [stanza] = parseStanzas(text);
    if (!stanza) throw new DebRepoError(`${url}: the signed Release is empty`);
    const validUntil = field(stanza, 'Valid-Until');
    if (validUntil && Date.parse(validUntil) < Date.now())
      throw new DebRepoError(`${url} expired on ${validUntil} (Valid-Until); the mirror is stale or replayed`);
    const files = new Map<string, { sha256: string; size: number }>();
    for (const line of (field(stanza, 'SHA256') ?? '').split('\n')) {
      const m = /^\s*([0-9a-f]{64})\s+(\d+)\s+(\S+)\s*$/.exec(line);
      if (m) files.set(m[3], { sha256: m[1], size: Number(m[2]) });
    }
    if (!files.size) throw new DebRepoError(`${url} lists no SHA256 checksums; berth accepts only SHA-256`);
    const version = field(stanza, 'Version');
    const major = version && /^(\d+)/.exec(version)?.[1];
    return {
      url: base,
      suite,
      distro: major ? `debian-${major}` : (field(stanza, 'Codename') ?? suite),
      files,
      architectures: field(stanza, 'Architectures')?.split(/\s+/).filter(Boolean),
      allInArch: field(stanza, 'No-Support-for-Architecture-all') === 'Packages',
      byHash: field(stanza, 'Acquire-By-Hash')?.toLowerCase() === 'yes',
    };
  }

  private _keyring(path: string | undefined): string {
    if (!path) return DEFAULT_KEYRING;
    return isAbsolute(path) ? path : resolvePath(this.contextDir, path);
  }

  /** The index at `path` (without extension), from its .xz, .gz or plain form, whichever the Release lists. */
  private async _index(release: Release, path: string, optional: boolean): Promise<DebCandidate[] | undefined> {
    const forms: [string, 'xz' | 'gzip' | 'none'][] = [
      [`${path}.xz`, 'xz'],
      [`${path}.gz`, 'gzip'],
      [path, 'none'],
    ];
    const hit = forms.find(([p]) => release.files.has(p));
    if (!hit) {
      if (optional) return undefined;
      throw new DebRepoError(`${release.url} ${release.suite}: the Release lists no ${path}(.xz|.gz)`);
    }
    const [p, compression] = hit;
    const want = release.files.get(p)!;
    const dists = `${release.url}/dists/${release.suite}`;
    const byHash = `${dists}/${p.slice(0, p.lastIndexOf('/'))}/by-hash/SHA256/${want.sha256}`;
    // Like apt: by-hash first when the archive offers it, the plain name when a mirror lacks that copy.
    const file = release.byHash
      ? await this.download(byHash, want.sha256, want.size, 'index').catch((e) => {
          if (e instanceof HttpError && e.status === 404)
            return this.download(`${dists}/${p}`, want.sha256, want.size, 'index');
          throw e;
        })
      : await this.download(`${dists}/${p}`, want.sha256, want.size, 'index');
    return parsePackages(createReadStream(file), compression, release);
  }

  /** The verified file for `url` (from the cache when there): its path. */
  async download(url: string, sha256: string, size: number, what: 'index' | 'package'): Promise<string> {
    const digest = `sha256:${sha256}` as Digest;
    if (await this.cache.has(digest, size)) {
      await touch(this.cache.path(digest)); // recently used: the cache prunes least recently used first
      return this.cache.path(digest);
    }
    const tmp = await this.cache.staging();
    try {
      const tap = new _Tap();
      await pipeline(await _stream(url), tap, createWriteStream(tmp));
      const got = tap.d.digest();
      if (tap.bytes !== size || got !== digest) {
        throw new DebRepoError(
          `${url}: checksum mismatch (got ${got}, ${tap.bytes} bytes; the ${what === 'index' ? 'signed Release' : 'Packages index'} says sha256:${sha256}, ${size} bytes): the file was tampered with or the mirror is inconsistent; nothing was stored`,
        );
      }
      await rename(tmp, this.cache.path(digest));
    } finally {
      await rm(tmp, { force: true });
    }
    return this.cache.path(digest);
  }
}

/**
 * The signed text of an InRelease, if `gpgv` finds a good signature by a key in `keyring`; expired or revoked
 * keys and bad signatures are refused, as apt refuses them.
 */
export async function verifyInRelease(signed: Buffer, keyring: string, label: string): Promise<string> {
  let head: Buffer;
  try {
    head = (await readFile(keyring)).subarray(0, 64);
  } catch (e) {
    throw new DebRepoError(
      `keyring ${keyring}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (install debian-archive-keyring, or set packages.debian.sources[].keyring)`,
    );
  }
  if (head.toString('latin1').startsWith('-----BEGIN PGP'))
    throw new DebRepoError(
      `keyring ${keyring} is ASCII-armored; convert it with \`gpg --dearmor\` (gpgv reads binary keyrings)`,
    );
  const dir = await mkdtemp(join(tmpdir(), 'berth-gpgv-'));
  try {
    await writeFile(join(dir, 'InRelease'), signed);
    const r = await _run('gpgv', [
      '--homedir',
      dir,
      '--status-fd',
      '1',
      '--keyring',
      keyring,
      '--output',
      join(dir, 'Release'),
      join(dir, 'InRelease'),
    ]);
    const status = r.stdout;
    const bad = /^\[GNUPG:\] (BADSIG|EXPKEYSIG|REVKEYSIG|EXPSIG|ERRSIG|NO_PUBKEY)\b.*$/m.exec(status);
    if (r.code !== 0 || bad || !/^\[GNUPG:\] VALIDSIG /m.test(status) || !/^\[GNUPG:\] GOODSIG /m.test(status)) {
      const why = bad
        ? bad[1] === 'NO_PUBKEY' || bad[1] === 'ERRSIG'
          ? 'it is signed by a key that is not in the keyring'
          : `gpgv reports ${bad[1]}`
        : (r.stderr.trim().split('\n').pop() ?? 'no valid signature');
      throw new DebRepoError(`${label}: signature check failed against ${keyring}: ${why}`);
    }
    return await readFile(join(dir, 'Release'), 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Streams a Packages index into candidates, keeping only the fields resolution and download need. */
export async function parsePackages(
  input: Readable,
  compression: 'xz' | 'gzip' | 'none',
  release: Pick<Release, 'url' | 'distro'>,
): Promise<DebCandidate[]> {
  const text = decompressStream(input, compression);
  const out: DebCandidate[] = [];
  let cur: Record<string, string> = {};
  let last = '';
  const flush = () => {
    if (cur.package) {
      const { package: name, version, architecture, filename, size, sha256 } = cur;
      if (!version || !architecture || !filename || !size || !/^[0-9a-f]{64}$/.test(sha256 ?? ''))
        throw new DebRepoError(`${release.url}: index entry for ${name} lacks Version, Filename, Size or SHA256`);
      if (filename.split('/').includes('..') || filename.startsWith('/'))
        throw new DebRepoError(`${release.url}: index entry for ${name} has an unsafe Filename "${filename}"`);
      out.push({
        name,
        version,
        architecture,
        filename,
        size: Number(size),
        sha256,
        depends: cur.depends,
        preDepends: cur['pre-depends'],
        provides: cur.provides,
        source: { url: release.url, distro: release.distro },
      });
    }
    cur = {};
  };
  const keep = new Set([
    'package',
    'version',
    'architecture',
    'filename',
    'size',
    'sha256',
    'depends',
    'pre-depends',
    'provides',
  ]);
  for await (const line of createInterface({ input: text, crlfDelay: Infinity })) {
    if (line === '') {
      flush();
      continue;
    }
    if (line[0] === ' ' || line[0] === '\t') {
      if (keep.has(last)) cur[last] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    last = line.slice(0, colon).toLowerCase();
    if (keep.has(last)) cur[last] = line.slice(colon + 1).trim();
  }
  flush();
  return out;
}

/** gzip in-process; xz through Debian's `xz` (no xz decoder ships with Node). */
export function decompressStream(input: Readable, compression: 'xz' | 'gzip' | 'none'): Readable {
  if (compression === 'none') return input;
  if (compression === 'gzip') return input.pipe(createGunzip());
  const child = spawn('xz', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c) => {
    err += c;
  });
  const out = new Transform({
    transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback) {
      cb(null, chunk);
    },
  });
  child.on('error', (e) =>
    out.destroy(new DebRepoError(`cannot run xz (install xz-utils) to read an xz-compressed file: ${e.message}`)),
  );
  input.on('error', (e) => out.destroy(e));
  input.pipe(child.stdin);
  child.stdin.on('error', () => {}); // xz exiting early shows as its exit status below
  child.stdout.pipe(out, { end: false });
  let exited: number | null | undefined;
  let ended = false;
  const finish = () => {
    if (exited === undefined || !ended) return;
    if (exited === 0) out.end();
    else out.destroy(new DebRepoError(`xz: ${err.trim() || `exit ${exited}`}`));
  };
  child.stdout.on('end', () => {
    ended = true;
    finish();
  });
  child.on('close', (code) => {
    exited = code;
    finish();
  });
  return out;
}

async function _stream(url: string): Promise<Readable> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow' });
  } catch (e) {
    throw new Error(`GET ${url}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
  }
  if (!res.ok || !res.body) throw new HttpError(res.status, `GET ${url}: HTTP ${res.status}`);
  return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
}

async function _get(url: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of await _stream(url)) {
    n += (c as Buffer).length;
    // An InRelease is ~150 KB; anything far bigger is not one.
    if (n > 16 << 20) throw new DebRepoError(`${url} is larger than 16 MiB; not an InRelease file`);
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

function _run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    child.on('error', (e) =>
      fail(
        (e as NodeJS.ErrnoException).code === 'ENOENT'
          ? new DebRepoError(`${cmd} is not installed; it checks Debian's signatures (apt-get install gpgv)`)
          : e,
      ),
    );
    child.on('close', (code) => done({ code: code ?? 1, stdout, stderr }));
  });
}

class _Tap extends Transform {
  readonly d = new Digester();
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.d.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}
