// `berth build`: a reproducible image from berth.yaml, written to any number of outputs at once. The whole
// pipeline is builder/pipeline.ts; this file turns flags into its options and its events into lines.
import type { Artifact } from '../builder/artifact.js';
import type { Output, OutputKind, OutputReport } from '../builder/outputs.js';
import type { PipelineEvent } from '../builder/pipeline.js';
import { BuildOptionError, BuildSpecError } from '../builder/spec.js';
import { formatPlatform } from '../spec/platform.js';
import { parseReference } from '../spec/reference.js';
import { CLIError, defineCommand, EXIT, flag, UsageError } from './command.js';
import { dockerTag, platform, platforms, TRANSFER } from './flags.js';
import { VERSION } from './_version.js';
import { startProgress } from './progress.js';
import { formatBytes, formatElapsed } from '../spec/units.js';

type Modules = typeof import('../builder/outputs.js') & typeof import('../builder/pipeline.js');

const OUTPUTS = 'Outputs (repeatable, several at once)';

export default defineCommand({
  usage: '[-f berth.yaml] [outputs…] [flags]',
  description: `Builds the image berth.yaml describes — daemonless, rootless, bit-for-bit reproducible — and writes it to every
output given (none: build and print the digest). Layers are cached by content in ~/.cache/berth.`,
  flags: {
    push: flag.list({ arg: 'REF', section: OUTPUTS, help: 'push to a registry (existing blobs are skipped)' }),
    'oci-layout': flag.list({
      arg: 'DIR[:TAG]',
      complete: 'dir',
      section: OUTPUTS,
      help: 'write (or add to) an OCI image layout',
    }),
    'docker-archive': flag.list({
      arg: 'FILE',
      complete: 'file',
      section: OUTPUTS,
      help: 'write a tar for `docker load` (one platform; see --platform)',
    }),
    tag: flag.list({
      arg: 'NAME:TAG',
      section: OUTPUTS,
      help: "the name docker load gives the archive's image (default: the first --push REF)",
    }),
    file: flag.string({ short: 'f', arg: 'FILE', complete: 'file', default: 'berth.yaml', help: 'the spec' }),
    context: flag.string({ arg: 'DIR', complete: 'dir', help: "the build context (default: the spec's directory)" }),
    platform: platform('build only these platforms (os/arch[/variant])'),
    cache: flag.string({ arg: 'DIR', complete: 'dir', help: 'layer cache directory (default $XDG_CACHE_HOME/berth)' }),
    'no-cache': flag.boolean({ help: 'build every layer from scratch in a temp dir' }),
    'cache-max': flag.size({
      help: 'keep the cache under SIZE, least recently used first (default 8GiB; e.g. 500MiB)',
    }),
    'registry-cache': flag.boolean({
      help: 'reuse and record layers in the registry (--cache-from/--cache-to: the first --push REF)',
    }),
    'cache-from': flag.string({
      arg: 'REF',
      help: 'reuse layers recorded at REF (a cache tag or a cached image) instead of building them',
    }),
    'cache-to': flag.string({
      arg: 'REF',
      help: "record this build's layer keys at REF (a --push REF: as a referrer; else as a tag)",
    }),
    'check-reproducible': flag.boolean({ help: 'build twice in separate temp caches and fail if any digest differs' }),
    lock: flag.boolean({
      help: 'write berth.lock (beside the spec) pinning base: to the digest used and every Debian package',
    }),
    update: flag.boolean({
      help: "with --lock: move base: to its tag's newest digest (and Debian packages) and say what changed",
    }),
    'update-lock': flag.boolean({
      help: 'ignore berth.lock, resolve base: and Debian packages afresh, rewrite the lock and print what changed',
    }),
    'no-sbom': flag.boolean({ help: 'attach no SBOM (same as `sbom: false` in the spec)' }),
    sign: flag.string({
      arg: 'KEY',
      complete: 'file',
      help: 'sign every image and attach a SLSA v1 provenance per platform (private key PEM; COSIGN_PASSWORD)',
    }),
    ...TRANSFER,
  },
  notes: `berth.lock, when present and naming the spec's base, is always honoured: the base is fetched by that digest.

Each platform image gets an SPDX 2.3 SBOM (its files, the base image, the npm packages of the context's
package-lock.json), attached as an OCI referrer (artifactType application/spdx+json) to --push and --oci-layout.

--sign KEY signs the index and every platform image (cosign v3's sigstore bundle) and attaches to each platform
image a DSSE-signed SLSA v1 provenance (spec, context, base digest, berth version) and its SBOM as a signed
attestation, as referrers; the image digests are the same as without --sign. Check them with
\`berth verify --key KEY.pub\` or cosign v3 (\`verify\`, \`verify-attestation --type slsaprovenance1\` or
\`--type spdxjson\`).

Environment: SOURCE_DATE_EPOCH overrides the spec's epoch (seconds).`,
  examples: [
    'berth build --oci-layout out:v1',
    'berth build -f app/berth.yaml --push localhost:5000/app:v1 --docker-archive app.tar',
  ],
  async run({ flags: values, args: positionals }) {
    if (positionals.length)
      throw new UsageError(`unexpected argument "${positionals[0]}"; the spec is given with -f FILE`);
    if (values.sign && !values.push.length && !values['oci-layout'].length)
      throw new UsageError(
        '--sign needs --push or --oci-layout: signatures are referrers, which a docker-archive cannot hold',
      );
    const cacheMax = values['cache-max'];
    if (values.update && !values.lock && !values['update-lock'])
      throw new UsageError('--update refreshes berth.lock: give it with --lock (berth build --lock --update)');
    const registryCache = values['registry-cache'];
    if (registryCache && !values.push.length && !(values['cache-from'] && values['cache-to']))
      throw new UsageError(
        '--registry-cache uses the first --push REF: add --push REF, or name --cache-from and --cache-to',
      );
    const cacheFrom = values['cache-from'] ?? (registryCache ? values.push[0] : undefined);
    const cacheTo = values['cache-to'] ?? (registryCache ? values.push[0] : undefined);
    const file = values.file;
    const only = platforms(values.platform);
    const cacheDir = values['no-cache'] ? false : values.cache;
    const checkReproducible = values['check-reproducible'];
    const [outputsModule, pipeline, { hostPlatform, makeClient, printJson }] = await Promise.all([
      import('../builder/outputs.js'),
      import('../builder/pipeline.js'),
      import('./_client.js'),
    ]);
    const { dockerArchiveOutput, ociLayoutOutput, registryOutput } = outputsModule;
    const client = makeClient(values);
    // Stages (layers built or reused, compressing, pushing) and the push's blobs share one display (progress.ts).
    const progress = startProgress('build', values);
    const started = Date.now();
    const cache: { from?: Record<string, unknown>; to?: Record<string, unknown> } = {};
    let lockReport: { path: string; changes: string[]; base?: Record<string, unknown> } | undefined;
    try {
      const pushes = values.push.map((ref) => registryOutput(ref, client, { progress })); // checks each REF before building
      const tags = values.tag.length
        ? values.tag
        : values.push.length
          ? [dockerTag(parseReference(values.push[0]))]
          : [];
      const outputs: Output[] = [
        ...values['oci-layout'].map((dir) => ociLayoutOutput(dir)),
        // A docker-archive of a multi-platform build holds this machine's platform unless --platform picks one.
        ...values['docker-archive'].map((f) => dockerArchiveOutput(f, { tags, platform: only?.[0] ?? hostPlatform() })),
        ...pushes,
      ];
      const {
        build: result,
        sboms,
        attestations,
        outputs: reports,
      } = await pipeline.runBuild({
        file,
        context: values.context,
        platforms: only,
        sourceDateEpoch: process.env.SOURCE_DATE_EPOCH,
        cacheDir,
        cacheMaxBytes: cacheMax,
        client,
        outputs,
        lock: values['update-lock'] || values.update ? 'update' : values.lock ? 'write' : 'honour',
        cacheFrom,
        cacheTo,
        sbom: !values['no-sbom'],
        sign: values.sign ? await _signer(values.sign) : undefined,
        toolVersion: VERSION,
        checkReproducible,
        onEvent: (e) => {
          if (e.type === 'lock')
            lockReport = {
              path: e.path,
              changes: e.changes,
              ...(e.base ? { base: { ...e.base, changed: e.base.from !== e.base.to } } : {}),
            };
          if (e.type === 'cache-from')
            cache.from = { ref: e.ref, entries: e.entries, digest: e.digest, error: e.error };
          if (e.type === 'cache-to')
            cache.to = { ref: e.report.ref, digest: e.report.digest, mode: e.report.mode, written: e.report.written };
          progress.stage(`[${formatElapsed(Date.now() - started)}] ${_describe(e)}`);
        },
      });
      if (values.json) {
        printJson({
          digest: result.root.digest,
          mediaType: result.root.mediaType,
          images: result.images.map((i) => ({
            platform: formatPlatform(i.platform),
            digest: i.manifest.digest,
            layers: i.layers.map((l) => ({
              name: l.name,
              digest: l.layer.descriptor.digest,
              diffId: l.layer.diffId,
              size: l.layer.descriptor.size,
              cached: l.cached,
              ...(l.remote ? { registryCache: l.remote } : {}),
              ...(l.segmentsReused ? { segments: _segmentsJson(l.segmentsReused) } : {}),
            })),
            ...(_sbomOf(sboms, i.manifest.digest) ? { sbom: _sbomOf(sboms, i.manifest.digest) } : {}),
            ...(attestations.length ? { referrers: _referrersOf(attestations, i.manifest.digest) } : {}),
          })),
          outputs: reports.map(_outputJson),
          ...(cache.from ? { cacheFrom: cache.from } : {}),
          ...(cache.to ? { cacheTo: cache.to } : {}),
          ...(lockReport ? { lock: lockReport } : {}),
        });
      } else {
        console.log(result.root.digest);
      }
    } catch (e) {
      throw _cliError(e, { ...outputsModule, ...pipeline });
    } finally {
      progress.done();
    }
  },
});

