// `berth export REF`: one platform image's filesystem flattened into a single tar (whiteouts applied, the last
// layer wins), like `crane export` / `docker export`, streamed to stdout or a file.
import { exportImage } from '../client/export.js';
import { parseFlags, type LegacyCommand, legacyCommand } from './command.js';
import { makeClient, platforms, positionals } from './_client.js';
import { openSource, selectImage, toOutput, userError } from './_verbs.js';

const HELP = `Usage: berth export REF [--platform P] [-o FILE]

Writes the filesystem of REF's image as one tar: every layer applied in order, whiteouts honoured, no whiteout
files. For an index, the image for --platform, else for this machine's platform. Layers stream through and are
verified against their digests; with -o the file appears only when complete.

Flags:
  --platform P     the platform to pick from an index (os/arch[/variant])
  -o, --output F   write to F instead of stdout
  --insecure       allow plain HTTP / unverified TLS for non-loopback registries

Examples:
  berth export localhost:5000/app:v1 -o rootfs.tar
  berth export --platform linux/arm64 localhost:5000/app:v1 | tar -t`;

const command: LegacyCommand = {
  name: 'export',
  summary: "flatten an image's filesystem into one tar",
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('export', argv, {
      insecure: { type: 'boolean' },
      platform: { type: 'string' },
      output: { type: 'string', short: 'o' },
    });
    const src = openSource(makeClient(values), positionals(pos, 1, 'berth export REF')[0], 'REF', 'export');
    const img = await selectImage(src, platforms(values.platform ? [values.platform] : undefined)?.[0]).catch(
      userError,
    );
    await toOutput(values.output, (out) => exportImage(img, out)).catch(userError);
  },
};
export default legacyCommand(command);
