// `berth config REF`: an image's config blob exactly as stored, verified, to stdout or a file.
import { parseFlags, type LegacyCommand, legacyCommand } from './command.js';
import { makeClient, platforms, positionals } from './_client.js';
import { openSource, selectImage, toOutput, userError } from './_verbs.js';

const HELP = `Usage: berth config REF [--platform P] [-o FILE]

Prints the config JSON of REF's image byte for byte, after checking it against its digest. For an index, the
image for --platform, else for this machine's platform.

Flags:
  --platform P     the platform to pick from an index (os/arch[/variant])
  -o, --output F   write to F (appears only when complete) instead of stdout
  --insecure       allow plain HTTP / unverified TLS for non-loopback registries

Examples:
  berth config localhost:5000/app:v1 | jq .config.Env
  berth config --platform linux/arm64 localhost:5000/app:v1`;

const command: LegacyCommand = {
  name: 'config',
  summary: "print an image's config JSON (verified)",
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('config', argv, {
      insecure: { type: 'boolean' },
      platform: { type: 'string' },
      output: { type: 'string', short: 'o' },
    });
    const src = openSource(makeClient(values), positionals(pos, 1, 'berth config REF')[0], 'REF', 'config');
    const img = await selectImage(src, platforms(values.platform ? [values.platform] : undefined)?.[0]).catch(
      userError,
    );
    await toOutput(values.output, async (out) => {
      await new Promise<void>((res, rej) => out.end(img.configBytes, () => res()).once('error', rej));
    });
  },
};
export default legacyCommand(command);
