// A layer plan: the exact, sorted list of tar members a layer will hold, before any byte is written.
// Properties cascade spec → layer → entry (nearest wins). Parent directories that no entry names are added with
// fixed metadata (0755, 0:0, no names) so an image never depends on the build machine's directories — and so an
// appended layer never changes the owner of a base image's /usr.
import { stat } from 'node:fs/promises';
import { posix } from 'node:path';
import type { Platform } from '../spec/manifest.js';
import {
  entryKind,
  parseMode,
  type FileProperties,
  type FilesEntry,
  type LayerSpec,
  type TarEntry,
} from '../spec/build-spec.js';
import type { GzipTuning } from './compress.js';
import type { BlobDir } from './blobs.js';
import { sortByUtf8 } from './byte-order.js';
import { type Context, ContextError, type ContextFile, type FileIdentity } from './context.js';
import { readTarMembers } from './tar-input.js';
import type { FieldPath, LoadedSpec } from './spec.js';

export interface Member {
  /** Path inside the image, no leading '/', no trailing '/'. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  linkname?: string;
  size: number;
  /** Where a file's bytes come from. */
  source?: { abs: string; stats?: FileIdentity } | { data: Buffer };
}

export interface PlanOptions {
  /** Where `tar:` entries stage their files' bytes (build.ts: `<cache>/tar-inputs`); needed only by tar entries. */
  tarInputs?: BlobDir;
}

export interface LayerPlan {
  name: string;
  members: Member[];
  /** Human-readable provenance of each file (ctx path), for the SBOM. */
  origins: Map<string, string>;
  /** This layer's own gzip settings (compress.ts GzipTuning), when not the builder's defaults: preset go's binary. */
  gzip?: GzipTuning;
}

const IMPLIED_DIR = { type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0 } as const;

function _props(...layers: (FileProperties | undefined)[]): FileProperties {
  const out: FileProperties = {};
  for (const l of layers) for (const [k, v] of Object.entries(l ?? {})) if (v !== undefined) (out as any)[k] = v;
  return out;
}

function _owner(p: FileProperties) {
  return { uid: p.uid ?? 0, gid: p.gid ?? 0, uname: p.user, gname: p.group };
}

/** A ContextError about one field of the entry (`dest`, `directory`) rather than its source. */
export class FieldError extends ContextError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** `/a/b/` → `a/b`; refuses `..` so nothing lands outside the image root. Errors name `field` (dest or directory). */
export function imagePath(dest: string, field = 'dest'): string {
  const norm = posix.normalize(dest);
  if (!norm.startsWith('/'))
    throw new FieldError(
      field,
      `'${dest}' must be an absolute path in the image, e.g. '/${dest.replace(/^\.?\/*/, '')}'`,
    );
  if (dest.split('/').includes('..')) {
    throw new FieldError(
      field,
      `'${dest}' contains '..'; write the path inside the image without it${norm.startsWith('/..') ? '' : `, e.g. '${norm}'`}`,
    );
  }
  return norm.replace(/^\/+/, '').replace(/\/+$/, '');
}

/** The field of an entry that names where it lands in the image. */
function _destField(entry: object): string {
  return 'directory' in entry ? 'directory' : 'dest' in entry ? 'dest' : 'tar';
}

/** Replaces `{os}`, `{arch}`, `{variant}` in a src for one platform. */
export function expandPlatform(src: string, platform: Platform): string {
  return src.replace(/\{(os|arch|variant)\}/g, (_, k: string) =>
    k === 'os' ? platform.os : k === 'arch' ? platform.architecture : (platform.variant ?? ''),
  );
}

export async function planLayer(
  loaded: LoadedSpec,
  index: number,
  platform: Platform,
  ctx: Context,
  opts: PlanOptions = {},
): Promise<LayerPlan> {
  const layer = loaded.spec.layers![index] as LayerSpec;
  // Which entry put each path in the layer, so a conflict is blamed on the entries involved.
  const madeBy = new Map<string, number>();
  let current = 0;
  const byPath = new (class extends Map<string, Member> {
    override set(path: string, m: Member): this {
      madeBy.set(path, current);
      return super.set(path, m);
    }
  })();
  const origins = new Map<string, string>();
  for (const [j, entry] of layer.files.entries()) {
    const at: FieldPath = ['layers', index, 'files', j];
    current = j;
    const props = _props(loaded.spec.properties, layer.properties, entry);
    try {
      const kind = entryKind(entry);
      if (kind === 'src') {
        await _addFiles(entry as FilesEntry, props, platform, ctx, byPath, origins, loaded, [...at, 'src']);
      } else if (kind === 'inline') {
        const e = entry as { inline: string; dest: string };
        const data = Buffer.from(e.inline, 'utf8');
        const path = imagePath(e.dest);
        byPath.set(path, {
          path,
          type: 'file',
          mode: parseMode(props.mode ?? '0644'),
          ..._owner(props),
          size: data.length,
          source: { data },
        });
      } else if (kind === 'symlink') {
        const e = entry as { symlink: string; dest: string };
        const path = imagePath(e.dest);
        byPath.set(path, { path, type: 'symlink', mode: 0o777, ..._owner(props), size: 0, linkname: e.symlink });
      } else if (kind === 'directory') {
        const path = imagePath((entry as { directory: string }).directory, 'directory');
        byPath.set(path, {
          path,
          type: 'directory',
          mode: parseMode(props.dirMode ?? props.mode ?? '0755'),
          ..._owner(props),
          size: 0,
        });
      } else {
        await _addTar(entry as TarEntry, props, platform, ctx, byPath, origins, opts);
      }
    } catch (e) {
      if (e instanceof ContextError)
        throw loaded.error([...at, e instanceof FieldError ? e.field : entryKind(entry)], e.message);
      throw e;
    }
  }
  // Implied parents are added by finishMembers (after the entries), so they have no entry of their own.
  current = -1;
  const fieldOf = (k: number): FieldPath => ['layers', index, 'files', k, _destField(layer.files[k])];
  const conflict = (message: string, path: string, parent: string) => {
    const [child, owner] = [madeBy.get(path) ?? -1, madeBy.get(parent) ?? -1];
    const where = owner >= 0 ? ` (from layers[${index}].files[${owner}])` : '';
    const fix = `a path can't be both a directory and a ${byPath.get(parent)?.type}: change one of the two dests`;
    return loaded.error(child >= 0 ? fieldOf(child) : ['layers', index, 'name'], `${message}${where}; ${fix}`);
  };
  return { name: layer.name, members: finishMembers(byPath, conflict), origins };
}

