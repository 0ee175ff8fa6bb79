// An operator's first contact with berth: `berth serve` on a real terminal (a pseudo-terminal from util-linux
// `script`) prints a banner and readable log lines, and JSON lines when not on a terminal; config mistakes are one
// line naming where and how to fix them, and nothing is created on disk before the config is known good;
// `berth config check|defaults`, `berth passwd`; gc/fsck/token refuse to invent a storage root.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import bcrypt from 'bcryptjs';
import { parse } from 'yaml';
import { freePort, requirePeer, run } from './support/peers.js';
import { raw } from './support/registry-client.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp('/tmp/berth-first-run-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A command in a pseudo-terminal: everything it writes (stdout and stderr alike, as on a screen) and its input. */
function onTerminal(t: TestContext, command: string, env: Record<string, string> = {}) {
  // `exec`: berth itself is the terminal's process, so Ctrl-C reaches it alone and its exit code is the one seen
  // (under dash, CI's /bin/sh, a shell in between dies of the SIGINT itself and reports 130).
  const child: ChildProcess = spawn('script', ['-q', '-e', '-c', `exec ${command}`, '/dev/null'], {
    env: { ...process.env, NO_COLOR: '1', TERM: 'dumb', SHELL: '/bin/sh', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let screen = '';
  child.stdout!.on('data', (b) => (screen += b));
  child.stderr!.on('data', (b) => (screen += b));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return {
    screen: () => screen.replaceAll('\r\n', '\n'),
    type: (text: string) => child.stdin!.write(text),
    exited,
    async waitFor(re: RegExp, timeoutMs = 20_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(this.screen())) {
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`never saw ${re} on the terminal:\n${this.screen()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

test('on a terminal: a banner with a working URL, the absolute storage path, auth and logs; readable log lines', async (t) => {
  if (!requirePeer(t, 'script')) return;
  const dir = await tempDir(t);
  const port = await freePort();
  const root = join(dir, 'data');
  const term = onTerminal(t, `${process.execPath} ${BERTH} serve --addr 127.0.0.1:${port} --root ${root}`);
  await term.waitFor(/berth registry is running[\s\S]*logs /);
  const res = await raw(`http://127.0.0.1:${port}`, 'GET', '/v2/');
  assert.equal(res.status, 200);
  await term.waitFor(/INFO: request/);
  const screen = term.screen();
  assert.match(
    screen,
    new RegExp(`\\n {2}listening {3}http://127\\.0\\.0\\.1:${port} {2}\\(bound to 127\\.0\\.0\\.1:${port}\\)\\n`),
  );
  assert.match(screen, new RegExp(`\\n {2}storage {5}${root} \\(filesystem\\)\\n`));
  assert.match(screen, /\n {2}auth {8}none: anyone who can reach this port can push and delete/);
  assert.match(screen, /\n {2}logs {8}here \(stderr\), readable; JSON lines with --log-format json/);
  assert.match(screen, /\n {2}config {6}built-in defaults/);
  assert.match(screen, /\[\d\d:\d\d:\d\d\.\d{3}\] WARN: auth\.mode is "none"/);
  assert.match(screen, /\[\d\d:\d\d:\d\d\.\d{3}\] INFO: request \{.*"method":"GET","path":"\/v2\/","status":200/);
  assert.doesNotMatch(screen, /^\{"level"/m, 'no JSON lines on a terminal');
  // Ctrl-C on the terminal stops it cleanly.
  term.type('\x03');
  assert.equal(await term.exited, 0);
  assert.match(term.screen(), /INFO: shutting down \{.*"signal":"SIGINT"/);
});

test('on a terminal with --log-format json: JSON lines and no banner', async (t) => {
  if (!requirePeer(t, 'script')) return;
  const dir = await tempDir(t);
  const port = await freePort();
  const term = onTerminal(
    t,
    `${process.execPath} ${BERTH} serve --addr 127.0.0.1:${port} --root ${dir} --log-format json`,
  );
  await term.waitFor(/"msg":"berth registry listening"/);
  assert.doesNotMatch(term.screen(), /berth registry is running/);
  term.type('\x03');
  await term.exited;
});

test('not on a terminal: only JSON lines, the listening line names a URL that works', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const child = spawn(process.execPath, [BERTH, 'serve', '--addr', `127.0.0.1:${port}`, '--root', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.on('data', (b) => (err += b));
  const deadline = Date.now() + 20_000;
  while (!err.includes('berth registry listening') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  const lines = err.trim().split('\n');
  for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not a JSON line: ${line}`);
  const listening = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'berth registry listening');
  assert.equal(listening.url, `http://127.0.0.1:${port}`);
  assert.equal((await raw(listening.url, 'GET', '/v2/')).status, 200);
  assert.doesNotMatch(err, /berth registry is running/);
});

test('bound to every interface: the listening line names localhost (not [::] or [::1]) and it answers', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const child = spawn(process.execPath, [BERTH, 'serve', '--addr', `:${port}`, '--root', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BERTH_HTTP_WORKERS: '1' },
  });
  t.after(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.on('data', (b) => (err += b));
  const deadline = Date.now() + 20_000;
  while (!err.includes('berth registry listening') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  const listening = err
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .find((l) => l.msg === 'berth registry listening');
  assert.equal(listening.url, `http://localhost:${port}`);
  assert.equal((await raw(listening.url, 'GET', '/v2/')).status, 200);
});

test('config mistakes stop berth serve before anything is created on disk', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'never');
  const serve = (args: string[], env: Record<string, string> = {}) =>
    run(process.execPath, [BERTH, 'serve', '--root', root, ...args], { env, timeoutMs: 20_000 });

  let r = await serve(['--addr', '127.0.0.1:1'], { BERTH_HTTP_ADR: ':5001' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^berth: BERTH_HTTP_ADR: no config key has this name; did you mean BERTH_HTTP_ADDR\?/);

  r = await serve(['--addr', '127.0.0.1:99999']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim(), 'berth: --addr: invalid listen address "127.0.0.1:99999": the port must be 0–65535');

  r = await serve(['--addr', 'localhost']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^berth: --addr: http\.addr: "localhost" is not valid \(listen address: HOST:PORT/);

  r = await serve(['--log-format', 'fancy']);
  assert.equal(r.code, 2, 'a bad flag value is a usage error');
  assert.match(r.stderr, /^berth: --log-format "fancy": expected one of auto, json, pretty/);

  const file = join(dir, 'berth.yaml');
  await writeFile(file, 'http:\n  addr: "127.0.0.1:0"\ngc:\n  intervall: 1h\n');
  r = await serve(['--config', file]);
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr.trim(),
    `berth: ${file}:4:3: gc.intervall: unknown key "intervall"; did you mean "interval"? (keys here: enabled, interval, grace, deleteUntagged, concurrency)`,
  );
  assert.equal(existsSync(root), false, 'no storage root was created');
});

test('berth config defaults prints a commented config that berth config check accepts as the defaults', async (t) => {
  const dir = await tempDir(t);
  const d = await run(process.execPath, [BERTH, 'config', 'defaults']);
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /^# berth configuration/);
  const file = join(dir, 'berth.yaml');
  await writeFile(file, d.stdout);
  const c = await run(process.execPath, [BERTH, 'config', 'check', '-c', file], { env: {} });
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /: valid; the effective configuration:/);
  const bare = await run(process.execPath, [BERTH, 'config', 'check']);
  assert.deepEqual(parse(c.stdout), parse(bare.stdout), 'the printed defaults are the defaults');
  assert.equal(parse(c.stdout).http.addr, ':5000');

  await writeFile(file, 'storage:\n  s3:\n    bucket: b\n    secretAccessKey: topsecret\nauth:\n  mode: tokn\n');
  const bad = await run(process.execPath, [BERTH, 'config', 'check', '-c', file]);
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stderr.trim(),
    `berth: ${file}:6:9: auth.mode: "tokn" is not allowed; use one of none, htpasswd, token`,
  );
  await writeFile(file, 'storage:\n  s3:\n    bucket: b\n    secretAccessKey: topsecret\n');
  const ok = await run(process.execPath, [BERTH, 'config', 'check', '-c', file]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(!ok.stdout.includes('topsecret'));
  assert.equal(parse(ok.stdout).storage.s3.secretAccessKey, '<redacted>');
});

test('berth passwd: asks twice without echo on a terminal, or reads --stdin; the hash loads as auth.users', async (t) => {
  const dir = await tempDir(t);
  const piped = await run(process.execPath, [BERTH, 'passwd', 'alice', '--stdin', '--cost', '10'], {
    input: 'correct horse\n',
  });
  assert.equal(piped.code, 0, piped.stderr);
  const [entry] = parse(piped.stdout);
  assert.equal(entry.name, 'alice');
  assert.ok(await bcrypt.compare('correct horse', entry.passwordHash));
  const file = join(dir, 'berth.yaml');
  await writeFile(file, `auth:\n  mode: htpasswd\n  users:\n${piped.stdout.replace(/^/gm, '    ')}`);
  const check = await run(process.execPath, [BERTH, 'config', 'check', '-c', file, '--quiet']);
  assert.equal(check.code, 0, check.stderr);

  const noTty = await run(process.execPath, [BERTH, 'passwd', 'alice']);
  assert.equal(noTty.code, 1);
  assert.match(noTty.stderr, /no terminal to ask the password on: pipe it in with --stdin/);

  if (!requirePeer(t, 'script')) return;
  const term = onTerminal(t, `${process.execPath} ${BERTH} passwd bob --cost 10`);
  await term.waitFor(/password for bob: $/);
  term.type('s3cret pass\r');
  await term.waitFor(/again: $/);
  term.type('s3cret pass\r');
  assert.equal(await term.exited, 0, term.screen());
  assert.ok(!term.screen().includes('s3cret'), 'the password was echoed');
  const hash = /passwordHash: (\S+)/.exec(term.screen())![1];
  assert.ok(await bcrypt.compare('s3cret pass', hash));
});

test('gc, fsck and token need to be pointed at an existing berth storage; they never create ./data', async (t) => {
  const dir = await tempDir(t);
  const cwd = join(dir, 'cwd');
  await mkdir(cwd);
  for (const args of [['gc'], ['fsck'], ['token', 'list']]) {
    const r = await run(process.execPath, [BERTH, ...args], { cwd, timeoutMs: 20_000 });
    assert.equal(r.code, 1, args.join(' '));
    assert.match(
      r.stderr,
      new RegExp(`^berth: berth ${args[0]} works on a registry's storage: give --root DIR .* or -c berth\\.yaml`),
    );
    const missing = join(dir, 'nope');
    const m = await run(process.execPath, [BERTH, ...args, '--root', missing], { cwd, timeoutMs: 20_000 });
    assert.equal(m.code, 1);
    assert.equal(
      m.stderr.trim(),
      `berth: no storage at ${missing}: looked for a berth storage root (a directory with blobs/, repositories/, catalog/, …); check --root or storage.filesystem.root (the same as \`berth serve\` uses)`,
    );
    assert.equal(existsSync(missing), false);
  }
  assert.equal(existsSync(join(cwd, 'data')), false);
  // A directory that holds something else is not taken for storage.
  const home = join(dir, 'home');
  await mkdir(home);
  await writeFile(join(home, 'notes.txt'), 'x');
  const foreign = await run(process.execPath, [BERTH, 'gc', '--root', home], { timeoutMs: 20_000 });
  assert.equal(foreign.code, 1);
  assert.match(
    foreign.stderr,
    /does not look like berth storage \(it holds "notes\.txt"\): looked for a berth storage root/,
  );
  // A server's root works (an empty one too: nothing pushed yet).
  const root = join(dir, 'root');
  await mkdir(join(root, 'lost+found'), { recursive: true }); // a volume's mount point
  const ok = await run(process.execPath, [BERTH, 'gc', '--root', root, '--json'], { timeoutMs: 60_000 });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).blobs, 0);
  const token = await run(process.execPath, [BERTH, 'token', 'list', '--root', root], { timeoutMs: 20_000 });
  assert.equal(token.code, 0, token.stderr);
});
