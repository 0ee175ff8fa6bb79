// `preset: python`: a Python service image from a lock, with no `layers:` to write. The base image brings the
// interpreter (python3 on PATH); the preset brings the packages and the app.
//
// In: the loaded spec (`python:` settings), the build context and a directory to install into. Out, per platform:
// two layers and config defaults; build.ts puts them after the base's and before the spec's own, and applies the
// spec's `config:` over the defaults.
//
// - The lock (`python.lock`, else the first of uv.lock, poetry.lock, requirements.txt at the context root) becomes
//   a pip requirements file in which every package is pinned (`==`) and carries the sha256 of each of its files:
//   requirements.txt must already be so (pip-compile --generate-hashes, uv pip compile --generate-hashes); uv.lock
//   gives the packages the project depends on (the dependency graph from the project's own entry, dev groups
//   left out); poetry.lock its `main` group. TOML is read by the host's python3 (tomllib, Python ≥ 3.11).
// - `dependencies` → /app/site-packages: `pip install --target … --no-deps --require-hashes --only-binary=:all:
//   --no-compile --platform <manylinux tags of the platform> --python-version X.Y --implementation cp --abi cpXY`,
//   so pip only unpacks verified wheels — no setup.py runs, nothing is compiled on the build machine. A pure
//   wheel (py3-none-any) installs for every platform; a binary wheel only for the platform it was built for, and a
//   package without one for a platform is an error naming the package and the platform. Console scripts (bin/,
//   whose #! names the build machine's python) and bytecode are not installed: run code with `python3 -m`.
// - `app` → /app/: the context minus DEFAULT_EXCLUDES, `.berthignore` patterns, the spec file and cache dir.
// - config defaults: Entrypoint ["python3", "/app/<main>"] (main.py, else app.py), WorkingDir /app, Env
//   PYTHONPATH=/app/site-packages, PYTHONUNBUFFERED=1, PYTHONDONTWRITEBYTECODE=1. User stays the base's.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { isAbsolute, join, posix, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { FileProperties, ImageConfigSpec } from '../spec/build-spec.js';
import type { Platform } from '../spec/manifest.js';
import { formatPlatform } from '../spec/platform.js';
import { Context, ContextError } from './context.js';
import { finishMembers, type LayerPlan, type Member } from './plan.js';
import { berthignore, ignoreGlobs } from './preset-node.js';
import { contextMember, type Preset } from './preset.js';
import type { LoadedSpec } from './spec.js';

const run = promisify(execFile);

export const PY_APP_DIR = 'app';
export const PY_SITE = 'app/site-packages';
export const PY_LAYER_NAMES = ['dependencies', 'app'] as const;
export const PY_DEFAULT_EXCLUDES = [
  '.git',
  '.hg',
  '.svn',
  '.venv',
  'venv',
  '__pycache__',
  '*.pyc',
  '.pytest_cache',
  '.mypy_cache',
  '.ruff_cache',
  '.tox',
  '/site-packages',
  '/berth.yaml',
  '/berth.lock',
  '/.berthignore',
];
const LOCKS = ['uv.lock', 'poetry.lock', 'requirements.txt'];

export interface PythonPresetOptions {
  /** Where pip installs each platform's packages (outside the context: the build cache). */
  outDir: string;
  /** Absolute paths kept out of the app layer when they are inside the context (the spec file, the cache dir). */
  exclude?: string[];
  /** The host's python3 (default: `python3` on PATH): runs pip and reads TOML locks. */
  python?: string;
}

/** pip's --platform tags for a platform: manylinux wheels (glibc) of its CPU; pure wheels always match. */
export function wheelPlatforms(p: Platform): string[] | undefined {
  if (p.os !== 'linux') return undefined;
  const cpu = (
    {
      amd64: 'x86_64',
      arm64: 'aarch64',
      ppc64le: 'ppc64le',
      s390x: 's390x',
      riscv64: 'riscv64',
      '386': 'i686',
    } as Record<string, string>
  )[p.architecture];
  if (!cpu)
    return p.architecture === 'arm' && p.variant === 'v7'
      ? ['manylinux_2_17_armv7l', 'manylinux_2_31_armv7l']
      : undefined;
  const glibc = ['2_17', '2_24', '2_27', '2_28', '2_31', '2_34', '2_35'];
  const legacy =
    cpu === 'x86_64' || cpu === 'i686' ? ['manylinux1', 'manylinux2010', 'manylinux2014'] : ['manylinux2014'];
  return [...glibc.map((v) => `manylinux_${v}_${cpu}`), ...legacy.map((l) => `${l}_${cpu}`)];
}

