// `preset: node`: a Node service image from package.json + the npm lockfile, with no `layers:` to write.
//
// In: the loaded spec and the build context (package.json at its root). Out: two layer plans and config defaults;
// build.ts puts the layers after the base's and before the spec's own, and applies the spec's `config:` over the
// defaults. Everything is read through Context, so the usual no-escape rules hold.
//
// - `dependencies` → /app/node_modules/…: exactly the lockfile's production packages, as installed in the
//   context's node_modules (by `npm ci --omit=dev` or `npm ci`). It changes only when the lockfile does, so its
//   cached blob is reused by most builds. A package is production unless npm would drop it under --omit=dev:
//   `dev: true` is dropped (also with `optional`: an optional dep of a dev dep); `optional` and `devOptional`
//   (optional for production, needed by dev) are kept when installed and skipped when not (npm skips optional
//   packages whose os/cpu do not match); `peer` is an ordinary dependency (npm ≥ 7 installs peers). Nested
//   `node_modules/a/node_modules/b` entries are packages of their own, so each package is copied without its own
//   node_modules and the lockfile decides about every nested one. A `link: true` entry (a `file:` dependency or a
//   workspace) is stored as the symlink npm made, its target directory copied too; dev-ness comes from the target
//   entry, which is where npm records it. node_modules/.bin and npm's hidden lockfile are not copied.
// - `app` → /app/: package.json, the lockfile and the app's files: package.json `files` (plus `main`, as npm
//   does) when present, else the whole context — minus DEFAULT_EXCLUDES, the patterns in `.berthignore`, the
//   spec file and cache dir when they sit in the context, and every directory the lockfile names as a package.
// - config defaults: WorkingDir /app, Env NODE_ENV=production, Entrypoint ["node", "/app/<entry>"] where entry is
//   X when `scripts.start` is exactly `node X`, else `main`, else index.js. User stays the base's.
import { readdir, readFile } from 'node:fs/promises';
import { posix, relative, resolve, isAbsolute } from 'node:path';
import picomatch from 'picomatch';
import type { FileProperties, ImageConfigSpec } from '../spec/build-spec.js';
import { type Context, ContextError, type ContextFile } from './context.js';
import { finishMembers, type LayerPlan, type Member } from './plan.js';
import { contextMember } from './preset.js';
import type { LoadedSpec } from './spec.js';

export const APP_DIR = 'app';
export const LAYER_NAMES = ['dependencies', 'app'] as const;

/**
 * Never in the app layer (gitignore-like: a name without '/' matches at any depth, a leading '/' anchors it to the
 * context root). node_modules: the dependencies layer holds the production part of it. .npmrc: may hold registry
 * tokens. berth's own files describe the image, they are not part of it.
 */
export const DEFAULT_EXCLUDES = [
  'node_modules',
  '.git',
  '.hg',
  '.svn',
  '.npmrc',
  '/berth.yaml',
  '/berth.lock',
  '/.berthignore',
];

export interface NodePreset {
  /** `dependencies` then `app`. */
  layers: LayerPlan[];
  /** Applied before the spec's `config:`, which overrides it. */
  config: ImageConfigSpec;
}

export interface NodePresetOptions {
  /** Absolute paths kept out of the app layer when they are inside the context (the spec file, the cache dir). */
  exclude?: string[];
}

/** What the lockfile says about one package (package-lock.json v2/v3 `packages` values). */
export interface LockPackage {
  name?: string;
  version?: string;
  resolved?: string;
  link?: boolean;
  dev?: boolean;
  optional?: boolean;
  devOptional?: boolean;
  peer?: boolean;
}

export interface PackageJson {
  name?: string;
  main?: string;
  files?: string[];
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
}

/** One production package: its lockfile key (a path relative to the project root). */
export interface ProductionPackage {
  path: string;
  name: string;
  version?: string;
  /** Installed only when npm could install it: missing is fine. */
  optional: boolean;
  /** For `link: true`: the lockfile key of the linked directory. */
  linkTo?: string;
}

type Fail = (msg: string) => Error;

