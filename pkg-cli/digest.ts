// `berth digest REF`: the manifest digest a reference resolves to (HEAD; GET when the registry's HEAD is thin).
import type { ImageIndex } from '../spec/manifest.js';
import { isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { formatReference } from '../spec/reference.js';
import { CLIError, defineCommand, EXIT, flag } from './command.js';
import { openImage } from '../client/transports.js';
import { imageRef, makeClient, printJson, TRANSPORT_HELP } from './_client.js';
import { platforms, REMOTE } from './flags.js';

export default defineCommand({
  usage: 'REF [--platform P] [--json]',
  description: "Prints the digest REF resolves to (for an index, the index's digest unless --platform picks an image).",
  flags: {
    platform: flag.string({
      arg: 'P',
      help: "the digest of this platform's image inside an index (os/arch[/variant])",
    }),
    ...REMOTE,
  },
  args: ['REF'],
  notes: TRANSPORT_HELP,
  examples: ['berth digest localhost:5000/app:v1', 'berth digest --platform linux/amd64 localhost:5000/app:v1'],
  async run({ flags, args }) {
    const ir = imageRef(args[0], 'REF', 'digest');
    const client = makeClient(flags);
    const name = ir.ref ? formatReference(ir.ref) : ir.input;
    const wanted = platforms(flags.platform ? [flags.platform] : undefined)?.[0];
    let digest: string;
    let mediaType: string;
    // A registry answers a HEAD; other media are read.
    const head =
      wanted || !ir.ref
        ? undefined
        : await client.repository(ir.ref).headManifest(ir.ref.digest ?? ir.ref.tag ?? 'latest');
    if (head) {
      digest = head.digest;
      mediaType = head.mediaType;
    } else {
      const { source, reference, close } = await openImage(ir, client);
      const m = await source.manifest(reference).finally(close);
      digest = m.digest;
      mediaType = m.mediaType;
      if (wanted && isIndexType(m.mediaType)) {
        const index = JSON.parse(m.bytes.toString('utf8')) as ImageIndex;
        const hit = index.manifests.find((d) => platformMatches(d.platform, wanted));
        if (!hit)
          throw new CLIError(
            `${name} has no image for ${formatPlatform(wanted)}; available: ${index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : '?')).join(', ')}`,
            EXIT.notFound,
          );
        digest = hit.digest;
        mediaType = hit.mediaType;
      }
    }
    if (flags.json) printJson({ reference: name, digest, mediaType });
    else console.log(digest);
  },
});
