// Commands are data (citty's defineCommand, without the dependency): each command module default-exports
// `defineCommand({...})`, which declares every flag ONCE — type, help, default, validation — and from that one
// declaration come parsing, `--help`, did-you-mean and shell completion. Only main.ts exits the process.
//
// Why our own over node:util parseArgs rather than citty or clipanion: parseArgs already does the POSIX/GNU
// tokenising correctly; what we need on top (typed values with units and ranges, help tables, did-you-mean,
// completion scripts, exit codes mapped from client errors) is small, and neither library validates numbers/enums
// or completes flags of lazily loaded commands. One file, no dependency, and commands stay plain objects.
import { parseArgs } from 'node:util';
import { parseDuration, parseSize } from '../spec/units.js';

/** berth's exit codes (README "Exit codes"); main.ts maps every error to one of them in one place (errors.ts). */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** fsck found damaged blobs. */
  damaged: 3,
  notFound: 4,
  denied: 5,
  network: 6,
  /** A digest, signature or reproducibility check failed. */
  verification: 7,
} as const;

/** An error for the user: one line that names the problem and the fix. main.ts prints it and exits with exitCode. */
export class CLIError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
  ) {
    super(message);
  }
}

/** The command line itself is wrong (unknown flag, bad value, missing argument): exit 2, like getopt tools. */
export class UsageError extends CLIError {
  constructor(message: string) {
    super(message, EXIT.usage);
  }
}

/** One flag: how parseArgs reads it, how its value is checked and converted, and how help/completion show it. */
export interface Flag<T> {
  readonly type: 'boolean' | 'string';
  readonly multiple?: boolean;
  readonly short?: string;
  /** The value's placeholder in help (FILE, N, REF…). */
  readonly arg?: string;
  readonly help: string;
  /** Shown as "(default …)" in help. */
  readonly defaultText?: string;
  /** Values offered by completion (enums). */
  readonly choices?: readonly string[];
  /** What completion offers for the value. */
  readonly complete?: 'file' | 'dir';
  /** Help heading this flag is listed under (default "Flags"). */
  readonly section?: string;
  /** Not listed in help (kept for compatibility). */
  readonly hidden?: boolean;
  /** raw is what parseArgs produced (undefined when absent); `name` is `--flag` for messages. */
  parse(raw: unknown, name: string): T;
}

type Common = { short?: string; help: string; section?: string; hidden?: boolean };
type Valued = Common & { arg?: string; complete?: 'file' | 'dir' };

function _usage(name: string, text: string, fix: string): UsageError {
  return new UsageError(`${name} ${JSON.stringify(text)}: ${fix}`);
}

