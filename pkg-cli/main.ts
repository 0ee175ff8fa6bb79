#!/usr/bin/env node
// The `berth` executable. Picks the command, runs it, maps errors to a one-line message and an exit code.
// Only this folder reads argv or calls process.exit.
import { CLIError, type Command } from './command.js';

// Explicit, lazy command table (no self-registration): `berth NAME …` loads only its own module.
const COMMANDS: Record<string, () => Promise<{ default: Command }>> = {
  serve: () => import('./serve.js'),
  build: () => import('./build.js'),
  version: () => import('./version.js'),
  login: () => import('./login.js'),
  logout: () => import('./logout.js'),
  pull: () => import('./pull.js'),
  push: () => import('./push.js'),
  copy: () => import('./copy.js'),
  inspect: () => import('./inspect.js'),
  digest: () => import('./digest.js'),
  tags: () => import('./tags.js'),
  catalog: () => import('./catalog.js'),
  delete: () => import('./delete.js'),
  tag: () => import('./tag.js'),
  gc: () => import('./gc.js'),
  fsck: () => import('./fsck.js'),
  token: () => import('./token.js'),
  manifest: () => import('./manifest.js'),
  config: () => import('./config.js'),
  blob: () => import('./blob.js'),
  mutate: () => import('./mutate.js'),
  append: () => import('./append.js'),
  index: () => import('./indexes.js'),
  rebase: () => import('./rebase.js'),
  export: () => import('./export.js'),
};

function usage(): string {
  return [
    'berth — OCI registry, reproducible image builder and transfer tool',
    '',
    'Usage: berth <command> [flags]   (berth <command> --help for details)',
    '',
    'Commands:',
    ...Object.keys(COMMANDS).map((n) => `  ${n}`),
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return 0;
  }
  if (name === '--version') return main(['version']);
  const load = COMMANDS[name];
  if (!load) throw new CLIError(`unknown command "${name}"; run \`berth --help\` for the list`);
  const cmd = (await load()).default;
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(cmd.help);
    return 0;
  }
  return (await cmd.run(rest)) ?? 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof CLIError) {
      console.error(`berth: ${e.message}`);
      process.exit(e.exitCode);
    }
    console.error(`berth: ${(e as Error)?.message ?? e}`);
    if (process.env.BERTH_DEBUG) console.error(e);
    process.exit(1);
  },
);
