// `berth config`: two jobs share the name, told apart by the first word — `berth config check|defaults` works on
// berth's own configuration file (config-file.ts); `berth config REF` prints an image's config blob
// (config-image.ts). An image really named "check" or "defaults" is written with its registry
// (docker.io/library/check).
import type { Command } from './command.js';
import fileCommand from './config-file.js';
import imageCommand from './config-image.js';

const FILE_VERBS = new Set(['check', 'defaults']);

const command: Command = {
  usage: [...fileCommand.usage, ...imageCommand.usage],
  description: `${fileCommand.description}\n\n${imageCommand.description}`,
  // For completion: the flags of both (each half still parses only its own).
  flags: { ...imageCommand.flags, ...fileCommand.flags },
  verbs: fileCommand.verbs,
  help: (name, summary) => `${fileCommand.help(name, summary)}\n\n${imageCommand.help(name, summary)}`,
  run(name, argv) {
    const first = argv.find((a) => !a.startsWith('-'));
    return (first && FILE_VERBS.has(first) ? fileCommand : imageCommand).run(name, argv);
  },
};
export default command;
