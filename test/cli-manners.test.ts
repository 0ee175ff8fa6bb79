// The berth command's manners, end to end through the built executable: grouped help with summaries, help for one
// command, did-you-mean for commands and flags, validated flag values, documented exit codes (README "Exit
// codes"), shell completion loaded into a real bash, and --json field names that say what happened.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startBerth } from './support/berth.js';
import { requirePeer, run, type RunResult } from './support/peers.js';
import { makeLayeredLayout } from './support/oci-layouts.js';

const BIN = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

function berth(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return run(process.execPath, [BIN, ...args], { env: { CI: 'true', ...env }, timeoutMs: 60_000 });
}

/** Exit `code` with exactly one line on stderr, in berth's style, matching `re`. */
async function fails(code: number, args: string[], re: RegExp): Promise<string> {
  const r = await berth(args);
  assert.equal(r.code, code, `${r.command}: expected exit ${code}\n${r.stdout}${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0], /^berth: /);
  assert.match(lines[0], re);
  return lines[0];
}

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const d = await mkdtemp(`/tmp/${prefix}-`);
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

test('berth --help lists every command with its summary, grouped; berth help CMD shows that command', async () => {
  const top = await berth(['--help']);
  assert.equal(top.code, 0, top.stderr);
  const groups = [...top.stdout.matchAll(/^(\w+) \(.*\):$|^(Build):$/gm)].map((m) => m[1] ?? m[2]);
  assert.deepEqual(groups, ['Images', 'Registry', 'Build', 'Admin']);
  for (const [name, summary] of [
    ['pull', 'download an image'],
    ['push', 'upload an OCI layout'],
    ['copy', 'copy an image'],
    ['build', 'build a reproducible image'],
    ['serve', 'run the registry'],
    ['completion', 'print a shell completion script'],
  ])
    assert.match(top.stdout, new RegExp(`^ {2}${name} +${summary}`, 'm'), name);
  assert.match(top.stdout, /Exit codes: 0 ok, 1 failure, 2 usage/);

  const help = await berth(['help', 'build']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^berth build — build a reproducible image/);
  assert.match(help.stdout, /\n {6}--check-reproducible +build twice/);
  assert.match(help.stdout, /\n {2}-f, --file FILE +the spec \(default berth\.yaml\)/);
  assert.equal((await berth(['build', '--help'])).stdout, help.stdout, 'help CMD and CMD --help agree');
  for (const name of ['pull', 'push', 'copy', 'inspect', 'digest', 'tags', 'token', 'gc', 'fsck', 'serve', 'login']) {
    const h = await berth(['help', name]);
    assert.equal(h.code, 0, `${name}: ${h.stderr}`);
    assert.match(h.stdout, new RegExp(`^berth ${name} — .*\\n\\nUsage:\\s+berth ${name} `), name);
    assert.match(h.stdout, /\n {2}-h, --help +show this help/, name);
  }
});

test('did-you-mean for commands, flags and sub-verbs; usage errors exit 2', async () => {
  await fails(2, ['pul'], /unknown command "pul"; did you mean pull\?/);
  await fails(2, ['isnpect', 'x'], /did you mean inspect\?/);
  await fails(2, ['help', 'biuld'], /did you mean build\?/);
  await fails(2, ['kubernetes'], /^berth: unknown command "kubernetes" \(run `berth --help` for the list\)$/);
  await fails(2, ['copy', '--platfrom', 'linux/amd64', 'a', 'b'], /unknown flag --platfrom; did you mean --platform\?/);
  await fails(2, ['push', '--jobs', 'abc', 'a', 'b'], /--jobs "abc": expected a whole number from 1 to 64/);
  await fails(2, ['copy', '--jobs', '0', 'a', 'b'], /--jobs "0"/);
  await fails(2, ['fsck', '--jobs', '1000'], /--jobs "1000"/);
  await fails(2, ['gc', '--grace', 'soon'], /--grace "soon": not a duration/);
  await fails(2, ['build', '--cache-max', 'lots'], /--cache-max "lots": not a size/);
  await fails(
    2,
    ['append', 'a', '--dir', 'x', '--compression', 'bz2'],
    /--compression "bz2": expected one of gzip, zstd/,
  );
  await fails(2, ['serve', '--log-format', 'xml'], /--log-format "xml": expected one of/);
  await fails(2, ['token', 'lst'], /expected create, list, revoke or prune, not "lst" \(did you mean list\?\)/);
  await fails(2, ['copy', 'only-one'], /missing DST: usage is berth copy SRC DST/);
  await fails(2, ['completion', 'powershell'], /unknown shell "powershell"; expected bash, zsh or fish/);
});

test('exit codes by kind: not found 4, network 6', async (t) => {
  const srv = await startBerth(t);
  t.after(() => srv.stop());
  await fails(4, ['digest', `${srv.host}/nothing/here:v1`], /404|MANIFEST_UNKNOWN|NAME_UNKNOWN/);
  await fails(4, ['push', '/nonexistent/layout', `${srv.host}/a:b`], /does not exist/);
  await fails(6, ['tags', '127.0.0.1:1/nothing'], /cannot reach registry 127\.0\.0\.1:1/);
});

test('pull --json counts downloaded blobs (not "uploaded"); push --json counts uploaded ones', async (t) => {
  const srv = await startBerth(t);
  t.after(() => srv.stop());
  const work = await tempDir(t, 'berth-json');
  const img = await makeLayeredLayout(join(work, 'src'), { layers: 2, layerBytes: 4096 });
  const pushed = await berth(['push', '--json', `${img.dir}:${img.tag}`, `${srv.host}/json/app:v1`]);
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.equal(JSON.parse(pushed.stdout).blobs.uploaded, 3);
  const pulled = await berth(['pull', '--json', `${srv.host}/json/app:v1`, '--oci-layout', join(work, 'out')]);
  assert.equal(pulled.code, 0, pulled.stderr);
  const out = JSON.parse(pulled.stdout);
  assert.deepEqual(Object.keys(out.blobs).sort(), ['bytes', 'downloaded', 'existed']);
  assert.equal(out.blobs.downloaded, 3);
  assert.equal(out.digest, JSON.parse(pushed.stdout).digest);
  assert.equal(pulled.stderr, '', '--json prints no progress');
});

test('completion: the bash script, loaded into a real bash, completes commands, flags and verbs', async (t) => {
  if (!requirePeer(t, 'bash')) return;
  const complete = async (words: string[]): Promise<string[]> => {
    const script = `source <("${process.execPath}" "${BIN}" completion bash) || exit 9
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}
_berth; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = await run('bash', ['-c', script], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).sort();
  };
  assert.deepEqual(await complete(['berth', 'pu']), ['pull', 'push']);
  assert.deepEqual(await complete(['berth', 'push', '--j']), ['--jobs', '--json']);
  assert.deepEqual(await complete(['berth', 'build', '--check-']), ['--check-reproducible']);
  assert.deepEqual(await complete(['berth', 'token', 'cr']), ['create']);
  assert.deepEqual(await complete(['berth', 'help', 'bu']), ['build', 'bundle']);
  assert.deepEqual(await complete(['berth', 'completion', 'z']), ['zsh']);

  const fish = await berth(['completion', 'fish']);
  assert.equal(fish.code, 0, fish.stderr);
  assert.match(fish.stdout, /complete -c berth -n __fish_use_subcommand -a pull -d 'download an image/);
  assert.match(fish.stdout, /complete -c berth -n '__fish_seen_subcommand_from push' -l jobs -s j /);
  const zsh = await berth(['completion', 'zsh']);
  assert.match(zsh.stdout, /^#compdef berth\n/);
  assert.match(zsh.stdout, /bashcompinit/);
});