type Fail = (msg: string) => Error;

export async function pythonPreset(loaded: LoadedSpec, ctx: Context, opts: PythonPresetOptions): Promise<Preset> {
  const fail: Fail = (msg) => loaded.error(['preset'], msg);
  const settings = loaded.spec.python ?? {};
  for (const [i, l] of (loaded.spec.layers ?? []).entries()) {
    if ((PY_LAYER_NAMES as readonly string[]).includes(l.name))
      throw loaded.error(
        ['layers', i, 'name'],
        `"${l.name}" is a layer preset: python makes; give this layer another name`,
      );
  }
  const python = opts.python ?? 'python3';
  const py = async (args: string[]) => {
    try {
      return (
        await run(python, args, { cwd: ctx.real, maxBuffer: 64 << 20, env: { ...process.env, PIP_NO_INPUT: '1' } })
      ).stdout;
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: string };
      if (err.code === 'ENOENT')
        throw fail(`preset python runs pip with the host's ${python}, which is not on PATH; install Python 3 with pip`);
      throw new _PyError((err.stderr ?? err.message).trim());
    }
  };
  try {
    const version = settings.version ?? (await py(['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'])).trim();
    const lock = await _lock(ctx, settings.lock, fail);
    const requirements = await _requirements(lock, py, fail);
    const main = await _main(ctx, settings.main, loaded);
    const props = loaded.spec.properties ?? {};
    const app = await _appLayer(ctx, props, opts, fail);
    const reqFile = join(opts.outDir, 'requirements.txt');
    await mkdir(opts.outDir, { recursive: true });
    await writeFile(reqFile, requirements);
    const byPlatform = new Map<string, Promise<LayerPlan>>();
    return {
      layerNames: PY_LAYER_NAMES,
      async layers(platform: Platform): Promise<LayerPlan[]> {
        const key = formatPlatform(platform);
        let deps = byPlatform.get(key);
        if (!deps) {
          deps = _dependencies(platform, version, reqFile, lock.name, opts.outDir, py, props, fail);
          byPlatform.set(key, deps);
        }
        return [await deps, app];
      },
      config: {
        workdir: `/${PY_APP_DIR}`,
        env: { PYTHONPATH: `/${PY_SITE}`, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
        entrypoint: ['python3', posix.join(`/${PY_APP_DIR}`, main)],
      } satisfies ImageConfigSpec,
    };
  } catch (e) {
    if (e instanceof ContextError) throw fail(e.message);
    if (e instanceof _PyError) throw fail(e.message);
    throw e;
  }
}

interface _Lock {
  name: string;
  abs: string;
  kind: 'uv' | 'poetry' | 'requirements';
}

async function _lock(ctx: Context, chosen: string | undefined, fail: Fail): Promise<_Lock> {
  for (const name of chosen ? [chosen] : LOCKS) {
    const [f] = await ctx.select(name);
    if (f?.kind !== 'file') continue;
    const base = posix.basename(name);
    const kind = base === 'uv.lock' ? 'uv' : base === 'poetry.lock' ? 'poetry' : 'requirements';
    return { name, abs: f.abs, kind };
  }
  if (chosen) throw fail(`python.lock names ${chosen}, which is not a file in the build context`);
  throw fail(
    'preset python installs from a lock: uv.lock, poetry.lock, or requirements.txt with hashes (pip-compile --generate-hashes) at the root of the build context',
  );
}

/** The lock as a requirements file in which every package is pinned and hashed. */
async function _requirements(lock: _Lock, py: (args: string[]) => Promise<string>, fail: Fail): Promise<string> {
  if (lock.kind === 'requirements') {
    const text = await readFile(lock.abs, 'utf8');
    checkRequirements(text, lock.name, fail);
    return text;
  }
  let doc: any;
  try {
    doc = JSON.parse(await py(['-c', TOML_TO_JSON, lock.abs]));
  } catch (e) {
    if (e instanceof _PyError) {
      if (/ModuleNotFoundError: No module named 'tomllib'/.test(e.message))
        throw fail(`reading ${lock.name} needs Python ≥ 3.11 on the build machine (tomllib)`);
      throw fail(`${lock.name} is not valid TOML: ${e.message.split('\n').pop()}`);
    }
    throw e;
  }
  const packages = lock.kind === 'uv' ? uvPackages(doc, lock.name, fail) : poetryPackages(doc, lock.name, fail);
  if (!packages.length && lock.kind === 'poetry') return ''; // a project without dependencies
  return packages.map(_requirementLine).join('');
}

