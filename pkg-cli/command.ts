// Commands are data: each command module default-exports a Command. Only main.ts exits the process.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export interface Command {
  name: string;
  /** One line for `berth --help`. */
  summary: string;
  /** Full `--help` text: usage, flags, examples. */
  help: string;
  run(argv: string[]): Promise<number | void>;
}

/** An error for the user: one line that names the problem and the fix. main.ts prints it and exits 1. */
export class CLIError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** parseArgs with friendly errors ("unknown flag --x; see berth CMD --help"). */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  argv: string[],
  options: T,
) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new CLIError(`${(e as Error).message.replace(/\. To specify.*$/s, '')}; see \`berth ${command} --help\``);
  }
}