/** The flag builders. Each returns a Flag whose parsed value type is what the command's `flags` object receives. */
export const flag = {
  boolean(o: Common): Flag<boolean> {
    return { ...o, type: 'boolean', parse: (raw) => raw === true };
  },
  string<D extends string | undefined = undefined>(
    o: Valued & { default?: D },
  ): Flag<D extends string ? string : string | undefined> {
    return {
      ...o,
      type: 'string',
      arg: o.arg ?? 'VALUE',
      defaultText: o.default,
      parse: (raw) => (raw === undefined ? o.default : raw) as never,
    };
  },
  /** Repeatable; with `split` comma-separated values count as several (`--platform a,b`). */
  list(o: Valued & { split?: boolean }): Flag<string[]> {
    return {
      ...o,
      type: 'string',
      multiple: true,
      arg: o.arg ?? 'VALUE',
      parse: (raw) => {
        const list = (raw as string[] | undefined) ?? [];
        return o.split ? list.flatMap((v) => v.split(',')).filter(Boolean) : list;
      },
    };
  },
  int<D extends number | undefined = undefined>(
    o: Valued & { default?: D; min?: number; max?: number },
  ): Flag<D extends number ? number : number | undefined> {
    const min = o.min ?? 0;
    const max = o.max ?? Number.MAX_SAFE_INTEGER;
    return {
      ...o,
      type: 'string',
      arg: o.arg ?? 'N',
      defaultText: o.default === undefined ? undefined : String(o.default),
      parse: (raw, name) => {
        if (raw === undefined) return o.default as never;
        const n = Number(raw);
        if (!/^\s*-?\d+\s*$/.test(raw as string) || !Number.isSafeInteger(n) || n < min || n > max)
          throw _usage(
            name,
            raw as string,
            `expected a whole number from ${min} to ${max === Number.MAX_SAFE_INTEGER ? 'any' : max}`,
          );
        return n as never;
      },
    };
  },
  choice<const C extends readonly string[], D extends C[number] | undefined = undefined>(
    choices: C,
    o: Valued & { default?: D },
  ): Flag<D extends string ? C[number] : C[number] | undefined> {
    return {
      ...o,
      type: 'string',
      arg: o.arg ?? choices.join('|'),
      choices,
      defaultText: o.default,
      parse: (raw, name) => {
        if (raw === undefined) return o.default as never;
        if (!choices.includes(raw as string))
          throw _usage(name, raw as string, `expected one of ${choices.join(', ')}`);
        return raw as never;
      },
    };
  },
  /** A Go-style duration (`30s`, `1h30m`, `7d`) → milliseconds. */
  duration(o: Valued & { default?: string }): Flag<number | undefined> {
    return {
      ...o,
      type: 'string',
      arg: o.arg ?? 'DURATION',
      defaultText: o.default,
      parse: (raw, name) => {
        const text = (raw as string | undefined) ?? o.default;
        if (text === undefined) return undefined;
        try {
          return parseDuration(text);
        } catch {
          throw _usage(name, text, 'not a duration; write e.g. 30s, 10m, 1h30m or 7d');
        }
      },
    };
  },
  /** A size (`500MiB`, `8GiB`, `1.5GB`, bytes) → bytes. */
  size(o: Valued & { default?: string }): Flag<number | undefined> {
    return {
      ...o,
      type: 'string',
      arg: o.arg ?? 'SIZE',
      defaultText: o.default,
      parse: (raw, name) => {
        const text = (raw as string | undefined) ?? o.default;
        if (text === undefined) return undefined;
        try {
          return parseSize(text);
        } catch {
          throw _usage(name, text, 'not a size; write e.g. 500MiB, 8GiB or a number of bytes');
        }
      },
    };
  },
};

export type Flags = Record<string, Flag<any>>;
export type Values<F extends Flags> = { [K in keyof F]: F[K] extends Flag<infer T> ? T : never };

export interface CommandSpec<F extends Flags> {
  /** What follows `berth NAME` in the usage line(s), e.g. `SRC DST [flags]`. */
  usage: string | string[];
  /** The paragraph under the usage line. */
  description: string;
  flags: F;
  /**
   * Positional arguments by name, checked before run: `REF` required, `[REGISTRY]` optional, `ARGS...` any number.
   * Omit to receive them unchecked.
   */
  args?: string[];
  /** First-argument words completion offers (sub-verbs such as `token create`). */
  verbs?: readonly string[];
  /** Paragraphs printed after the flag tables. */
  notes?: string;
  examples?: string[];
  run(ctx: { flags: Values<F>; args: string[] }): Promise<number | void>;
}

export interface Command {
  readonly usage: string[];
  readonly description: string;
  readonly flags: Flags;
  readonly verbs?: readonly string[];
  help(name: string, summary: string): string;
  run(name: string, argv: string[]): Promise<number | void>;
}

/** Flags every command accepts (handled before parsing: they print help). */
const HELP_FLAG: Flag<boolean> = flag.boolean({ short: 'h', help: 'show this help' });

export function defineCommand<F extends Flags>(spec: CommandSpec<F>): Command {
  const usage = Array.isArray(spec.usage) ? spec.usage : [spec.usage];
  const all: Flags = { ...spec.flags, help: HELP_FLAG };
  return {
    usage,
    description: spec.description,
    flags: all,
    verbs: spec.verbs,
    help: (name, summary) => renderHelp(name, summary, usage, spec, all),
    async run(name, argv) {
      const { values, positionals } = parseFlags(name, argv, all);
      if (spec.args) checkArgs(name, usage, spec.args, positionals);
      const out: Record<string, unknown> = {};
      for (const [key, f] of Object.entries(spec.flags)) out[key] = f.parse(values[key], `--${key}`);
      return spec.run({ flags: out as Values<F>, args: positionals });
    },
  };
}

