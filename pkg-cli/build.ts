// `berth build`: a reproducible image from berth.yaml, written to any number of outputs at once.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { remoteSource } from '../client/copy.js';
import { OciLayout, parseLayoutArg } from '../client/layout.js';
import type { Artifact } from '../builder/artifact.js';
import { build, defaultCacheDir, type BuildOptions, type BuildResult } from '../builder/build.js';
import { pushImage, writeArchive, writeLayout } from '../builder/outputs.js';
import { BuildSpecError, loadSpec } from '../builder/spec.js';
import { lockPath, lockedBase, readLock, writeLock } from '../builder/lock.js';
import { buildSboms } from '../builder/sbom.js';
import { DEFAULT_CACHE_MAX_BYTES, pruneCache } from '../builder/cache.js';
import { formatPlatform } from '../spec/platform.js';
import { formatReference, parseReference } from '../spec/reference.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, hostPlatform, makeClient, platforms, printJson } from './_client.js';
import { dockerTag } from './pull.js';
import { VERSION } from './version.js';

const HELP = `Usage: berth build [-f berth.yaml] [outputs…] [flags]

Builds the image berth.yaml describes — daemonless, rootless, bit-for-bit reproducible — and writes it to every
output given (none: build and print the digest). Layers are cached by content in ~/.cache/berth.

Outputs (repeatable, several at once):
  --push REF                 push to a registry (existing blobs are skipped)
  --oci-layout DIR[:TAG]     write (or add to) an OCI image layout
  --docker-archive FILE      write a tar for \`docker load\` (one platform; see --platform)
  --tag NAME:TAG             the name docker load gives the archive's image (default: the first --push REF)

Flags:
  -f, --file FILE            the spec (default ./berth.yaml)
  --context DIR              the build context (default: the spec's directory)
  --platform P               build only these platforms (os/arch[/variant]); repeatable
  --cache DIR                layer cache directory (default $XDG_CACHE_HOME/berth)
  --no-cache                 build every layer from scratch in a temp dir
  --cache-max SIZE           keep the cache under SIZE, least recently used first (default 8GiB; e.g. 500MiB)
  --check-reproducible       build twice in separate temp caches and fail if any digest differs
  --lock                     write berth.lock (beside the spec) pinning base: to the digest used
  --update-lock              ignore berth.lock, resolve base: afresh and rewrite the lock
  --no-sbom                  attach no SBOM (same as \`sbom: false\` in the spec)
${COMMON_HELP}

berth.lock, when present and naming the spec's base, is always honoured: the base is fetched by that digest.

Each platform image gets an SPDX 2.3 SBOM (its files, the base image, the npm packages of the context's
package-lock.json), attached as an OCI referrer (artifactType application/spdx+json) to --push and --oci-layout.

Environment: SOURCE_DATE_EPOCH overrides the spec's epoch (seconds).

Examples:
  berth build --oci-layout out:v1
  berth build -f app/berth.yaml --push localhost:5000/app:v1 --docker-archive app.tar`;

