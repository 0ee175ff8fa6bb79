// `preset: go`: a Go service image from go.mod, with no `layers:` to write — like ko, the binary is built by the
// host's Go toolchain for each platform of the spec; nothing runs inside a container.
//
// In: the loaded spec (`go:` settings), the build context (go.mod at its root) and a directory for the binaries.
// Out, per platform: one layer `app` holding /app/<binary>, and config defaults; build.ts puts the layer after the
// base's and before the spec's own, and applies the spec's `config:` over the defaults.
//
// - The build: `go build -trimpath -buildvcs=false [-tags …] [-ldflags …] -o OUT MAIN` in the context, with
//   GOOS/GOARCH (and GOARM for arm/v6, arm/v7) from the platform and CGO_ENABLED=0 unless `go.cgo: true`. So a
//   linux/arm64 image is cross-compiled on an amd64 machine, and the binary is static: it runs on `scratch`.
//   -trimpath drops the machine's paths and -buildvcs=false the checkout's state (a dirty-tree flag, a commit
//   time), so the same sources give the same bytes on any machine (Go's builds are reproducible given the same
//   toolchain: the toolchain version is recorded in the binary, `go version -m`). Go's own build cache makes a
//   rebuild fast; the layer cache then finds the same bytes by content. The toolchain runs with GOGC=400 (and a
//   GOMEMLIMIT) unless the environment sets them: ~10 % off a link-bound build, same bytes (go-build.ts goGcEnv).
// - The binary: `go.binary`, else the last element of the main package's import path (`example.com/x/cmd/api` →
//   api): go.mod's module path joined with MAIN's directory. MAIN (`go.main`, default ".") must be a main package
//   inside the context, and go.mod must be the context's own, so nothing outside the context is built in.
// - Only `go build` runs on the way: a non-main package built with -o leaves an archive (`!<arch>`), not an
//   executable, and only then — or when the build fails — does `go list` say what MAIN is, for the error. (It used
//   to run beside every build: a second Go process loading the package graph, on the cores the build needs.)
// - The layer is gzipped at level 1 (GO_GZIP; the spec's `compression: zstd` still wins), as ko does
//   (go-containerregistry's default, gzip.BestSpeed): a Go binary is mostly machine code that deflate barely
//   shrinks past level 1, so level 6 doubled the time the build waits after linking for 4 % fewer bytes
//   (an 8.3 MB net/http binary: 100 vs 200 ms, 4.88 vs 4.68 MB; crane's 17 MB: +4.6 %). And it is compressed as
//   2 MiB gzip members at once, so every core works on it: 117 -> 64 ms on 2 cores, ±0.02 % bytes. zlib's
//   memLevel 9 (a larger hash table; 8 is its default) deflates that binary in 87 instead of 100 ms, +0.08 % bytes.
// - config defaults: Entrypoint ["/app/<binary>"], WorkingDir /app, User 65532:65532 (ko's nonroot: a static
//   binary needs no root; `config.user` overrides).
import { execFile } from 'node:child_process';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { promisify } from 'node:util';
import type { ImageConfigSpec } from '../spec/build-spec.js';
import type { Platform } from '../spec/manifest.js';
import { formatPlatform } from '../spec/platform.js';
import { GoPortError, goInvocations, goMainPackage, runGoBuild, type GoInvocation } from './go-build.js';
import { fileIdentity, type Context } from './context.js';
import type { Preset } from './preset.js';
import { finishMembers, type LayerPlan, type Member } from './plan.js';
import type { LoadedSpec } from './spec.js';

const run = promisify(execFile);

export const GO_APP_DIR = 'app';
export const GO_LAYER_NAMES = ['app'] as const;
/** ko's nonroot user (distroless's `nonroot`). */
export const GO_DEFAULT_USER = '65532:65532';
/** The binary layer's gzip: ko's level (gzip.BestSpeed) with zlib's larger hash table, in parallel members. */
export const GO_GZIP = { level: 1, memLevel: 9, memberBytes: 2 << 20 } as const;

export interface GoPresetOptions {
  /** Where the per-platform binaries are written (outside the context: the build cache). */
  outDir: string;
  /** The platforms to build for (all at once, as the preset is made). */
  platforms: Platform[];
  /** The `go` command (default: `go` on PATH). */
  go?: string;
}