/** node:util parseArgs, with unknown flags answered by a did-you-mean and errors that name the fix. */
export function parseFlags(
  command: string,
  argv: string[],
  flags: Record<string, FlagShape>,
): { values: Record<string, any>; positionals: string[] } {
  const options = Object.fromEntries(
    Object.entries(flags).map(([k, f]) => [
      k,
      { type: f.type, ...(f.multiple ? { multiple: true } : {}), ...(f.short ? { short: f.short } : {}) },
    ]),
  );
  const see = `see \`berth ${command} --help\``;
  const loose = parseArgs({ args: argv, options, allowPositionals: true, strict: false, tokens: true });
  for (const t of loose.tokens) {
    if (t.kind !== 'option' || t.name in flags) continue;
    const shown = t.rawName.startsWith('--') ? `--${t.name}` : t.rawName;
    const guess = suggest(t.name, Object.keys(flags));
    throw new UsageError(
      `unknown flag ${shown}${guess.length ? `; did you mean ${guess.map((g) => `--${g}`).join(' or ')}?` : ''} (${see})`,
    );
  }
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    const m = /Option '(?:-\w, )?(--[\w-]+)(?: <value>)?' argument missing/.exec((e as Error).message);
    if (m) throw new UsageError(`${m[1]} needs a value (${flags[m[1].slice(2)]?.arg ?? 'VALUE'}); ${see}`);
    const b = /Option '(?:-\w, )?(--[\w-]+)' does not take an argument/.exec((e as Error).message);
    if (b) throw new UsageError(`${b[1]} is a switch and takes no value; ${see}`);
    throw new UsageError(`${(e as Error).message.replace(/\. To specify.*$/s, '')}; ${see}`);
  }
}

function checkArgs(name: string, usage: string[], names: string[], got: string[]): void {
  const required = names.filter((n) => !n.startsWith('[') && !n.endsWith('...')).length;
  const max = names.some((n) => n.endsWith('...')) ? Number.POSITIVE_INFINITY : names.length;
  if (got.length >= required && got.length <= max) return;
  const what =
    got.length > max ? `unexpected argument "${got[max]}"` : `missing ${names.slice(got.length, required).join(' ')}`;
  throw new UsageError(`${what}: usage is berth ${name} ${usage[0]}; see \`berth ${name} --help\``);
}

/** Names within a small edit distance of `input`, or that it is a prefix of; best first. */
export function suggest(input: string, names: string[]): string[] {
  const scored = names
    .map((n) => ({ n, d: n.startsWith(input) && input.length >= 2 ? 0.5 : distance(input, n) }))
    .filter(({ n, d }) => d <= Math.max(1, Math.min(2, Math.floor(n.length / 3))))
    .sort((a, b) => a.d - b.d || a.n.localeCompare(b.n));
  const best = scored[0]?.d;
  return scored.filter((s) => s.d === best).map((s) => s.n);
}

/** Damerau–Levenshtein (optimal string alignment): a swapped pair of letters counts as one typo. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

function renderHelp(name: string, summary: string, usage: string[], spec: CommandSpec<Flags>, flags: Flags): string {
  const out = [
    `berth ${name} — ${summary}`,
    '',
    usage.length === 1
      ? `Usage: berth ${name} ${usage[0]}`
      : ['Usage:', ...usage.map((u) => `  berth ${name} ${u}`)].join('\n'),
    '',
    spec.description,
  ];
  const sections = new Map<string, string[][]>();
  for (const [key, f] of Object.entries(flags)) {
    if (f.hidden) continue;
    const left = `${f.short ? `-${f.short}, ` : '    '}--${key}${f.type === 'string' ? ` ${f.arg}` : ''}`;
    const help = f.defaultText !== undefined ? `${f.help} (default ${f.defaultText})` : f.help;
    const section = f.section ?? 'Flags';
    if (!sections.has(section)) sections.set(section, []);
    sections.get(section)!.push([left, `${help}${f.multiple ? '; repeatable' : ''}`]);
  }
  const width = Math.min(30, Math.max(...[...sections.values()].flat().map(([l]) => l.length)));
  for (const [section, rows] of sections) {
    out.push('', `${section}:`);
    for (const [l, h] of rows)
      out.push(l.length > width ? `  ${l}\n  ${' '.repeat(width)}  ${h}` : `  ${l.padEnd(width)}  ${h}`);
  }
  if (spec.notes) out.push('', spec.notes);
  if (spec.examples?.length) out.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  return out.join('\n');
}

/** What parsing needs of a flag. */
type FlagShape = { type: 'string' | 'boolean'; short?: string; multiple?: boolean; arg?: string };
