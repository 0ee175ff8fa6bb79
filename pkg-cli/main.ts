#!/usr/bin/env node
// The `berth` executable. Picks the command, runs it, maps errors to a one-line message and an exit code
// (errors.ts). Only this folder reads argv or calls process.exit.
import { CLIError, EXIT, suggest, UsageError } from './command.js';
import { COMMANDS, GROUPS, type Group } from './commands.js';

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length)) + 2;
  const out = [
    'berth — OCI registry, reproducible image builder and transfer tool',
    '',
    'Usage: berth <command> [flags]',
  ];
  for (const [group, title] of Object.entries(GROUPS)) {
    out.push('', `${title}:`);
    for (const [name, c] of Object.entries(COMMANDS))
      if (c.group === (group as Group)) out.push(`  ${name.padEnd(width)}${c.summary}`);
  }
  out.push(
    '',
    'Run `berth help COMMAND` (or `berth COMMAND --help`) for its flags and examples.',
    'Exit codes: 0 ok, 1 failure, 2 usage, 3 damage found (fsck), 4 not found, 5 denied, 6 network, 7 verification.',
  );
  return out.join('\n');
}

function unknownCommand(name: string): UsageError {
  const guess = suggest(name, [...Object.keys(COMMANDS), 'help']);
  return new UsageError(
    `unknown command "${name}"${guess.length ? `; did you mean ${guess.join(' or ')}?` : ''} (run \`berth --help\` for the list)`,
  );
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h') {
    console.log(usage());
    return EXIT.ok;
  }
  if (name === '--version') return main(['version', ...rest]);
  if (name === 'help') {
    if (!rest.length) {
      console.log(usage());
      return EXIT.ok;
    }
    return main([rest[0], '--help']);
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) throw unknownCommand(name);
  // `--` ends the flags: a --help after it is an argument.
  const flags = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  const help = flags.includes('--help') || flags.includes('-h');
  if (!help && entry.headStart) await (await entry.headStart()).default(flags);
  const cmd = (await entry.load()).default;
  if (help) {
    console.log(cmd.help(name, entry.summary));
    return EXIT.ok;
  }
  return (await cmd.run(name, rest)) ?? EXIT.ok;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  async (e: unknown) => {
    const { exitCodeFor } = await import('./errors.js');
    console.error(`berth: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.BERTH_DEBUG && !(e instanceof CLIError)) console.error(e);
    process.exit(exitCodeFor(e));
  },
);