const FLAG: Record<OutputKind, string> = {
  'oci-layout': '--oci-layout',
  'docker-archive': '--docker-archive',
  registry: '--push',
};

/** builder/ says what is wrong in its own terms; here it is said in flags. (The error classes of the modules run() loads.) */
function _cliError(
  e: unknown,
  { NotReproducibleError, OutputError }: Pick<Modules, 'NotReproducibleError' | 'OutputError'>,
): unknown {
  if (e instanceof BuildSpecError) return new CLIError(e.message);
  if (e instanceof NotReproducibleError) return new CLIError(e.message, EXIT.verification);
  if (e instanceof OutputError) return new CLIError(`${FLAG[e.output.kind]} ${e.output.target}: ${e.detail}`);
  if (e instanceof BuildOptionError) {
    if (e.option === 'platforms') return new UsageError(`--platform ${e.message}`);
    if (e.option === 'lock') return new CLIError(`${e.message} (--lock --update)`);
    if (e.option === 'cacheFrom') return new CLIError(`--cache-from ${e.message}`);
    if (e.option === 'cacheTo') return new CLIError(`--cache-to: ${e.message}`);
    return new CLIError(e.message);
  }
  return e;
}

/** The stderr line for a pipeline event. */
function _describe(e: PipelineEvent): string {
  switch (e.type) {
    case 'layer-start':
      return `${formatPlatform(e.platform)} layer ${e.name}: building (tar + ${e.compression}, unless cached)`;
    case 'layer':
      return `${formatPlatform(e.platform)} layer ${e.layer.name}: ${e.layer.layer.descriptor.digest} ${e.layer.remote ? `reused from registry cache ${e.layer.remote}` : e.layer.cached ? 'reused from cache' : `built, ${formatBytes(e.layer.layer.descriptor.size)} compressed`}`;
    case 'output-start':
      return `${e.output.kind === 'registry' ? 'pushing to' : 'writing'} ${FLAG[e.output.kind]} ${e.output.target}`;
    case 'reproducible':
      return `reproducible: both builds gave ${e.digest}`;
    case 'lock':
      return `wrote ${e.path}${_baseChange(e.base)}${e.changes.length ? `; Debian packages changed:\n${e.changes.map((c) => `  ${c}`).join('\n')}` : ''}`;
    case 'cache-from':
      if (e.error) return `registry cache ${e.ref}: not used (${e.error})`;
      return e.digest
        ? `registry cache ${e.ref}: ${e.entries} layers recorded (${e.digest})`
        : `registry cache ${e.ref}: none yet`;
    case 'cache-to': {
      const r = e.report;
      const how = r.mode === 'referrer' ? 'attached to the image' : 'tagged';
      return `registry cache ${r.ref}: ${r.written ? 'recorded' : 'already recorded'} (${how}, ${r.digest})`;
    }
    case 'sbom':
      return `SBOM ${e.artifact.manifest.digest} refers to ${e.artifact.subject.digest}`;
    case 'attestation':
      return `${e.kind} ${e.artifact.manifest.digest} refers to ${e.artifact.subject.digest}`;
    case 'pruned':
      return `cache over ${(e.maxBytes / 1024 ** 2).toFixed(0)} MiB: removed ${e.removed} least recently used files (${(e.freedBytes / 1024 ** 2).toFixed(0)} MiB)`;
    case 'output': {
      const { output, copy } = e.report;
      if (output.kind === 'oci-layout') return `wrote OCI layout ${output.target}`;
      if (output.kind === 'docker-archive') return `wrote docker-archive ${output.target}`;
      return `pushed ${output.target}@${e.report.digest} (${copy!.blobs.uploaded} uploaded, ${copy!.blobs.existed} existed, ${copy!.blobs.mounted} mounted)`;
    }
  }
}

