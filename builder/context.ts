// Reading the build context with no way out of it.
//
// Rules (documented in the README's "berth build" section; the safety tests pin them):
// - `src` is relative to the context: absolute paths and `..` segments are refused before touching the disk.
// - The walk uses lstat and never descends through a symlink. A symlink whose target (resolved from the link's own
//   directory, or an absolute host path) stays inside the context is stored as a symlink, target verbatim. One that
//   leaves the context is an error, unless `followSymlinks` is set: then the file it points to is copied.
// - The directory a glob starts from must itself resolve (realpath) inside the context.
// - FIFOs, sockets and device files are refused: a layer holds only files, directories and symlinks.
// - Names must be valid UTF-8 (PAX stores UTF-8 paths; a byte-exact but undecodable name would not survive
//   `docker load`/containerd unpack the same way everywhere): a non-UTF-8 name is an error naming it with \xNN
//   escapes; exclude it (globs see U+FFFD in place of the bad bytes) or rename it. Long names (a 200-byte component,
//   paths beyond ustar's 100+155 bytes) are fine: they get a PAX header.
import { lstatSync, readdirSync } from 'node:fs';
import { lstat, readlink, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import picomatch from 'picomatch';
import { sortByUtf8 } from './byte-order.js';

export class ContextError extends Error {}

export interface ContextFile {
  /** Path relative to the glob base (or the file name for a single file), '/'-separated. */
  rel: string;
  /** Path relative to the context root, for messages. */
  ctxPath: string;
  abs: string;
  kind: 'file' | 'directory' | 'symlink';
  /** Symlink target, verbatim. */
  linkname?: string;
  size: number;
  /** Owner-executable bit of the source: the one mode bit we carry over (umask never clears it). */
  executable: boolean;
  stats: FileIdentity;
}

/** What the layer cache compares to know a file is unchanged since it was hashed (cache.ts). */
export interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** Only these fields are kept: a build holds tens of thousands of entries, and a Stats (with its Dates) is large. */
export function fileIdentity(st: Stats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

export interface SelectOptions {
  include?: string[];
  exclude?: string[];
  followSymlinks?: boolean;
}

const _utf8 = new TextDecoder('utf-8', { fatal: true });
const _lossy = new TextDecoder('utf-8');

/** Refuses absolute paths and `..` segments: the only ways a pattern could name something outside the context. */
export function checkPattern(pattern: string): void {
  if (isAbsolute(pattern) || pattern.startsWith('~')) {
    throw new ContextError(`'${pattern}' is absolute; paths are relative to the build context`);
  }
  if (pattern.includes('\\')) throw new ContextError(`'${pattern}' contains '\\'; use '/' as the separator`);
  if (pattern.split('/').some((s) => s === '..')) {
    throw new ContextError(`'${pattern}' contains '..'; files must come from inside the build context`);
  }
  if (pattern.includes('\0')) throw new ContextError('a path contains a NUL byte');
}

/**
 * A directory's entries in byte order of their names (independent of locale and of the order the filesystem gives).
 * `name` is undefined for a name that is not UTF-8; `shown` has U+FFFD for its bad bytes and `raw` is kept.
 */
function _names(dirAbs: string): { name?: string; shown: string; raw?: Buffer }[] {
  const names = readdirSync(dirAbs);
  // Node decodes names as UTF-8 and writes U+FFFD for bad bytes: only then are the raw bytes needed.
  if (!names.some((n) => n.includes('\uFFFD'))) return sortByUtf8(names, (n) => n).map((n) => ({ name: n, shown: n }));
  return readdirSync(dirAbs, { encoding: 'buffer' })
    .sort(Buffer.compare)
    .map((raw) => {
      let name: string | undefined;
      try {
        name = _utf8.decode(raw);
      } catch {
        // Not UTF-8: an error when reached, unless an exclude pattern (which sees U+FFFD) skips it.
      }
      return { name, shown: name ?? _lossy.decode(raw), raw };
    });
}

/** True when `p` is `root` or below it (both absolute, normalised). */
function _inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

function _escapeName(buf: Buffer): string {
  let out = '';
  for (const b of buf) out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return out;
}

function _special(st: Stats): string | undefined {
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return undefined;
}

type _WalkOptions = {
  followSymlinks?: boolean;
  match?: (s: string) => boolean;
  include?: (s: string) => boolean;
  exclude?: (s: string) => boolean;
};

export class Context {
  private constructor(
    readonly dir: string,
    /** realpath of dir: what "inside" is measured against. */
    readonly real: string,
  ) {}

  static async open(dir: string): Promise<Context> {
    const abs = resolve(dir);
    let real: string;
    try {
      real = await realpath(abs);
      if (!(await stat(real)).isDirectory()) throw new Error('not a directory');
    } catch {
      throw new ContextError(`build context ${abs} is not a readable directory`);
    }
    return new Context(abs, real);
  }

  /** Files for one `src` (a path or a glob) with include/exclude applied, sorted by rel. */
  async select(pattern: string, opts: SelectOptions = {}): Promise<ContextFile[]> {
    checkPattern(pattern);
    for (const g of [...(opts.include ?? []), ...(opts.exclude ?? [])]) checkPattern(g);
    const clean = pattern.replace(/^\.\/+/, '').replace(/\/+$/, '') || '.';
    const scan = picomatch.scan(clean);
    const base = scan.isGlob ? scan.base : clean;
    // A plain path's last component is judged by _entry (it may be a symlink to keep); its parents must not escape.
    const baseAbs =
      scan.isGlob || base === '.'
        ? await this._resolveInside(base)
        : join(
            await this._resolveInside(base.includes('/') ? base.slice(0, base.lastIndexOf('/')) : '.'),
            base.split('/').pop()!,
          );
    const include = opts.include?.length ? picomatch(opts.include, { dot: true }) : undefined;
    const exclude = opts.exclude?.length ? picomatch(opts.exclude, { dot: true }) : undefined;
    const out: ContextFile[] = [];

    if (!scan.isGlob) {
      let st: Stats;
      try {
        st = await lstat(baseAbs);
      } catch {
        return [];
      }
      if (st.isDirectory()) {
        await this._walk(baseAbs, '', base === '.' ? '' : base, out, {
          followSymlinks: opts.followSymlinks,
          include,
          exclude,
        });
        return out;
      }
      const name = clean.split('/').pop()!;
      out.push(await this._entry(baseAbs, name, clean, st, opts));
      return out;
    }
    let st: Stats | undefined;
    try {
      st = await lstat(baseAbs);
    } catch {
      return [];
    }
    if (!st.isDirectory()) return [];
    const match = picomatch(scan.glob, { dot: true });
    await this._walk(baseAbs, '', base, out, { followSymlinks: opts.followSymlinks, match, include, exclude });
    return out;
  }

  /** Joins a context-relative path and checks, via realpath of the deepest existing ancestor, it stays inside. */
  private async _resolveInside(rel: string): Promise<string> {
    const abs = resolve(this.real, rel);
    if (!_inside(this.real, abs)) throw new ContextError(`'${rel}' is outside the build context`);
    // The base directory of a glob must not be reached through a symlink that leaves the context.
    let probe = abs;
    for (;;) {
      try {
        const r = await realpath(probe);
        if (!_inside(this.real, r)) {
          throw new ContextError(
            `'${relative(this.real, probe)}' resolves to ${r}, outside the build context (a symlinked directory)`,
          );
        }
        break;
      } catch (e) {
        if (e instanceof ContextError) throw e;
        if (probe === this.real) break;
        probe = dirname(probe);
      }
    }
    return abs;
  }

  private async _walk(
    dirAbs: string,
    relDir: string,
    ctxBase: string,
    out: ContextFile[],
    opts: _WalkOptions,
  ): Promise<void> {
    // Synchronous on purpose: a build walks tens of thousands of entries and nothing else waits on this thread;
    // a sync lstat costs a few µs, an async one a thread-pool round trip (a warm rebuild is mostly this walk).
    for (const { name, shown: shownName, raw } of _names(dirAbs)) {
      const rel = relDir ? `${relDir}/${shownName}` : shownName;
      const ctxPath = ctxBase && ctxBase !== '.' ? `${ctxBase}/${rel}` : rel;
      if (opts.exclude?.(rel)) continue;
      if (name === undefined) {
        const shown =
          (ctxBase && ctxBase !== '.' ? `${ctxBase}/` : '') + (relDir ? `${relDir}/` : '') + _escapeName(raw!);
        throw new ContextError(
          `file name '${shown}' is not valid UTF-8; rename it or exclude it (globs see U+FFFD for the bad bytes)`,
        );
      }
      const abs = join(dirAbs, name);
      const st = lstatSync(abs);
      const matched = (!opts.match || opts.match(rel)) && (!opts.include || opts.include(rel) || st.isDirectory());
      if (st.isDirectory()) {
        if (matched && (!opts.include || opts.include(rel))) out.push(this._plainEntry(abs, rel, ctxPath, st)!);
        await this._walk(abs, rel, ctxBase, out, opts);
        continue;
      }
      if (!matched) continue;
      // Files and directories are judged right here; only a symlink needs more (async) checks.
      out.push(this._plainEntry(abs, rel, ctxPath, st) ?? (await this._entry(abs, rel, ctxPath, st, opts)));
    }
  }

  /** A file or directory entry (special files refused); undefined for a symlink. */
  private _plainEntry(abs: string, rel: string, ctxPath: string, st: Stats): ContextFile | undefined {
    const special = _special(st);
    if (special) {
      throw new ContextError(
        `'${ctxPath}' is ${special}; a layer can hold only files, directories and symlinks (exclude it)`,
      );
    }
    if (st.isDirectory())
      return { rel, ctxPath, abs, stats: fileIdentity(st), kind: 'directory', size: 0, executable: false };
    if (st.isFile())
      return {
        rel,
        ctxPath,
        abs,
        stats: fileIdentity(st),
        kind: 'file',
        size: st.size,
        executable: (st.mode & 0o100) !== 0,
      };
    return undefined;
  }

  private async _entry(
    abs: string,
    rel: string,
    ctxPath: string,
    st: Stats,
    opts: { followSymlinks?: boolean },
  ): Promise<ContextFile> {
    const plain = this._plainEntry(abs, rel, ctxPath, st);
    if (plain) return plain;
    const base = { rel, ctxPath, abs, stats: fileIdentity(st) };
    // A symlink: keep it if it stays inside, else follow (opt-in) or refuse.
    const linkname = await readlink(abs);
    const target = resolve(dirname(abs), linkname);
    let inside = _inside(this.real, target);
    let real: string | undefined;
    try {
      real = await realpath(abs);
      inside = inside && _inside(this.real, real);
    } catch {
      // Dangling: judged by where it points lexically.
    }
    if (inside) return { ...base, kind: 'symlink', linkname, size: 0, executable: false };
    if (!opts.followSymlinks) {
      throw new ContextError(
        `'${ctxPath}' is a symlink to ${linkname}, outside the build context; set followSymlinks: true on this entry to copy what it points to`,
      );
    }
    if (!real) throw new ContextError(`'${ctxPath}' is a symlink to ${linkname}, which does not exist`);
    const tst = await stat(real);
    const what = _special(tst);
    if (what || !tst.isFile()) {
      throw new ContextError(
        `'${ctxPath}' points to ${real}, which is ${what ?? 'a directory'}; followSymlinks copies regular files only`,
      );
    }
    return {
      ...base,
      abs: real,
      stats: fileIdentity(tst),
      kind: 'file',
      size: tst.size,
      executable: (tst.mode & 0o100) !== 0,
    };
  }
}
