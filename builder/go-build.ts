// The `go build` runs of `preset: go`, and their head start.
//
// In: the spec's `go:` settings, the platforms, the context's real path and the directory for the binaries.
// Out: one invocation per platform (args, env, output path), run by startGoBuilds().
//
// Why a head start: `go build` is most of a Go image's build (~300 ms of ~500 for a small net/http service), and
// it needs only the spec, the context and the cache directory — not the ~150 modules the rest of the pipeline loads
// (registry client, tar, gzip workers, outputs, SBOM: ~40 ms), nor the base image's manifest. So `berth build` starts
// it as soon as the spec is read (prestartGoBuilds, from the CLI) and the pipeline, reaching preset-go.ts, takes the
// run that is already under way instead of starting its own. This module stays small for that reason: it imports
// nothing of the pipeline.
//
// A head start is taken only by an invocation with the very same arguments, environment, directory and output, and
// only once (a second build of the same spec — `--check-reproducible` builds twice — runs go again). One that is
// never taken (the build failed before reaching the preset) is killed when the process exits: a go build never
// outlives the berth that started it.
import { execFile, type ChildProcess } from 'node:child_process';
import { availableParallelism, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import type { GoPresetSpec } from '../spec/build-spec.js';
import type { Platform } from '../spec/manifest.js';
import { formatPlatform } from '../spec/platform.js';

export interface GoInvocation {
  /** os/arch[/variant], as formatPlatform writes it. */
  platform: string;
  args: string[];
  /** What is set over the process's environment: CGO_ENABLED, GOOS, GOARCH (and GOARM), and goGcEnv(). */
  env: Record<string, string>;
  cwd: string;
  /** The binary's path (`-o`). */
  out: string;
}

/** A finished `go build`: its stdout, or the error execFile gave (with stderr). */
export type GoResult = Promise<{ stdout: string }>;

/** GOOS, GOARCH, GOARM for a platform; undefined when Go has no such port. */
export function goEnv(p: Platform): Record<string, string> | undefined {
  const goarm = p.architecture === 'arm' ? { v5: '5', v6: '6', v7: '7', '': '7' }[p.variant ?? ''] : undefined;
  if (p.architecture === 'arm' && !goarm) return undefined;
  return { GOOS: p.os, GOARCH: p.architecture, ...(goarm ? { GOARM: goarm } : {}) };
}

/** The main package argument for `go.main` ("." unless set; a bare directory gets "./"). */
export function goMainPackage(settings: GoPresetSpec): string {
  const main = settings.main ?? '.';
  return main === '.' || main.startsWith('./') ? main : `./${main}`;
}

/**
 * The Go toolchain's own garbage collector, tuned for a build: GOGC=400 lets the compiler's and linker's heaps grow
 * to 5× their live data before collecting instead of 2×, which takes ~10 % off a small service's `go build`
 * (link-dominated: 350 → 320 ms, 0.45 → 0.40 s of CPU, +20 MB peak). GOMEMLIMIT bounds what that may cost: the go
 * processes that can run at once (a compile per core, a link per platform) share half of this machine's (or
 * container's) memory, so a big project on a small runner collects more often rather than running out. The binary
 * is the same byte for byte (GC settings never reach the generated code). A GOGC or GOMEMLIMIT in the environment
 * wins.
 */
export function goGcEnv(env: NodeJS.ProcessEnv = process.env, concurrent = 1): Record<string, string> {
  const out: Record<string, string> = {};
  if (env.GOGC === undefined) out.GOGC = '400';
  if (env.GOMEMLIMIT === undefined) {
    const limit = process.constrainedMemory?.() ?? 0;
    const memory = limit > 0 && limit < totalmem() ? limit : totalmem();
    const processes = Math.max(1, availableParallelism(), concurrent);
    out.GOMEMLIMIT = `${Math.max(256, Math.floor(memory / 2 / processes / (1 << 20)))}MiB`;
  }
  return out;
}

/**
 * One `go build -trimpath -buildvcs=false [-tags …] [-ldflags=…] -o OUT MAIN` per platform, CGO off unless
 * `go.cgo`. Throws a plain Error naming the platform Go has no port for (the caller says it in its own terms).
 */
export function goInvocations(
  settings: GoPresetSpec,
  platforms: Platform[],
  cwd: string,
  outDir: string,
): GoInvocation[] {
  const args = ['build', '-trimpath', '-buildvcs=false'];
  if (settings.tags?.length) args.push('-tags', settings.tags.join(','));
  if (settings.ldflags?.length) args.push(`-ldflags=${settings.ldflags.join(' ')}`);
  return platforms.map((p) => {
    const penv = goEnv(p);
    if (!penv) throw new GoPortError(p);
    const platform = formatPlatform(p);
    const out = join(resolve(outDir), platform.replace(/\//g, '-'), 'app'); // absolute: go runs in the context directory
    return {
      platform,
      args: [...args, '-o', out, goMainPackage(settings)],
      env: { CGO_ENABLED: settings.cgo ? '1' : '0', ...penv, ...goGcEnv(process.env, platforms.length) },
      cwd,
      out,
    };
  });
}

export class GoPortError extends Error {
  constructor(readonly platform: Platform) {
    super(`Go cannot build for ${formatPlatform(platform)}`);
  }
}

/**
 * Runs `go` (or takes the head start of the same invocation). The caller makes sure the output's directory exists.
 * A head start that guessed another invocation for the same binary is stopped first: two go runs never write one
 * output file at once.
 */
export async function runGoBuild(go: string, inv: GoInvocation): GoResult {
  const key = _key(go, inv);
  const early = _early.get(key);
  if (early) {
    _early.delete(key);
    return early.result;
  }
  for (const [other, run] of _early) {
    if (run.out !== inv.out) continue;
    _early.delete(other);
    run.child.kill();
    await run.result.catch(() => {});
  }
  return _spawn(go, inv).result;
}

/** Starts these builds now, for runGoBuild to take later. Failures wait for the taker (none is reported here). */
export function prestartGoBuilds(go: string, invs: GoInvocation[]): void {
  for (const inv of invs) {
    const key = _key(go, inv);
    if (_early.has(key)) continue;
    const run = _spawn(go, inv);
    run.result.catch(() => {}); // the taker sees it
    _early.set(key, { ...run, out: inv.out });
    if (!_exitHooked) process.once('exit', _killUntaken);
    _exitHooked = true;
  }
}

const _early = new Map<string, { child: ChildProcess; result: GoResult; out: string }>();
let _exitHooked = false;

function _killUntaken(): void {
  for (const { child } of _early.values()) if (child.exitCode === null) child.kill();
}

function _key(go: string, inv: GoInvocation): string {
  return JSON.stringify([go, inv.cwd, inv.args, inv.env]);
}

function _spawn(go: string, inv: GoInvocation): { child: ChildProcess; result: GoResult } {
  let child!: ChildProcess;
  const result = new Promise<{ stdout: string }>((resolve, reject) => {
    child = execFile(
      go,
      inv.args,
      { cwd: inv.cwd, env: { ...process.env, ...inv.env }, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => (err ? reject(Object.assign(err, { stdout, stderr })) : resolve({ stdout })),
    );
  });
  return { child, result };
}
