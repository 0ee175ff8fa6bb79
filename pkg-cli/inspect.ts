// `berth inspect REF`: what a reference points at — the manifest (raw or summarised), a platform's image, or its config.
import type { ImageIndex, ImageManifest } from '../spec/manifest.js';
import { isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { formatReference } from '../spec/reference.js';
import { formatBytes } from '../spec/units.js';
import { CLIError, defineCommand, EXIT, flag, UsageError } from './command.js';
import { makeClient, printJson, refId } from './_client.js';
import { platforms, REMOTE, ref } from './flags.js';

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
  examples: [
    'berth inspect localhost:5000/app:v1',
    'berth inspect --raw localhost:5000/app@sha256:…',
    'berth inspect --platform linux/arm64 --config localhost:5000/app:v1 --json',
  ],
  async run({ flags: values, args }) {
    const r = ref(args[0], 'REF', 'inspect');
    if (values.raw && values.config) throw new UsageError('--raw and --config are exclusive; pick one');
    const repo = makeClient(values).repository(r);
    let m = await repo.getManifest(refId(r));
    const wanted = platforms(values.platform ? [values.platform] : undefined)?.[0];
    if (isIndexType(m.mediaType) && (wanted || values.config)) {
      const index = JSON.parse(m.bytes.toString('utf8')) as ImageIndex;
      const hit = wanted
        ? index.manifests.find((d) => platformMatches(d.platform, wanted))
        : index.manifests.find((d) => d.platform?.os === 'linux');
      if (!hit) {
        const have = index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : '?')).join(', ');
        throw new CLIError(
          `${formatReference(r)} has no image for ${wanted ? formatPlatform(wanted) : 'linux'}; available: ${have} — pick one with --platform`,
          EXIT.notFound,
        );
      }
      m = await repo.getManifest(hit.digest);
    }
    if (values.raw) {
      process.stdout.write(m.bytes);
      if (!values.json) process.stdout.write('\n');
      return;
    }
    const doc = JSON.parse(m.bytes.toString('utf8'));
    if (values.config) {
      if (isIndexType(m.mediaType)) throw new UsageError('an index has no config; pass --platform');
      const cfg = await repo.getBlobBytes((doc as ImageManifest).config);
      process.stdout.write(
        values.json
          ? `${cfg.toString('utf8').trim()}\n`
          : `${JSON.stringify(JSON.parse(cfg.toString('utf8')), null, 2)}\n`,
      );
      return;
    }
    const summary: Record<string, unknown> = {
      reference: formatReference(r),
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
  },
});
