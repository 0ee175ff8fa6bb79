// A build's head start: what can begin as soon as the spec is read, before the pipeline's modules are loaded.
// Today that is preset go's `go build` runs (go-build.ts says why). Called by the CLI with the options it will give
// runBuild; everything here is a guess the pipeline confirms: any doubt (an unreadable spec, no go.mod, a platform
// the spec does not have) means no head start, and the pipeline then says what is wrong in its own words.
import { mkdir, realpath, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Platform } from '../spec/manifest.js';
import { goInvocations, prestartGoBuilds } from './go-build.js';
import { defaultCacheDir, loadSpec, specPlatforms } from './spec.js';

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
    const loaded = await loadSpec(opts.file);
    if (loaded.spec.preset !== 'go') return;
    const cwd = await realpath(opts.context ?? dirname(resolve(opts.file)));
    if (!(await stat(join(cwd, 'go.mod'))).isFile()) return;
    const outDir = join(opts.cacheDir ?? defaultCacheDir(), 'go-build');
    const invs = goInvocations(loaded.spec.go ?? {}, specPlatforms(loaded, opts.platforms), cwd, outDir);
    await Promise.all(invs.map((inv) => mkdir(dirname(inv.out), { recursive: true })));
    prestartGoBuilds(opts.go ?? 'go', invs);
  } catch {
    // No head start; the pipeline meets the same problem and reports it.
  }
}
