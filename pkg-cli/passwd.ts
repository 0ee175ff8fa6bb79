// `berth passwd NAME`: a bcrypt hash for auth.users (no htpasswd binary needed). The password is read from the
// terminal without echo, or from stdin with --stdin (scripts); it is never taken from argv, where `ps` shows it.
import { createInterface } from 'node:readline';
import bcrypt from 'bcryptjs';
import { stringify } from 'yaml';
import { CLIError, defineCommand, EXIT, flag } from './command.js';

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

export default defineCommand({
  usage: 'NAME [--stdin] [--cost N]',
  description: `Prints a bcrypt hash of a password as an auth.users entry for berth.yaml:
  auth:
    users:
      - name: alice
        passwordHash: $2b$12$…
On a terminal the password is asked twice without echo; with --stdin it is the first line of standard input.`,
  flags: {
    stdin: flag.boolean({ help: 'read the password from standard input (first line)' }),
    cost: flag.int({
      default: 12,
      min: 10,
      max: 15,
      help: 'bcrypt cost (each step doubles the time a login takes)',
    }),
  },
  args: ['NAME'],
  examples: ['berth passwd alice', `printf '%s\\n' "$PASSWORD" | berth passwd ci-bot --stdin`],
  async run({ flags, args }) {
    const name = args[0];
    if (!NAME.test(name))
      throw new CLIError('berth passwd NAME: NAME is letters, digits, . _ @ - (at most 128), e.g. alice', EXIT.usage);
    let password: string;
    if (flags.stdin) password = await _firstLine();
    else if (process.stdin.isTTY) {
      password = await _askHidden(`password for ${name}: `);
      if ((await _askHidden('again: ')) !== password) throw new CLIError('the passwords differ; nothing printed');
    } else throw new CLIError('no terminal to ask the password on: pipe it in with --stdin');
    if (!password) throw new CLIError('empty password; nothing printed');
    const hash = await bcrypt.hash(password, flags.cost);
    // An auth.users list entry, ready to paste (yaml quotes the name when it needs it).
    const [first, ...rest] = stringify({ name, passwordHash: hash }).trimEnd().split('\n');
    console.log([`- ${first}`, ...rest.map((l) => `  ${l}`)].join('\n'));
    return 0;
  },
});