const command: Command = {
  name: 'build',
  summary: 'build a reproducible image from berth.yaml (daemonless, rootless)',
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseFlags('build', argv, {
      ...COMMON_FLAGS,
      file: { type: 'string', short: 'f' },
      context: { type: 'string' },
      push: { type: 'string', multiple: true },
      'oci-layout': { type: 'string', multiple: true },
      'docker-archive': { type: 'string', multiple: true },
      tag: { type: 'string', multiple: true },
      platform: { type: 'string', multiple: true },
      cache: { type: 'string' },
      'no-cache': { type: 'boolean' },
      'cache-max': { type: 'string' },
      'check-reproducible': { type: 'boolean' },
      lock: { type: 'boolean' },
      'update-lock': { type: 'boolean' },
      'no-sbom': { type: 'boolean' },
    });
    if (positionals.length) throw new CLIError(`unexpected argument "${positionals[0]}"; the spec is given with -f FILE`);
    for (const p of values.push ?? []) {
      try {
        if (parseReference(p).digest) throw new Error('push to a tag, not a digest');
      } catch (e) {
        throw new CLIError(`--push ${p}: ${(e as Error).message}`);
      }
    }
    const cacheMax = values['cache-max'] === undefined ? DEFAULT_CACHE_MAX_BYTES : parseSize(values['cache-max'], '--cache-max');
    const client = makeClient(values);
    const file = values.file ?? 'berth.yaml';
    const lock = values['update-lock'] ? undefined : await readLock(file).catch((e: Error) => {
      throw new CLIError(e.message);
    });
    const base: BuildOptions = {
      file,
      baseDigest: lock ? lockedBase(lock, await _specBase(file)) : undefined,
      context: values.context,
      platforms: platforms(values.platform),
      sourceDateEpoch: process.env.SOURCE_DATE_EPOCH,
      cacheDir: values['no-cache'] ? false : values.cache,
      resolveBase: async (ref) => {
        if (ref.startsWith('oci-layout:')) {
          const { dir, tag } = parseLayoutArg(ref.slice('oci-layout:'.length));
          const layout = await OciLayout.open(dir);
          return { source: layout, reference: tag ?? (await layout.find()).digest, name: ref };
        }
        const r = parseReference(ref);
        return { source: remoteSource(client.repository(r)), reference: r.digest ?? r.tag ?? 'latest', name: formatReference({ ...r, digest: undefined }) };
      },
    };
    const log = (s: string) => (values.json ? undefined : console.error(s));
    let result: BuildResult;
    try {
      if (values['check-reproducible']) {
        result = await _checkReproducible(base, log);
      } else {
        result = await build({
          ...base,
          onLayer: (p, l) => log(`${formatPlatform(p)} layer ${l.name}: ${l.layer.descriptor.digest}${l.cached ? ' (cached)' : ''}`),
        });
      }
      if (values.lock || values['update-lock']) {
        await writeLock(file, { version: 1, ...(result.base && result.spec.spec.base ? { base: { ref: result.spec.spec.base, digest: result.base.digest } } : {}) });
        log(`wrote ${lockPath(file)}`);
      }
      // SBOMs travel as referrers, so only the registry and layout outputs carry them (a docker-archive cannot).
      const wantSbom = !values['no-sbom'] && result.spec.spec.sbom !== false && (values.push?.length || values['oci-layout']?.length);
      const sboms = !wantSbom ? [] : await buildSboms(result, {
        toolVersion: VERSION,
        contextDir: values.context ?? dirname(resolve(file)),
        cacheDir: values['no-cache'] ? undefined : (values.cache ?? defaultCacheDir()),
      });
      for (const a of sboms) log(`SBOM ${a.manifest.digest} refers to ${a.subject.digest}`);
      const outputs: Record<string, unknown>[] = [];
      for (const dir of values['oci-layout'] ?? []) {
        await writeLayout(result, dir, sboms);
        outputs.push({ ociLayout: dir });
        log(`wrote OCI layout ${dir}`);
      }
      for (const file of values['docker-archive'] ?? []) {
        const tags = values.tag ?? (values.push?.length ? [dockerTag(parseReference(values.push[0]))] : []);
        const want = platforms(values.platform)?.[0] ?? (result.images.length > 1 ? hostPlatform() : undefined);
        await writeArchive(result, file, tags, want);
        outputs.push({ dockerArchive: file, tags });
        log(`wrote docker-archive ${file}`);
      }
      for (const ref of values.push ?? []) {
        const r = await pushImage(result, ref, client, undefined, sboms);
        outputs.push({ push: ref, digest: r.digest, blobs: r.blobs });
        log(`pushed ${ref}@${r.digest} (${r.blobs.uploaded} uploaded, ${r.blobs.existed} existed, ${r.blobs.mounted} mounted)`);
      }
      if (!values['no-cache']) {
        // Everything this build's outputs came from stays; older layers go first once the cache is over its cap.
        const keep = new Set(result.images.flatMap((i) => i.layers.map((l) => result.blobs.path(l.layer.descriptor.digest))));
        const pruned = await pruneCache(values.cache ?? defaultCacheDir(), cacheMax, keep);
        if (pruned.removed) log(`cache over ${(cacheMax / 1024 ** 2).toFixed(0)} MiB: removed ${pruned.removed} least recently used files (${(pruned.freedBytes / 1024 ** 2).toFixed(0)} MiB)`);
      }
      if (values.json) {
        printJson({
          digest: result.root.digest,
          mediaType: result.root.mediaType,
          images: result.images.map((i) => ({
            platform: formatPlatform(i.platform),
            digest: i.manifest.digest,
            layers: i.layers.map((l) => ({ name: l.name, digest: l.layer.descriptor.digest, diffId: l.layer.diffId, size: l.layer.descriptor.size, cached: l.cached })),
            ...(_sbomOf(sboms, i.manifest.digest) ? { sbom: _sbomOf(sboms, i.manifest.digest) } : {}),
          })),
          outputs,
        });
      } else {
        console.log(result.root.digest);
      }
    } catch (e) {
      if (e instanceof BuildSpecError) throw new CLIError(e.message);
      throw e;
    }
  },
};

