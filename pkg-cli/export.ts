// `berth export REF`: one platform image's filesystem flattened into a single tar (whiteouts applied, the last
// layer wins), like `crane export` / `docker export`, streamed to stdout or a file.
import { exportImage } from '../client/export.js';
import { defineCommand } from './command.js';
import { makeClient, TRANSPORT_HELP } from './_client.js';
import { onePlatform, output, platforms, REMOTE } from './flags.js';
import { openSource, selectImage, toOutput, userError } from './_verbs.js';

export default defineCommand({
  usage: 'REF [--platform P] [-o FILE]',
  description:
    "Writes the filesystem of REF's image as one tar: every layer applied in order, whiteouts honoured, no whiteout\nfiles. For an index, the image for --platform, else for this machine's platform. Layers stream through and are\nverified against their digests; with -o the file appears only when complete.",
  flags: { platform: onePlatform, output, ...REMOTE },
  args: ['REF'],
  notes: TRANSPORT_HELP,
  examples: [
    'berth export localhost:5000/app:v1 -o rootfs.tar',
    'berth export --platform linux/arm64 localhost:5000/app:v1 | tar -t',
    'berth export oci:./layout:v1 -o rootfs.tar',
  ],
  async run({ flags, args }) {
    const src = await openSource(makeClient(flags), args[0], 'REF', 'export');
    try {
      const img = await selectImage(src, platforms(flags.platform ? [flags.platform] : undefined)?.[0]).catch(
        userError,
      );
      await toOutput(flags.output, (out) => exportImage(img, out)).catch(userError);
    } finally {
      await src.close();
    }
  },
});