/** What --lock did to the base pin, for the lock's stage line. */
function _baseChange(base: { ref: string; from?: string; to: string } | undefined): string {
  if (!base) return '';
  if (!base.from) return `: ${base.ref} pinned to ${base.to}`;
  if (base.from === base.to) return `: ${base.ref} unchanged (${base.to})`;
  return `: ${base.ref} updated ${base.from} → ${base.to}`;
}

/** An output's entry in --json (its flag's name, its argument, what was written). */
/**
 * A built layer's segments: how many it has, how many were compressed here, how many were reused from its previous
 * blob and, of those, how many were fetched by Range from the registry cache.
 */
function _segmentsJson(s: { reused: number; total: number; fetched: number }) {
  return { total: s.total, compressed: s.total - s.reused, reused: s.reused, fetched: s.fetched };
}

function _outputJson(r: OutputReport): Record<string, unknown> {
  if (r.output.kind === 'oci-layout') return { ociLayout: r.output.target };
  if (r.output.kind === 'docker-archive') return { dockerArchive: r.output.target, tags: r.tags };
  return { push: r.output.target, digest: r.digest, blobs: r.copy!.blobs };
}

/** The signature, provenance and SBOM attestation artifacts that refer to `image`. */
function _referrersOf(list: Artifact[], image: string): string[] {
  return list.filter((a) => a.subject.digest === image).map((a) => a.manifest.digest);
}

/** --sign KEY: the private key (cosign's encrypted PEM with COSIGN_PASSWORD, or PKCS#8) and its public key. */
async function _signer(file: string) {
  const { privateKeyFile } = await import('./_signing.js');
  const { createPublicKey } = await import('node:crypto');
  const privateKey = privateKeyFile(file);
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/** The digest of the SBOM artifact that refers to `image`, if one was made. */
function _sbomOf(sboms: Artifact[], image: string): string | undefined {
  return sboms.find((a) => a.subject.digest === image)?.manifest.digest;
}