const TOML_TO_JSON = 'import json, sys, tomllib\nwith open(sys.argv[1], "rb") as f: print(json.dumps(tomllib.load(f)))';

export interface LockedPackage {
  name: string;
  version: string;
  hashes: string[];
  marker?: string;
}

function _requirementLine(p: LockedPackage): string {
  const marker = p.marker ? ` ; ${p.marker}` : '';
  return `${p.name}==${p.version}${marker} ${p.hashes.map((h) => `--hash=${h}`).join(' ')}\n`;
}

/** Every requirement line must pin with == and carry --hash (pip's --require-hashes would refuse it later, less clearly). */
export function checkRequirements(text: string, name: string, fail: Fail): void {
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  lines.forEach((raw) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line) return;
    if (line.startsWith('-'))
      throw fail(`${name}: '${line.split(/\s/)[0]}' is not supported here; list pinned, hashed requirements only`);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?\s*===?\s*[^\s;]+/.test(line))
      throw fail(
        `${name}: '${line.split(/\s/)[0]}' is not pinned with ==; generate the file with pip-compile --generate-hashes`,
      );
    if (!/--hash[= ]sha256:[0-9a-f]{64}/.test(line))
      throw fail(
        `${name}: '${line.split(/\s/)[0]}' has no --hash; generate the file with pip-compile --generate-hashes`,
      );
  });
}

const _norm = (n: string) => n.toLowerCase().replace(/[-_.]+/g, '-');