export async function nodePreset(loaded: LoadedSpec, ctx: Context, opts: NodePresetOptions = {}): Promise<NodePreset> {
  const fail: Fail = (msg) => loaded.error(['preset'], msg);
  for (const [i, l] of (loaded.spec.layers ?? []).entries()) {
    if ((LAYER_NAMES as readonly string[]).includes(l.name)) {
      throw loaded.error(
        ['layers', i, 'name'],
        `"${l.name}" is a layer preset: node makes; give this layer another name`,
      );
    }
  }
  try {
    const project = await _readProject(ctx, fail);
    const packages = productionPackages(project.packages, project.lockName, fail);
    const props = loaded.spec.properties ?? {};
    const dependencies = await _dependenciesLayer(ctx, packages, props, fail);
    const entry = nodeEntry(project.manifest);
    const app = await _appLayer(ctx, project, props, opts, fail);
    if (!loaded.spec.config?.entrypoint) _checkEntry(app, entry, fail);
    return {
      layers: [dependencies, app],
      config: {
        workdir: `/${APP_DIR}`,
        env: { NODE_ENV: 'production' },
        entrypoint: ['node', posix.join(`/${APP_DIR}`, entry)],
      },
    };
  } catch (e) {
    if (e instanceof ContextError) throw fail(e.message);
    throw e;
  }
}

/** The script node runs: X when `scripts.start` is exactly `node X`, else `main`, else index.js (npm's default). */
export function nodeEntry(pkg: PackageJson): string {
  const start = pkg.scripts?.start?.trim().match(/^node\s+([^\s-]\S*)$/);
  return posix.normalize(start?.[1] ?? pkg.main ?? 'index.js');
}

/**
 * The packages `npm ci --omit=dev` installs, from a lockfile's `packages` map (see the header for the rules).
 * Pure: the disk is consulted later.
 */