export async function goPreset(loaded: LoadedSpec, ctx: Context, opts: GoPresetOptions): Promise<Preset> {
  const fail = (msg: string) => loaded.error(['preset'], msg);
  const settings = loaded.spec.go ?? {};
  const failAt = (field: string, msg: string) => loaded.error(['go', field], msg);
  for (const [i, l] of (loaded.spec.layers ?? []).entries()) {
    if ((GO_LAYER_NAMES as readonly string[]).includes(l.name))
      throw loaded.error(
        ['layers', i, 'name'],
        `"${l.name}" is the layer preset: go makes; give this layer another name`,
      );
  }
  const go = opts.go ?? 'go';
  // What a failed go run says, as this preset's error.
  const goFailure = (e: unknown, args: string[], platform?: string): Error => {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT')
      return fail(
        `preset go builds with the Go toolchain of this machine, and '${go}' is not on PATH; install Go (https://go.dev/dl) or build the binary yourself and list it in layers:`,
      );
    const said = (err.stderr ?? err.message).trim().split('\n').slice(0, 20).join('\n');
    return new _GoError(`go ${args[0]} failed${platform ? ` for ${platform}` : ''}:\n${said}`);
  };
  const goList = async (args: string[]) => {
    try {
      const env = { ...process.env, CGO_ENABLED: settings.cgo ? '1' : '0' };
      return (await run(go, args, { cwd: ctx.real, env, maxBuffer: 64 << 20 })).stdout;
    } catch (e) {
      throw goFailure(e, args);
    }
  };

  // go.mod must be the context's own: Go uses the nearest one above the working directory, which is the context.
  const [mod] = await ctx.select('go.mod');
  if (mod?.kind !== 'file')
    throw fail(`preset go needs go.mod at the root of the build context (${ctx.dir}); run go mod init`);

  const main = settings.main ?? '.';
  const mainPkg = goMainPackage(settings);
  const modulePath = _modulePath(await readFile(join(ctx.real, 'go.mod'), 'utf8'));
  let invocations: GoInvocation[];
  try {
    invocations = goInvocations(settings, opts.platforms, ctx.real, opts.outDir);
  } catch (e) {
    throw e instanceof GoPortError ? loaded.error(['platforms'], e.message) : e;
  }
  // Every platform's binary is built at once: the layer is built as soon as its binary is there. The CLI may have
  // started these very runs already, as soon as it read the spec (go-build.ts).
  const builds = new Map<string, Promise<string>>();
  for (const inv of invocations) {
    const built = mkdir(dirname(inv.out), { recursive: true })
      .then(() => runGoBuild(go, inv))
      .catch((e) => {
        throw goFailure(e, inv.args, inv.platform);
      })
      .then(async () => {
        if (await _isArchive(inv.out)) throw new _GoError(`${main} is not a main package`);
        return inv.out;
      });
    built.catch(() => {}); // awaited by layers()
    builds.set(inv.platform, built);
  }
  // What MAIN is, asked of `go list` only when a build failed or made no executable: its failure, or a package
  // that is not main, is go.main's fault; else the build's error stands.
  let diagnosis: Promise<Error | undefined> | undefined;
  const diagnose = () => {
    diagnosis ??= goList(['list', '-f', '{{.Name}}', mainPkg]).then(
      (name) =>
        name.trim() === 'main'
          ? undefined
          : failAt(
              'main',
              `${main} is package ${name.trim()}, not a main package; set go.main to the directory of package main`,
            ),
      (e) => (e instanceof _GoError ? failAt('main', e.message) : (e as Error)),
    );
    return diagnosis;
  };
  const importPath = modulePath && posix.join(modulePath, posix.normalize(main));
  if (!importPath && !settings.binary)
    throw fail(`cannot read the module path in ${join(ctx.dir, 'go.mod')}; fix its module line or set go.binary`);
  const binary = settings.binary ?? posix.basename(importPath!);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(binary))
    throw failAt('main', `the binary name '${binary}' (from ${importPath}) is not a plain file name; set go.binary`);
  const props = loaded.spec.properties ?? {};
  const dest = posix.join(GO_APP_DIR, binary);

  return {
    layerNames: GO_LAYER_NAMES,
    async layers(platform: Platform): Promise<LayerPlan[]> {
      const built = builds.get(formatPlatform(platform));
      if (!built) throw new Error(`preset go: ${formatPlatform(platform)} was not among the platforms it built`);
      let out: string;
      try {
        out = await built;
      } catch (e) {
        if (!(e instanceof _GoError)) throw e;
        // Never leave a go build running behind an error.
        await Promise.allSettled(builds.values());
        throw (await diagnose()) ?? fail(e.message);
      }
      const st = await stat(out);
      const member: Member = {
        path: dest,
        type: 'file',
        mode: 0o755,
        uid: props.uid ?? 0,
        gid: props.gid ?? 0,
        uname: props.user,
        gname: props.group,
        size: st.size,
        source: { abs: out, stats: fileIdentity(st) },
      };
      const byPath = new Map([[dest, member]]);
      const members = finishMembers(byPath, fail);
      return [{ name: 'app', members, origins: new Map([[dest, `go build ${main}`]]), gzip: GO_GZIP }];
    },
    config: _config(binary),
  };
}

function _config(binary: string): ImageConfigSpec {
  return { entrypoint: [`/${GO_APP_DIR}/${binary}`], workdir: `/${GO_APP_DIR}`, user: GO_DEFAULT_USER };
}

class _GoError extends Error {}

/** go.mod's module path (`module example.com/x`, maybe quoted, maybe followed by a comment); undefined if none. */
function _modulePath(gomod: string): string | undefined {
  const m = /^\s*module\s+(?:"([^"]+)"|`([^`]+)`|([^\s"`]+))\s*(?:\/\/.*)?$/m.exec(gomod);
  return m ? (m[1] ?? m[2] ?? m[3]) : undefined;
}

/** A Go package archive (what `go build -o` writes for a non-main package) starts with ar's magic. */
async function _isArchive(file: string): Promise<boolean> {
  const f = await open(file, 'r');
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await f.read(head, 0, 8, 0);
    return bytesRead === 8 && head.toString('latin1') === '!<arch>\n';
  } finally {
    await f.close();
  }
}
