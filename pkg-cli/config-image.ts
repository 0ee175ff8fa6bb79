// `berth config REF`: an image's config blob exactly as stored, verified, to stdout or a file.
import { defineCommand } from './command.js';
import { makeClient, TRANSPORT_HELP } from './_client.js';
import { onePlatform, output, platforms, REMOTE } from './flags.js';
import { openSource, selectImage, toOutput, userError } from './_verbs.js';

export default defineCommand({
  usage: 'REF [--platform P] [-o FILE]',
  description:
    "Prints the config JSON of REF's image byte for byte, after checking it against its digest. For an index, the\nimage for --platform, else for this machine's platform.",
  flags: { platform: onePlatform, output, ...REMOTE },
  args: ['REF'],
  notes: TRANSPORT_HELP,
  examples: [
    'berth config localhost:5000/app:v1 | jq .config.Env',
    'berth config --platform linux/arm64 localhost:5000/app:v1',
    'berth config docker-archive:app.tar',
  ],
  async run({ flags, args }) {
    const src = await openSource(makeClient(flags), args[0], 'REF', 'config');
    try {
      const img = await selectImage(src, platforms(flags.platform ? [flags.platform] : undefined)?.[0]).catch(
        userError,
      );
      await toOutput(flags.output, async (out) => {
        await new Promise<void>((res, rej) => out.end(img.configBytes, () => res()).once('error', rej));
      });
    } finally {
      await src.close();
    }
  },
});