export function productionPackages(
  packages: Record<string, LockPackage>,
  lockName: string,
  fail: Fail,
): ProductionPackage[] {
  const out: ProductionPackage[] = [];
  for (const [path, p] of Object.entries(packages)) {
    if (path === '') continue; // the project itself
    const target = p.link ? packages[p.resolved ?? ''] : p;
    if (!target)
      throw fail(
        `${lockName} links ${path} to ${p.resolved ?? '(nothing)'}, which it does not list; run npm install to refresh it`,
      );
    if (p.dev || target.dev) continue;
    out.push({
      path,
      name: p.name ?? _nameOf(path),
      version: p.link ? undefined : p.version,
      optional: !!(p.optional || p.devOptional || target.optional || target.devOptional),
      linkTo: p.link ? p.resolved : undefined,
    });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** `node_modules/@s/a/node_modules/b` → `b`; `node_modules/@s/a` → `@s/a`; `packages/x` → `x`. */
function _nameOf(path: string): string {
  const i = path.lastIndexOf('node_modules/');
  return i < 0 ? posix.basename(path) : path.slice(i + 'node_modules/'.length);
}

interface _Project {
  manifest: PackageJson;
  lockName: string;
  packages: Record<string, LockPackage>;
}

async function _readProject(ctx: Context, fail: Fail): Promise<_Project> {
  const manifest = (await _readJson(ctx, 'package.json')) as PackageJson | undefined;
  if (!manifest) throw fail(`preset node needs package.json at the root of the build context (${ctx.dir})`);
  // npm's own order: a shrinkwrap wins over package-lock.json.
  let lockName = 'npm-shrinkwrap.json';
  let lock = (await _readJson(ctx, lockName)) as
    | { lockfileVersion?: number; packages?: Record<string, LockPackage> }
    | undefined;
  if (!lock) lock = (await _readJson(ctx, (lockName = 'package-lock.json'))) as typeof lock;
  if (!lock)
    throw fail(
      'preset node needs package-lock.json (or npm-shrinkwrap.json) beside package.json; run npm install to create it',
    );
  if (!lock.packages || typeof lock.packages !== 'object') {
    throw fail(
      `${lockName} is lockfileVersion ${lock.lockfileVersion ?? '?'}; preset node reads v2 or v3 (npm ≥ 7): run npm install with a current npm`,
    );
  }
  for (const dep of Object.keys(manifest.dependencies ?? {})) {
    if (!lock.packages[`node_modules/${dep}`]) {
      throw fail(
        `${lockName} does not match package.json (no entry for dependency '${dep}'); run npm install to update it`,
      );
    }
  }
  return { manifest, lockName, packages: lock.packages };
}

async function _readJson(ctx: Context, name: string): Promise<unknown> {
  const [f] = await ctx.select(name);
  if (f?.kind !== 'file') return undefined;
  try {
    return JSON.parse(await readFile(f.abs, 'utf8'));
  } catch (e) {
    throw new ContextError(`${name} is not valid JSON: ${(e as Error).message}`);
  }
}

async function _dependenciesLayer(
  ctx: Context,
  packages: ProductionPackage[],
  props: FileProperties,
  fail: Fail,
): Promise<LayerPlan> {
  const byPath = new Map<string, Member>();
  const origins = new Map<string, string>();
  for (const pkg of packages) {
    const where = [pkg.path, pkg.linkTo].find((p) => p !== undefined && _outside(p));
    if (where) {
      throw fail(
        `production dependency '${pkg.name}' is in ${where}, outside the build context; ` +
          'install it as a copy (npm install --install-links) or move it into the context',
      );
    }
    let files: ContextFile[];
    try {
      // Each package without its own node_modules: the nested packages there are lockfile entries of their own.
      files = await ctx.select(pkg.path, { exclude: ['node_modules'] });
    } catch (e) {
      if (e instanceof ContextError) throw fail(`production dependency '${pkg.name}' (${pkg.path}): ${e.message}`);
      throw e;
    }
    if (files.length === 0) {
      if (pkg.optional) continue;
      throw fail(
        `production dependency '${pkg.name}' is not installed (no ${pkg.path}); run npm ci --omit=dev (or npm ci) before berth build`,
      );
    }
    if (pkg.version !== undefined) await _checkVersion(pkg, files, fail);
    for (const f of files) {
      const path = posix.join(APP_DIR, f.ctxPath);
      byPath.set(path, contextMember(path, f, props));
      origins.set(path, f.ctxPath);
    }
  }
  return { name: 'dependencies', members: finishMembers(byPath, fail), origins };
}

function _outside(path: string): boolean {
  return isAbsolute(path) || path.split('/').includes('..');
}

/** An installed package must be the one the lockfile pins: a stale node_modules would ship untested code. */
async function _checkVersion(pkg: ProductionPackage, files: ContextFile[], fail: Fail): Promise<void> {
  const manifest = files.find((f) => f.ctxPath === `${pkg.path}/package.json` && f.kind === 'file');
  if (!manifest)
    throw fail(
      `production dependency '${pkg.name}' in ${pkg.path} has no package.json; run npm ci --omit=dev (or npm ci) before berth build`,
    );
  let version: unknown;
  try {
    version = (JSON.parse(await readFile(manifest.abs, 'utf8')) as PackageJson & { version?: string }).version;
  } catch {
    // An unreadable package.json: let node complain at run time rather than guess here.
    return;
  }
  if (version !== pkg.version) {
    throw fail(
      `production dependency '${pkg.name}' is installed at ${String(version)} but the lockfile pins ${pkg.version}; run npm ci --omit=dev (or npm ci) before berth build`,
    );
  }
}

/** What the app layer never takes, as gitignore-like patterns (see the header). */
async function _appExcludes(ctx: Context, project: _Project, opts: NodePresetOptions, fail: Fail): Promise<string[]> {
  const patterns = [...DEFAULT_EXCLUDES, ...(await berthignore(ctx, fail))];
  // Directories the lockfile names as packages (link targets, workspaces, the sources of `file:` copies) belong to
  // the dependencies layer or, when dev-only, to no layer.
  for (const [key, p] of Object.entries(project.packages)) {
    const source =
      p.resolved?.startsWith('file:') && !/\.(tgz|tar|tar\.gz)$/.test(p.resolved)
        ? p.resolved.slice('file:'.length)
        : undefined;
    for (const dir of [key, source]) {
      const norm = dir && posix.normalize(dir);
      if (norm && norm !== '.' && !_outside(norm)) patterns.push(`/${norm}`);
    }
  }
  for (const abs of opts.exclude ?? []) {
    const rel = relative(ctx.dir, resolve(abs));
    if (rel && !rel.startsWith('..') && !isAbsolute(rel)) patterns.push(`/${rel.split('\\').join('/')}`);
  }
  return patterns;
}

async function _appLayer(
  ctx: Context,
  project: _Project,
  props: FileProperties,
  opts: NodePresetOptions,
  fail: Fail,
): Promise<LayerPlan> {
  const patterns = await _appExcludes(ctx, project, opts, fail);
  const exclude = ignoreGlobs(patterns);
  const excluded = picomatch(exclude, { dot: true });
  // Context.select matches `exclude` against paths relative to where a walk starts: only the whole context can
  // take anchored patterns; a walk from a `files` entry prunes by the any-depth ones and is filtered afterwards.
  const prune = ignoreGlobs(patterns.filter((p) => !p.replace(/\/+$/, '').includes('/')));

  const sources: { pattern: string; required: boolean; at: string }[] = [];
  if (project.manifest.files) {
    for (const [i, raw] of project.manifest.files.entries()) {
      if (raw.startsWith('!'))
        throw fail(
          `package.json files[${i}] '${raw}': negated patterns are not supported; list what to include, or use .berthignore`,
        );
      sources.push({
        pattern: raw.replace(/^\.\/+/, '').replace(/\/+$/, '') || '.',
        required: true,
        at: `package.json files[${i}] '${raw}'`,
      });
    }
    // npm always packs main; the entry check below catches a start script left out of `files`.
    if (project.manifest.main)
      sources.push({ pattern: posix.normalize(project.manifest.main), required: false, at: 'main' });
  } else {
    sources.push({ pattern: '.', required: false, at: 'context' });
  }
  sources.push(
    { pattern: 'package.json', required: true, at: 'package.json' },
    { pattern: project.lockName, required: true, at: project.lockName },
  );

  const byPath = new Map<string, Member>();
  const origins = new Map<string, string>();
  for (const s of sources) {
    const always = s.pattern === 'package.json' || s.pattern === project.lockName;
    const files = (await ctx.select(s.pattern, { exclude: s.pattern === '.' ? exclude : prune })).filter(
      (f) => always || !excluded(f.ctxPath),
    );
    if (files.length === 0 && s.required)
      throw fail(`${s.at} matches no file in the build context (after excludes); build it first or fix the pattern`);
    for (const f of files) {
      const path = posix.join(APP_DIR, f.ctxPath);
      byPath.set(path, contextMember(path, f, props));
      origins.set(path, f.ctxPath);
    }
  }
  await _dropEmptied(byPath, origins, ctx);
  return { name: 'app', members: finishMembers(byPath, fail), origins };
}

/** A directory left empty only because everything in it was excluded (say tools/ of a dev-only package) goes too. */
async function _dropEmptied(byPath: Map<string, Member>, origins: Map<string, string>, ctx: Context): Promise<void> {
  const parents = new Set([...byPath.keys()].map((p) => posix.dirname(p)));
  // Deepest first, so a parent whose only child was dropped is judged after it.
  const dirs = [...byPath.values()]
    .filter((m) => m.type === 'directory')
    .map((m) => m.path)
    .sort((a, b) => b.length - a.length);
  for (const dir of dirs) {
    if (parents.has(dir)) continue;
    const source = origins.get(dir);
    if (source === undefined || (await readdir(resolve(ctx.dir, source))).length === 0) continue;
    byPath.delete(dir);
    origins.delete(dir);
    if (![...byPath.keys()].some((p) => posix.dirname(p) === posix.dirname(dir))) parents.delete(posix.dirname(dir));
  }
}

/**
 * gitignore-like patterns → globs for Context.select's `exclude` (matched against context-relative paths):
 * `name` matches at any depth, `/name` or `a/b` only from the root; either way everything below a match goes too.
 */
export function ignoreGlobs(patterns: string[]): string[] {
  const out: string[] = [];
  for (const raw of patterns) {
    const p = raw.replace(/\/+$/, '');
    if (!p) continue;
    const anchored = p.startsWith('/') || p.includes('/');
    const rel = p.replace(/^\/+/, '');
    out.push(...(anchored ? [rel, `${rel}/**`] : [rel, `**/${rel}`, `${rel}/**`, `**/${rel}/**`]));
  }
  return out;
}

/** `.berthignore`: one pattern a line (see ignoreGlobs), `#` comments; no `!` re-includes (they would be silent). */
export async function berthignore(ctx: Context, fail: Fail): Promise<string[]> {
  const [f] = await ctx.select('.berthignore');
  if (f?.kind !== 'file') return [];
  const out: string[] = [];
  for (const [i, line] of (await readFile(f.abs, 'utf8')).split('\n').entries()) {
    const p = line.trim();
    if (!p || p.startsWith('#')) continue;
    if (p.startsWith('!')) throw fail(`.berthignore:${i + 1}: '!' patterns are not supported`);
    if (p.split('/').includes('..')) throw fail(`.berthignore:${i + 1}: '${p}' contains '..'`);
    out.push(p);
  }
  return out;
}

/** Node resolves `node X` as X, X.js, X.mjs, X.cjs or X/index.js: one of them must be in the app layer. */
function _checkEntry(app: LayerPlan, entry: string, fail: Fail): void {
  const base = posix.join(APP_DIR, entry);
  const files = new Set(app.members.filter((m) => m.type !== 'directory').map((m) => m.path));
  const candidates = [base, `${base}.js`, `${base}.mjs`, `${base}.cjs`, `${base}/index.js`];
  if (!candidates.some((c) => files.has(c))) {
    throw fail(
      `the entrypoint ${entry} (from package.json scripts.start, main or the default index.js) is not in the app layer; ` +
        'add it to package.json files, build it first, or set config.entrypoint',
    );
  }
}
