import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from './command.js';

/** The package root, found from this file whether it runs from source (tsx) or from dist/. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

export const VERSION: string = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')).version;

const command: Command = {
  name: 'version',
  summary: 'print the berth version',
  help: 'Usage: berth version [--json]',
  async run(argv) {
    if (argv.includes('--json')) console.log(JSON.stringify({ version: VERSION, node: process.version }));
    else console.log(`berth ${VERSION} (node ${process.version})`);
  },
};
export default command;
