// `berth inspect REF`: what a reference points at — the manifest (raw or summarised), a platform's image, or its config.
import type { ImageSource } from '../client/copy.js';
import { openImage } from '../client/transports.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../spec/manifest.js';
import { isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { formatReference } from '../spec/reference.js';
import { formatBytes } from '../spec/units.js';
import { CLIError, defineCommand, EXIT, flag, UsageError } from './command.js';
import { imageRef, makeClient, printJson, TRANSPORT_HELP } from './_client.js';
import { platforms, REMOTE } from './flags.js';

export default defineCommand({
  usage: 'REF [--platform P] [--raw | --config] [--json]',
  description: 'Shows what REF points at: for an index its platforms, for an image its config, layers and total size.',
  flags: {
    platform: flag.string({ arg: 'P', help: "descend from an index into this platform's image (os/arch[/variant])" }),
    raw: flag.boolean({ help: 'print the manifest bytes exactly as stored (what the digest covers)' }),
    config: flag.boolean({
      help: "print the image's config JSON (needs --platform for an index, else the first linux image)",
    }),
    ...REMOTE,
  },
  args: ['REF'],
  notes: TRANSPORT_HELP,
  examples: [
    'berth inspect localhost:5000/app:v1',
    'berth inspect --raw localhost:5000/app@sha256:…',
    'berth inspect --platform linux/arm64 --config localhost:5000/app:v1 --json',
    'berth inspect oci:./layout:1.0',
  ],
  async run({ flags: values, args }) {
    const ir = imageRef(args[0], 'REF', 'inspect');
    if (values.raw && values.config) throw new UsageError('--raw and --config are exclusive; pick one');
    const { source, reference, close } = await openImage(ir, makeClient(values));
    try {
      await _inspect(values, ir.ref ? formatReference(ir.ref) : ir.input, source, reference);
    } finally {
      await close();
    }
  },
});

async function _inspect(
  values: { platform?: string; raw?: boolean; config?: boolean; json?: boolean },
  name: string,
  source: ImageSource,
  reference: string,
): Promise<void> {
  let m = await source.manifest(reference);
  const wanted = platforms(values.platform ? [values.platform] : undefined)?.[0];
  if (isIndexType(m.mediaType) && (wanted || values.config)) {
    const index = JSON.parse(m.bytes.toString('utf8')) as ImageIndex;
    const hit = wanted
      ? index.manifests.find((d) => platformMatches(d.platform, wanted))
      : index.manifests.find((d) => d.platform?.os === 'linux');
    if (!hit) {
      const have = index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : '?')).join(', ');
      throw new CLIError(
        `${name} has no image for ${wanted ? formatPlatform(wanted) : 'linux'}; available: ${have} — pick one with --platform`,
        EXIT.notFound,
      );
    }
    m = await source.manifest(hit.digest);
  }
  if (values.raw) {
    process.stdout.write(m.bytes);
    if (!values.json) process.stdout.write('\n');
    return;
  }
  const doc = JSON.parse(m.bytes.toString('utf8'));
  if (values.config) {
    if (isIndexType(m.mediaType)) throw new UsageError('an index has no config; pass --platform');
    const cfg = await _readSmall(source, (doc as ImageManifest).config);
    process.stdout.write(
      values.json
        ? `${cfg.toString('utf8').trim()}\n`
        : `${JSON.stringify(JSON.parse(cfg.toString('utf8')), null, 2)}\n`,
    );
    return;
  }
  const summary: Record<string, unknown> = {
    reference: name,
    digest: m.digest,
    mediaType: m.mediaType,
    size: m.bytes.length,
  };
  if (isIndexType(m.mediaType)) {
    summary.manifests = (doc as ImageIndex).manifests.map((d) => ({
      digest: d.digest,
      mediaType: d.mediaType,
      size: d.size,
      platform: d.platform ? formatPlatform(d.platform) : undefined,
      artifactType: d.artifactType,
    }));
  } else {
    const im = doc as ImageManifest;
    summary.artifactType = im.artifactType;
    summary.config = im.config;
    summary.layers = im.layers;
    summary.totalSize = im.layers.reduce((n, l) => n + l.size, im.config.size);
    if (im.subject) summary.subject = im.subject.digest;
  }
  if (values.json) return printJson(summary);
  console.log(`${summary.reference}\n  digest     ${m.digest}\n  mediaType  ${m.mediaType}`);
  if (Array.isArray(summary.manifests)) {
    for (const d of summary.manifests as any[])
      console.log(`  ${(d.platform ?? d.artifactType ?? '?').padEnd(20)} ${d.digest}`);
  } else {
    const im = doc as ImageManifest;
    console.log(`  config     ${im.config.digest} (${im.config.mediaType})`);
    for (const l of im.layers) console.log(`  layer      ${l.digest} ${formatBytes(l.size)}`);
    console.log(`  total      ${formatBytes(summary.totalSize as number)}`);
  }
}

/** A config blob, verified, read into memory (refused when absurdly large). */
async function _readSmall(source: ImageSource, desc: Descriptor): Promise<Buffer> {
  if (desc.size > 64 << 20) throw new CLIError(`config ${desc.digest} is ${desc.size} bytes; refusing to read it`);
  const parts: Buffer[] = [];
  for await (const c of await source.blob(desc, 0)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
