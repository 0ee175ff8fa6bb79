// `berth config`: two jobs share the name, told apart by the first word — `berth config check|defaults` works on
// berth's own configuration file (config-file.ts); `berth config REF` prints an image's config blob
// (config-image.ts). An image really named "check" or "defaults" is written with its registry
// (docker.io/library/check).
import { legacyCommand } from './command.js';
import fileCommand from './config-file.js';
import imageCommand from './config-image.js';

const FILE_VERBS = new Set(['check', 'defaults']);

export default legacyCommand({
  name: 'config',
  summary: "check berth's config file or print its defaults; or print an image's config JSON",
  help: `${fileCommand.help('config', '')}\n\n${imageCommand.help('config', '')}`,
  run(argv) {
    const first = argv.find((a) => !a.startsWith('-'));
    return (first && FILE_VERBS.has(first) ? fileCommand : imageCommand).run('config', argv);
  },
});
