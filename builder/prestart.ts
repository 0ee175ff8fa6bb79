// A build's head start: what can begin as soon as the spec is read, before the pipeline's modules are loaded.
// Today that is preset go's `go build` runs (go-build.ts says why). The CLI calls it before it even loads the build
// command (pkg-cli/build-head-start.ts), so this module and what it imports must stay small: the spec is only
// parsed as YAML here, not validated (ajv and the schema are most of builder/spec.ts's load), and the few fields
// read are checked by hand. Everything here is a guess the pipeline confirms: any doubt (an unreadable spec, a
// field of the wrong type, no go.mod, a platform the spec does not have) means no head start, and the pipeline
// then says what is wrong in its own words. A wrong guess costs only CPU: runGoBuild never lets two runs write one
// binary.
import { mkdir, readFile, realpath, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parse } from 'yaml';
import type { GoPresetSpec } from '../spec/build-spec.js';
import type { Platform } from '../spec/manifest.js';
import { selectPlatforms } from '../spec/platform.js';
import { defaultCacheDir } from './cache-dir.js';
import { goInvocations, prestartGoBuilds } from './go-build.js';

export interface PrestartOptions {
  file: string;
  context?: string;
  /** As runBuild's: false (a throwaway cache) and a reproducibility check (two throwaway caches) get no head start. */
  cacheDir?: string | false;
  platforms?: Platform[];
  checkReproducible?: boolean;
  /** The `go` command (default: `go` on PATH), as preset-go.ts runs it. */
  go?: string;
}

/** Starts what it can; never throws. Resolves once it has started (or decided not to). */
export async function prestartBuild(opts: PrestartOptions): Promise<void> {
  if (opts.cacheDir === false || opts.checkReproducible) return;
  try {
    const spec: unknown = parse(await readFile(opts.file, 'utf8'));
    if (!_isObject(spec) || spec.preset !== 'go') return;
    const settings = spec.go ?? {};
    if (!_isGoSettings(settings)) return;
    const platforms = _platforms(spec.platforms, opts.platforms);
    if (!platforms) return;
    const cwd = await realpath(opts.context ?? dirname(resolve(opts.file)));
    if (!(await stat(join(cwd, 'go.mod'))).isFile()) return;
    const outDir = join(opts.cacheDir ?? defaultCacheDir(), 'go-build');
    const invs = goInvocations(settings, platforms, cwd, outDir);
    await Promise.all(invs.map((inv) => mkdir(dirname(inv.out), { recursive: true })));
    prestartGoBuilds(opts.go ?? 'go', invs);
  } catch {
    // No head start; the pipeline meets the same problem and reports it.
  }
}

/** The spec's platforms narrowed to `only`, as specPlatforms (spec.ts) picks them; undefined when in doubt. */
function _platforms(listed: unknown, only: Platform[] | undefined): Platform[] | undefined {
  if (listed !== undefined && !(Array.isArray(listed) && listed.every((p) => typeof p === 'string'))) return undefined;
  const { picked, missing } = selectPlatforms(listed as string[] | undefined, only);
  return missing ? undefined : picked;
}

function _isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The `go:` fields goInvocations reads, of the types the schema gives them. */
function _isGoSettings(v: unknown): v is GoPresetSpec {
  if (!_isObject(v)) return false;
  const strings = (x: unknown) => x === undefined || (Array.isArray(x) && x.every((s) => typeof s === 'string'));
  return (
    (v.main === undefined || typeof v.main === 'string') &&
    (v.cgo === undefined || typeof v.cgo === 'boolean') &&
    strings(v.tags) &&
    strings(v.ldflags)
  );
}