async function _addFiles(
  entry: FilesEntry,
  props: FileProperties,
  platform: Platform,
  ctx: Context,
  byPath: Map<string, Member>,
  origins: Map<string, string>,
  loaded: LoadedSpec,
  at: FieldPath,
): Promise<void> {
  const src = expandPlatform(entry.src, platform);
  const files = await ctx.select(src, entry);
  if (files.length === 0) {
    if (entry.optional) return;
    throw loaded.error(
      at,
      `no file matches '${src}'${src !== entry.src ? ` (for ${platform.os}/${platform.architecture})` : ''}`,
    );
  }
  const dest = imagePath(entry.dest);
  // One plain file whose dest does not end in '/' is renamed to dest; everything else goes *into* dest.
  const single =
    files.length === 1 && files[0].kind !== 'directory' && !entry.dest.endsWith('/') && !/[*?[{]/.test(src);
  for (const f of files) {
    const path = single ? dest : posix.join(dest, f.rel);
    byPath.set(path, _member(path, f, props));
    origins.set(path, f.ctxPath);
  }
}

/** Members of an archive in the context (tar-input.ts has the rules). `{arch}` etc. expand as in `src`. */
async function _addTar(
  entry: TarEntry,
  props: FileProperties,
  platform: Platform,
  ctx: Context,
  byPath: Map<string, Member>,
  origins: Map<string, string>,
  opts: PlanOptions,
): Promise<void> {
  if (!opts.tarInputs) throw new Error('planLayer: a tar entry needs options.tarInputs');
  const archive = await _archive(ctx, expandPlatform(entry.tar, platform));
  const dest = imagePath(entry.dest ?? '/');
  const members = await readTarMembers(archive.abs, {
    label: archive.ctxPath,
    dest,
    owner: _owner(props),
    mode: props.mode ? parseMode(props.mode) : undefined,
    dirMode: props.dirMode ? parseMode(props.dirMode) : undefined,
    staging: opts.tarInputs,
  });
  for (const m of members) {
    byPath.set(m.path, m);
    if (m.type === 'file') origins.set(m.path, `${archive.ctxPath}!/${dest ? m.path.slice(dest.length + 1) : m.path}`);
  }
}

/** The one regular file a `tar:` path names, by the same rules as `src` (inside the context, no escaping symlink). */
async function _archive(ctx: Context, path: string): Promise<ContextFile> {
  if (/[*?[{]/.test(path)) throw new ContextError(`'${path}' is a glob; a tar entry names one archive`);
  const files = await ctx.select(path);
  const clean = path.replace(/^\.\/+/, '');
  const f = files[0];
  if (!f) throw new ContextError(`no archive '${path}' in the build context`);
  // A directory comes back as its contents; a symlink (kept only when it stays inside) must lead to a file.
  if (
    files.length !== 1 ||
    f.ctxPath !== clean ||
    (f.kind === 'symlink' && !(await stat(f.abs).catch(() => undefined))?.isFile())
  ) {
    throw new ContextError(`'${path}' is not a regular file; a tar entry names one archive`);
  }
  return f;
}

function _member(path: string, f: ContextFile, props: FileProperties): Member {
  const owner = _owner(props);
  if (f.kind === 'directory')
    return { path, type: 'directory', mode: parseMode(props.dirMode ?? '0755'), ...owner, size: 0 };
  if (f.kind === 'symlink') return { path, type: 'symlink', mode: 0o777, ...owner, size: 0, linkname: f.linkname };
  const mode = props.mode ? parseMode(props.mode) : f.executable ? 0o755 : 0o644;
  return {
    path,
    type: 'file',
    mode,
    ...owner,
    size: f.size,
    source: { abs: f.abs, stats: f.stats },
  };
}

/** Adds implied parents, checks nothing sits under a non-directory, and sorts by path bytes. */
export function finishMembers(
  byPath: Map<string, Member>,
  conflict: (msg: string, path: string, parent: string) => Error,
): Member[] {
  for (const path of [...byPath.keys()]) {
    for (let p = posix.dirname(path); p !== '.' && p !== '/' && p !== ''; p = posix.dirname(p)) {
      const parent = byPath.get(p);
      if (!parent) byPath.set(p, { path: p, ...IMPLIED_DIR });
      else if (parent.type !== 'directory')
        throw conflict(`'/${path}' would sit under '/${p}', which this layer makes a ${parent.type}`, path, p);
      // A directory already there has its own parents checked (in this loop, or when it was implied).
      else break;
    }
  }
  byPath.delete('');
  // Byte order of the UTF-8 path: the same everywhere, independent of locale.
  return sortByUtf8([...byPath.values()], (m) => m.path);
}