/** `500MiB`, `8GiB`, `8G` (binary), `1.5GB` (decimal), `1000000` (bytes) → bytes. */
export function parseSize(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)$/i.exec(text.trim());
  if (!m || (m[3] && !m[2])) throw new CLIError(`${flag} ${text}: not a size; write e.g. 500MiB, 8GiB or a number of bytes`);
  const power = ' kmgt'.indexOf(m[2].toLowerCase() || ' ');
  const decimal = m[4] !== '' && m[3] === '' && m[2] !== '';
  return Math.floor(Number(m[1]) * (decimal ? 1000 : 1024) ** power);
}

/** The digest of the SBOM artifact that refers to `image`, if one was made. */
function _sbomOf(sboms: Artifact[], image: string): string | undefined {
  return sboms.find((a) => a.subject.digest === image)?.manifest.digest;
}

/** The spec's base (for the lock lookup); errors surface later, from build(), with file:line. */
async function _specBase(file: string): Promise<string | undefined> {
  try {
    return (await loadSpec(file)).spec.base;
  } catch {
    return undefined;
  }
}

/** Two builds with fresh caches in separate temp dirs; any differing digest is a failure that names it. */
async function _checkReproducible(opts: BuildOptions, log: (s: string) => void): Promise<BuildResult> {
  const dirs = [await mkdtemp(join(tmpdir(), 'berth-repro-a-')), await mkdtemp(join(tmpdir(), 'berth-repro-b-'))];
  try {
    const a = await build({ ...opts, cacheDir: dirs[0] });
    const b = await build({ ...opts, cacheDir: dirs[1] });
    const diffs: string[] = [];
    if (a.root.digest !== b.root.digest) diffs.push(`root ${a.root.digest} ≠ ${b.root.digest}`);
    a.images.forEach((ia, i) => {
      const ib = b.images[i];
      ia.layers.forEach((l, j) => {
        const m = ib.layers[j];
        if (l.layer.descriptor.digest !== m.layer.descriptor.digest) diffs.push(`${formatPlatform(ia.platform)} layer ${l.name}: ${l.layer.descriptor.digest} ≠ ${m.layer.descriptor.digest}`);
      });
    });
    if (diffs.length) throw new CLIError(`not reproducible: ${diffs.join('; ')}`);
    log(`reproducible: both builds gave ${a.root.digest}`);
    // Outputs are written from a third, normal build (cached), so the temp dirs can go.
    return await build(opts);
  } finally {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}

export default command;
