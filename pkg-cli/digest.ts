// `berth digest REF`: the manifest digest a reference resolves to (HEAD; GET when the registry's HEAD is thin).
import type { ImageIndex } from '../spec/manifest.js';
import { isIndexType } from '../spec/media-types.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { formatReference } from '../spec/reference.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { openImage } from '../client/transports.js';
import {
  COMMON_FLAGS,
  COMMON_HELP,
  imageRef,
  makeClient,
  platforms,
  positionals,
  printJson,
  TRANSPORT_HELP,
} from './_client.js';

const HELP = `Usage: berth digest REF [--platform P] [--json]

Prints the digest REF resolves to (for an index, the index's digest unless --platform picks an image).

Flags:
  --platform P   the digest of this platform's image inside an index
${COMMON_HELP}

${TRANSPORT_HELP}

Examples:
  berth digest localhost:5000/app:v1
  berth digest --platform linux/amd64 localhost:5000/app:v1`;

const command: Command = {
  name: 'digest',
  summary: 'print the digest a reference resolves to',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('digest', argv, { ...COMMON_FLAGS, platform: { type: 'string' } });
    const ir = imageRef(positionals(pos, 1, 'berth digest REF')[0], 'REF', 'digest');
    const client = makeClient(values);
    const name = ir.ref ? formatReference(ir.ref) : ir.input;
    const wanted = platforms(values.platform ? [values.platform] : undefined)?.[0];
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
          );
        digest = hit.digest;
        mediaType = hit.mediaType;
      }
    }
    if (values.json) printJson({ reference: name, digest, mediaType });
    else console.log(digest);
  },
};
export default command;
