// `berth version`: berth's and node's versions.
import { defineCommand } from './command.js';
import { json } from './flags.js';
import { VERSION } from './_version.js';

export default defineCommand({
  usage: '[--json]',
  description: 'Prints the berth version and the Node.js version it runs on.',
  flags: { json },
  args: [],
  async run({ flags }) {
    if (flags.json) console.log(JSON.stringify({ version: VERSION, node: process.version }));
    else console.log(`berth ${VERSION} (node ${process.version})`);
  },
});
