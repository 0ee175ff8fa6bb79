// defineCommand: one flag declaration gives parsing, validation, help and suggestions.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration, parseSize } from '../spec/units.js';
import { type CLIError, defineCommand, EXIT, flag, suggest, UsageError } from './command.js';

function fixture() {
  let got: any;
  const cmd = defineCommand({
    usage: 'SRC DST [flags]',
    description: 'Copies things.',
    flags: {
      jobs: flag.int({ short: 'j', default: 4, min: 1, max: 64, help: 'in parallel' }),
      mode: flag.choice(['fast', 'safe'] as const, { default: 'safe', help: 'how' }),
      grace: flag.duration({ help: 'wait' }),
      max: flag.size({ help: 'at most' }),
      platform: flag.list({ arg: 'P', split: true, help: 'platforms' }),
      file: flag.string({ short: 'f', arg: 'FILE', default: 'berth.yaml', help: 'the spec' }),
      note: flag.string({ help: 'a note' }),
      force: flag.boolean({ help: 'force it' }),
    },
    args: ['SRC', 'DST', '[EXTRA]'],
    examples: ['berth x a b'],
    async run(ctx) {
      got = ctx;
    },
  });
  return { cmd, got: () => got };
}

async function usageError(p: Promise<unknown>, re: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof UsageError, String(e));
    assert.equal((e as CLIError).exitCode, EXIT.usage);
    assert.match((e as Error).message, re);
    return true;
  });
}

test('values are typed, defaulted and converted once', async () => {
  const { cmd, got } = fixture();
  await cmd.run('x', ['a', 'b']);
  assert.deepEqual(got().flags, {
    jobs: 4,
    mode: 'safe',
    grace: undefined,
    max: undefined,
    platform: [],
    file: 'berth.yaml',
    note: undefined,
    force: false,
  });
  await cmd.run('x', [
    '-j',
    '8',
    '--mode=fast',
    '--grace',
    '1h30m',
    '--max',
    '1.5GiB',
    '--platform',
    'linux/amd64,linux/arm64',
    '--platform',
    'linux/s390x',
    '-f',
    'b.yaml',
    '--force',
    'a',
    'b',
    'c',
  ]);
  assert.deepEqual(got().flags, {
    jobs: 8,
    mode: 'fast',
    grace: 90 * 60_000,
    max: 1.5 * 1024 ** 3,
    platform: ['linux/amd64', 'linux/arm64', 'linux/s390x'],
    file: 'b.yaml',
    note: undefined,
    force: true,
  });
  assert.deepEqual(got().args, ['a', 'b', 'c']);
});

test('bad values, unknown flags and wrong argument counts are usage errors that name the fix', async () => {
  const { cmd } = fixture();
  await usageError(cmd.run('x', ['--jobs', 'abc', 'a', 'b']), /--jobs "abc": expected a whole number from 1 to 64/);
  await usageError(cmd.run('x', ['--jobs', '0', 'a', 'b']), /--jobs "0"/);
  await usageError(cmd.run('x', ['--jobs', '2.5', 'a', 'b']), /--jobs "2.5"/);
  await usageError(cmd.run('x', ['--mode', 'slow', 'a', 'b']), /--mode "slow": expected one of fast, safe/);
  await usageError(cmd.run('x', ['--grace', '5 parsecs', 'a', 'b']), /--grace .*not a duration/);
  await usageError(cmd.run('x', ['--max', '12XB', 'a', 'b']), /--max .*not a size/);
  await usageError(cmd.run('x', ['--jbos', '3', 'a', 'b']), /unknown flag --jbos; did you mean --jobs\?/);
  await usageError(cmd.run('x', ['--frobnicate', 'a', 'b']), /^unknown flag --frobnicate \(see `berth x --help`\)$/);
  await usageError(cmd.run('x', ['-z', 'a', 'b']), /unknown flag -z/);
  await usageError(cmd.run('x', ['a', 'b', '--file']), /--file needs a value \(FILE\)/);
  await usageError(cmd.run('x', ['--force=yes', 'a', 'b']), /--force is a switch and takes no value/);
  await usageError(cmd.run('x', ['a']), /missing DST: usage is berth x SRC DST \[flags\]/);
  await usageError(cmd.run('x', ['a', 'b', 'c', 'd']), /unexpected argument "d"/);
});

test('help is generated from the declarations', () => {
  const { cmd } = fixture();
  const help = cmd.help('x', 'copy things');
  assert.match(help, /^berth x — copy things\n\nUsage: berth x SRC DST \[flags\]\n\nCopies things\./);
  assert.match(help, /\n {2}-j, --jobs N +in parallel \(default 4\)\n/);
  assert.match(help, /\n {6}--mode fast\|safe +how \(default safe\)\n/);
  assert.match(help, /\n {6}--platform P +platforms; repeatable\n/);
  assert.match(help, /\n {2}-h, --help +show this help\n/);
  assert.match(help, /\nExamples:\n {2}berth x a b$/);
});

test('did-you-mean: typos, swapped letters and prefixes; nothing for far-off words', () => {
  const names = ['pull', 'push', 'copy', 'inspect', 'delete', 'digest', 'tags', 'tag', 'build', 'serve'];
  assert.deepEqual(suggest('pul', names), ['pull']);
  assert.deepEqual(suggest('pu', names), ['pull', 'push']);
  assert.deepEqual(suggest('isnpect', names), ['inspect']);
  assert.deepEqual(suggest('biuld', names), ['build']);
  assert.deepEqual(suggest('dlete', names), ['delete']);
  assert.deepEqual(suggest('kubernetes', names), []);
});

test('units: Go-style durations and binary/decimal sizes', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('1.5h'), 5_400_000);
  assert.equal(parseDuration('7d'), 7 * 86_400_000);
  assert.equal(parseDuration('0'), 0);
  for (const bad of ['', '5', 'h', '1x', '1h 30m', '-1s']) assert.throws(() => parseDuration(bad), /invalid duration/);
  assert.equal(parseSize('500MiB'), 500 * 1024 ** 2);
  assert.equal(parseSize('8GiB'), 8 * 1024 ** 3);
  assert.throws(() => parseSize('8G'), /invalid size/, 'a unit names its base: 8GB or 8GiB, never a bare G');
  assert.equal(parseSize('1.5GB'), 1.5e9);
  assert.equal(parseSize('1000000'), 1_000_000);
  for (const bad of ['', 'MiB', '1iB', '5 parsecs']) assert.throws(() => parseSize(bad), /invalid size/);
});
