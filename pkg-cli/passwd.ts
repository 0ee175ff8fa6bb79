// `berth passwd NAME`: a bcrypt hash for auth.users (no htpasswd binary needed). The password is read from the
// terminal without echo, or from stdin with --stdin (scripts); it is never taken from argv, where `ps` shows it.
import { createInterface } from 'node:readline';
import bcrypt from 'bcryptjs';
import { stringify } from 'yaml';
import { CLIError, parseFlags, type LegacyCommand, legacyCommand } from './command.js';

const HELP = `Usage: berth passwd NAME [--stdin] [--cost N]

Prints a bcrypt hash of a password as an auth.users entry for berth.yaml:

  auth:
    users:
      - name: alice
        passwordHash: $2b$12$…

On a terminal the password is asked twice without echo; with --stdin it is the first line of standard input.

Flags:
      --stdin      read the password from standard input (first line)
      --cost N     bcrypt cost, 10 to 15 (default 12; each step doubles the time a login takes)

Examples:
  berth passwd alice
  printf '%s\\n' "$PASSWORD" | berth passwd ci-bot --stdin`;

/** The same rule as auth.users[].name in spec/config-schema.ts. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;

async function _firstLine(): Promise<string> {
  const rl = createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    rl.close();
    return line;
  }
  return '';
}

/** Reads a line from the terminal without echoing it (raw mode; Ctrl-C aborts). */
function _askHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const input = process.stdin;
    process.stderr.write(prompt);
    input.setRawMode(true);
    input.resume();
    let text = '';
    const done = (err?: Error) => {
      input.setRawMode(false);
      input.pause();
      input.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new CLIError('aborted', 130));
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
      }
    };
    input.on('data', onData);
  });
}

const command: LegacyCommand = {
  name: 'passwd',
  summary: 'print a bcrypt password hash for auth.users (asks without echo, or --stdin)',
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseFlags('passwd', argv, {
      stdin: { type: 'boolean' },
      cost: { type: 'string' },
    });
    const [name, extra] = positionals;
    if (extra !== undefined) throw new CLIError(`unexpected argument "${extra}"; see \`berth passwd --help\``);
    if (!name || !NAME.test(name))
      throw new CLIError('berth passwd NAME: NAME is letters, digits, . _ @ - (at most 128), e.g. alice');
    const cost = values.cost === undefined ? 12 : Number(values.cost);
    if (!Number.isInteger(cost) || cost < 10 || cost > 15)
      throw new CLIError(`--cost must be a whole number from 10 to 15, not "${values.cost}"`);
    let password: string;
    if (values.stdin) password = await _firstLine();
    else if (process.stdin.isTTY) {
      password = await _askHidden(`password for ${name}: `);
      if ((await _askHidden('again: ')) !== password) throw new CLIError('the passwords differ; nothing printed');
    } else throw new CLIError('no terminal to ask the password on: pipe it in with --stdin');
    if (!password) throw new CLIError('empty password; nothing printed');
    const hash = await bcrypt.hash(password, cost);
    // An auth.users list entry, ready to paste (yaml quotes the name when it needs it).
    const [first, ...rest] = stringify({ name, passwordHash: hash }).trimEnd().split('\n');
    console.log([`- ${first}`, ...rest.map((l) => `  ${l}`)].join('\n'));
    return 0;
  },
};
export default legacyCommand(command);
