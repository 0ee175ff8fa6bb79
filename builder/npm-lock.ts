// The npm packages a lockfile pins, for the SBOM: the `packages` map of lockfileVersion 2 and 3 (keys are install
// paths such as `node_modules/a/node_modules/b`), else the nested `dependencies` tree of version 1. Development-only
// packages (`dev: true`) are left out — `npm ci --omit=dev` does not install them; `devOptional` ones can be (as
// optional deps of production packages), so they stay.
// https://docs.npmjs.com/cli/v10/configuring-npm/package-lock-json
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface NpmPackage {
  name: string;
  version: string;
  /** The first install path the lockfile gives it (`node_modules/…`). */
  path: string;
  resolved?: string;
  /** Subresource Integrity value(s), e.g. `sha512-<base64>`. */
  integrity?: string;
}

export class LockfileError extends Error {}

/** Packages in the lockfile text, one per name@version, sorted by name then version. */
export function npmPackages(lockText: string, file = 'package-lock.json'): NpmPackage[] {
  let lock: any;
  try {
    lock = JSON.parse(lockText);
  } catch (e) {
    throw new LockfileError(`${file}: not JSON (${(e as Error).message})`);
  }
  const packages = lock?.packages ?? _v1Packages(lock?.dependencies);
  if (!packages || typeof packages !== 'object')
    throw new LockfileError(`${file}: neither a "packages" map nor "dependencies"; is it an npm lockfile?`);
  const byId = new Map<string, NpmPackage>();
  for (const [path, entry] of Object.entries<any>(packages)) {
    // "" is the project itself; links point at a workspace folder listed under its own key.
    if (path === '' || !entry || entry.dev === true || entry.link === true) continue;
    const name = typeof entry.name === 'string' ? entry.name : _nameFromPath(path);
    if (!name || typeof entry.version !== 'string') continue;
    const id = `${name}@${entry.version}`;
    if (byId.has(id)) continue;
    byId.set(id, {
      name,
      version: entry.version,
      path,
      ...(typeof entry.resolved === 'string' ? { resolved: entry.resolved } : {}),
      ...(typeof entry.integrity === 'string' ? { integrity: entry.integrity } : {}),
    });
  }
  return [...byId.values()].sort((a, b) => _cmp(a.name, b.name) || _cmp(a.version, b.version));
}

/** `package-lock.json` (or `npm-shrinkwrap.json`, which npm prefers) in `dir`; [] when there is neither. */
export async function readNpmLock(dir: string): Promise<NpmPackage[]> {
  for (const name of ['npm-shrinkwrap.json', 'package-lock.json']) {
    let text: string;
    try {
      text = await readFile(join(dir, name), 'utf8');
    } catch {
      continue;
    }
    return npmPackages(text, name);
  }
  return [];
}

/** lockfileVersion 1: `dependencies` nest like node_modules folders; flattened into the v2 `packages` shape. */
function _v1Packages(deps: unknown, prefix = ''): Record<string, any> | undefined {
  if (!deps || typeof deps !== 'object') return undefined;
  const out: Record<string, any> = {};
  for (const [name, entry] of Object.entries<any>(deps)) {
    const path = `${prefix}node_modules/${name}`;
    out[path] = { ...entry, name };
    Object.assign(out, _v1Packages(entry?.dependencies, `${path}/`));
  }
  return out;
}

/** `node_modules/@s/a/node_modules/b` → `b`; `node_modules/@s/a` → `@s/a`. */
function _nameFromPath(path: string): string | undefined {
  const i = path.lastIndexOf('node_modules/');
  return i < 0 ? undefined : path.slice(i + 'node_modules/'.length) || undefined;
}

/** Code-unit order: the same on every machine (no locale). */
function _cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
