// `berth manifest REF`: the manifest bytes exactly as stored (what the digest covers), verified, to stdout or a file.
import { defineCommand, flag } from './command.js';
import { makeClient, TRANSPORT_HELP } from './_client.js';
import { platforms, REMOTE, output } from './flags.js';
import { openSource, selectImage, toOutput, userError } from './_verbs.js';

export default defineCommand({
  usage: 'REF [--platform P] [-o FILE]',
  description:
    "Prints REF's manifest (an image manifest or an index) byte for byte, after checking it against its digest.",
  flags: {
    platform: flag.string({ arg: 'P', help: "from an index, print this platform's image manifest instead" }),
    output,
    ...REMOTE,
  },
  args: ['REF'],
  notes: TRANSPORT_HELP,
  examples: [
    'berth manifest localhost:5000/app:v1 | jq .',
    'berth manifest --platform linux/arm64 localhost:5000/app:v1 -o arm64.json',
    'berth manifest oci:./layout:v1',
  ],
  async run({ flags, args }) {
    const src = await openSource(makeClient(flags), args[0], 'REF', 'manifest');
    try {
      const wanted = platforms(flags.platform ? [flags.platform] : undefined)?.[0];
      const bytes = wanted
        ? (await selectImage(src, wanted).catch(userError)).manifest.bytes
        : (await src.source.manifest(src.reference).catch(userError)).bytes;
      await toOutput(flags.output, async (out) => {
        await new Promise<void>((res, rej) => out.end(bytes, () => res()).once('error', rej));
      });
    } finally {
      await src.close();
    }
  },
});
