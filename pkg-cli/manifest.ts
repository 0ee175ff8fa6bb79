// `berth manifest REF`: the manifest bytes exactly as stored (what the digest covers), verified, to stdout or a file.
import { parseFlags, type LegacyCommand, legacyCommand } from './command.js';
import { makeClient, platforms, positionals } from './_client.js';
import { openSource, selectImage, toOutput, userError } from './_verbs.js';

const HELP = `Usage: berth manifest REF [--platform P] [-o FILE]

Prints REF's manifest (an image manifest or an index) byte for byte, after checking it against its digest.

Flags:
  --platform P     from an index, print this platform's image manifest instead
  -o, --output F   write to F (appears only when complete) instead of stdout
  --insecure       allow plain HTTP / unverified TLS for non-loopback registries

Examples:
  berth manifest localhost:5000/app:v1 | jq .
  berth manifest --platform linux/arm64 localhost:5000/app:v1 -o arm64.json`;

const command: LegacyCommand = {
  name: 'manifest',
  summary: "print a manifest's exact bytes (verified)",
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('manifest', argv, {
      insecure: { type: 'boolean' },
      platform: { type: 'string' },
      output: { type: 'string', short: 'o' },
    });
    const src = openSource(makeClient(values), positionals(pos, 1, 'berth manifest REF')[0], 'REF', 'manifest');
    const wanted = platforms(values.platform ? [values.platform] : undefined)?.[0];
    const bytes = wanted
      ? (await selectImage(src, wanted).catch(userError)).manifest.bytes
      : (await src.source.manifest(src.reference)).bytes;
    await toOutput(values.output, async (out) => {
      await new Promise<void>((res, rej) => out.end(bytes, () => res()).once('error', rej));
    });
  },
};
export default legacyCommand(command);