/** uv.lock: the packages reachable from the project's own entry through `dependencies` (not dev groups). */
export function uvPackages(doc: any, name: string, fail: Fail): LockedPackage[] {
  const all: any[] = Array.isArray(doc?.package) ? doc.package : [];
  const byName = new Map<string, any[]>();
  for (const p of all) byName.set(_norm(String(p.name)), [...(byName.get(_norm(String(p.name))) ?? []), p]);
  const roots = all.filter((p) => p.source && (p.source.editable === '.' || p.source.virtual === '.'));
  if (roots.length !== 1)
    throw fail(`${name} has no entry for the project itself (source = { editable = "." }); run uv lock`);
  const out = new Map<string, LockedPackage>();
  const visit = (dep: any, marker: string | undefined) => {
    const candidates = byName.get(_norm(String(dep.name))) ?? [];
    const p = dep.version ? candidates.find((c) => c.version === dep.version) : candidates[0];
    if (!p) throw fail(`${name} lists '${dep.name}' as a dependency but has no entry for it; run uv lock`);
    const key = `${_norm(p.name)}==${p.version}`;
    if (out.has(key)) return;
    const files = [...(p.wheels ?? []), ...(p.sdist ? [p.sdist] : [])];
    const hashes = files
      .map((f: any) => f.hash)
      .filter((h: unknown) => typeof h === 'string' && /^sha256:[0-9a-f]{64}$/.test(h));
    if (!hashes.length)
      throw fail(
        `${name}: '${p.name}' ${p.version} has no file hashes (source ${JSON.stringify(p.source)}); only registry packages can be installed`,
      );
    out.set(key, { name: p.name, version: p.version, hashes, marker });
    for (const d of p.dependencies ?? []) visit(d, d.marker ?? marker);
  };
  for (const d of roots[0].dependencies ?? []) visit(d, d.marker);
  return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** poetry.lock: the packages of the `main` group (older locks: category "main"). */
export function poetryPackages(doc: any, name: string, fail: Fail): LockedPackage[] {
  const all: any[] = Array.isArray(doc?.package) ? doc.package : [];
  const out: LockedPackage[] = [];
  for (const p of all) {
    const groups: string[] | undefined = Array.isArray(p.groups) ? p.groups : p.category ? [p.category] : undefined;
    if (groups && !groups.includes('main')) continue;
    if (p.source?.type && p.source.type !== 'legacy')
      throw fail(`${name}: '${p.name}' comes from a ${p.source.type} source; only registry packages can be installed`);
    const hashes = (p.files ?? [])
      .map((f: any) => f.hash)
      .filter((h: unknown) => typeof h === 'string' && /^sha256:[0-9a-f]{64}$/.test(h));
    if (!hashes.length) throw fail(`${name}: '${p.name}' ${p.version} has no file hashes; run poetry lock`);
    out.push({
      name: p.name,
      version: p.version,
      hashes,
      marker: typeof p.markers === 'string' ? p.markers : undefined,
    });
  }
  return out;
}

async function _main(ctx: Context, chosen: string | undefined, loaded: LoadedSpec): Promise<string> {
  for (const name of chosen ? [chosen] : ['main.py', 'app.py']) {
    const [f] = await ctx.select(name);
    if (f?.kind === 'file') return posix.normalize(name);
  }
  if (chosen) throw loaded.error(['python', 'main'], `${chosen} is not a file in the build context`);
  if (loaded.spec.config?.entrypoint) return 'main.py'; // not used: the spec sets its own entrypoint
  throw loaded.error(
    ['preset'],
    'preset python runs main.py or app.py: add one, set python.main, or set config.entrypoint',
  );
}

async function _dependencies(
  platform: Platform,
  version: string,
  reqFile: string,
  lockName: string,
  outDir: string,
  py: (args: string[]) => Promise<string>,
  props: FileProperties,
  fail: Fail,
): Promise<LayerPlan> {
  const tags = wheelPlatforms(platform);
  if (!tags) throw fail(`no Python wheels are published for ${formatPlatform(platform)}; build for linux platforms`);
  const target = join(outDir, formatPlatform(platform).replace(/\//g, '-'));
  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  const abi = `cp${version.replace('.', '')}`;
  const args = ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--quiet', '--target', target];
  args.push('--no-deps', '--require-hashes', '--only-binary=:all:', '--no-compile');
  for (const t of tags) args.push('--platform', t);
  args.push('--python-version', version, '--implementation', 'cp', '--abi', abi, '-r', reqFile);
  if ((await readFile(reqFile, 'utf8')).trim()) {
    try {
      await py(args);
    } catch (e) {
      if (e instanceof _PyError) throw fail(_pipError(e.message, platform, version, lockName));
      throw e;
    }
  }
  // Console scripts name the build machine's python in their #!; bytecode is the build machine's to make.
  await rm(join(target, 'bin'), { recursive: true, force: true });
  const site = await Context.open(target);
  const files = await site.select('.', { exclude: ignoreGlobs(['__pycache__', '*.pyc']) });
  const byPath = new Map<string, Member>();
  const origins = new Map<string, string>();
  for (const f of files) {
    const path = posix.join(PY_SITE, f.ctxPath);
    byPath.set(path, contextMember(path, f, props));
    origins.set(path, `${lockName} (pip, ${formatPlatform(platform)})`);
  }
  byPath.set(PY_SITE, {
    path: PY_SITE,
    type: 'directory',
    mode: 0o755,
    uid: props.uid ?? 0,
    gid: props.gid ?? 0,
    size: 0,
  });
  return { name: 'dependencies', members: finishMembers(byPath, fail), origins };
}

/** pip's refusal, said in terms of the lock and the platform. */
function _pipError(stderr: string, platform: Platform, version: string, lockName: string): string {
  const plat = formatPlatform(platform);
  const missing = stderr.match(/satisfies the requirement (\S+)/);
  if (missing)
    return `no wheel of ${missing[1]} for ${plat} (CPython ${version}): pure-Python wheels install on any platform, binary wheels only on the platform they were built for; pin a version that publishes one for ${plat}, or drop ${plat} from platforms`;
  if (/DO NOT MATCH THE HASHES/.test(stderr))
    return `a downloaded file does not match the hash in ${lockName}: the lock is stale or the file was tampered with; regenerate the lock\n${_tail(stderr)}`;
  if (/Hashes are required|hash.*missing|--require-hashes/i.test(stderr))
    return `${lockName} lacks a hash for a file pip needs for ${plat}: regenerate it with hashes for every platform\n${_tail(stderr)}`;
  return `pip install for ${plat} failed:\n${_tail(stderr)}`;
}

function _tail(s: string): string {
  return s
    .split('\n')
    .filter((l) => !/Running pip as the 'root' user/.test(l))
    .slice(-12)
    .join('\n');
}

async function _appLayer(
  ctx: Context,
  props: FileProperties,
  opts: PythonPresetOptions,
  fail: Fail,
): Promise<LayerPlan> {
  const patterns = [...PY_DEFAULT_EXCLUDES, ...(await berthignore(ctx, fail))];
  for (const abs of opts.exclude ?? []) {
    const rel = relative(ctx.dir, resolve(abs));
    if (rel && !rel.startsWith('..') && !isAbsolute(rel)) patterns.push(`/${rel.split('\\').join('/')}`);
  }
  const files = await ctx.select('.', { exclude: ignoreGlobs(patterns) });
  const byPath = new Map<string, Member>();
  const origins = new Map<string, string>();
  for (const f of files) {
    const path = posix.join(PY_APP_DIR, f.ctxPath);
    byPath.set(path, contextMember(path, f, props));
    origins.set(path, f.ctxPath);
  }
  return { name: 'app', members: finishMembers(byPath, fail), origins };
}

class _PyError extends Error {}
