// What a person sees while berth moves bytes (issue 17 "Progress"): in a real pseudo-terminal (tmux) a 30-layer
// push in a 15-line terminal keeps its live display inside the screen and leaves only its final lines; in a pipe
// (CI logs) a throttled 300 MB push prints a line per blob and a periodic overall line while it runs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startBerth } from './support/berth.js';
import { berth as berthFromSource, writeTree } from './support/builder-fixtures.js';
import { requirePeer, run } from './support/peers.js';
import { startSlowProxy } from './support/counting-proxy.js';
import { makeLayeredLayout } from './support/oci-layouts.js';

const BIN = fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const MiB = 1024 * 1024;
const LAYER_LINE = /^[0-9a-f]{12} /;

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const d = await mkdtemp(`/tmp/${prefix}-`);
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

test('terminal: a 30-layer push in a 100x15 tmux pane stays inside the screen and ends with its summary', async (t) => {
  if (!requirePeer(t, 'tmux')) return;
  const work = await tempDir(t, 'berth-tty');
  const srv = await startBerth(t);
  t.after(() => srv.stop());
  // ~1 MiB/s per connection: 30 layers of 3 MiB in parallel take a few seconds, long enough to see frames.
  const proxy = await startSlowProxy(srv.url, MiB);
  t.after(() => proxy.stop());
  const img = await makeLayeredLayout(join(work, 'layout'), { layers: 30, layerBytes: 3 * MiB });

  // A private tmux server (its own socket), stopped by this test alone.
  const tmux = (...args: string[]) => run('tmux', ['-L', `berth-test-${process.pid}`, ...args], { timeoutMs: 30_000 });
  t.after(() => tmux('kill-server'));
  const cmd = [
    'env -u CI TERM=xterm-256color',
    `"${process.execPath}" "${BIN}" push --jobs 30 "${img.dir}:${img.tag}" ${proxy.host}/tty/app:v1;`,
    'echo EXIT=$?; sleep 300',
  ].join(' ');
  assert.equal((await tmux('new-session', '-d', '-s', 'push', '-x', '100', '-y', '15', cmd)).code, 0);
  const screen = async (history = false) =>
    (await tmux('capture-pane', '-p', '-J', '-t', 'push', ...(history ? ['-S', '-'] : []))).stdout;

  const frames: string[] = [];
  const deadline = Date.now() + 240_000;
  let last = '';
  while (!/EXIT=\d+/.test(last) && Date.now() < deadline) {
    await sleep(150);
    last = await screen();
    frames.push(last);
  }
  assert.match(last, /EXIT=0/, `push finished:\n${last}`);

  // While it ran: a bounded window — the count line, busy layers, then "… and N more" instead of 30 rows.
  const live = frames.filter((f) => /… and \d+ more/.test(f));
  assert.ok(
    live.length > 0,
    `a frame with "… and N more" was shown; last frames:\n${frames.slice(-3).join('\n---\n')}`,
  );
  for (const f of live) {
    const rows = f.split('\n').filter((l) => l.trim());
    assert.ok(rows.length <= 14, `frame fits in 14 rows:\n${f}`);
    assert.match(rows[0], /^\d+ of \d+ blobs done: /, f);
    assert.ok(
      rows.slice(1, -1).every((l) => LAYER_LINE.test(l)),
      f,
    );
  }

  // The end, including everything scrolled off: no layer rows left behind (no duplicated blocks), the final count,
  // then the summary as the last line the command printed.
  const all = (await screen(true)).split('\n').filter((l) => l.trim());
  assert.deepEqual(
    all.filter((l) => LAYER_LINE.test(l) || /more$/.test(l)),
    [],
    `no stale layer rows:\n${all.join('\n')}`,
  );
  assert.equal(all.length, 3, `exactly: count line, summary, exit marker:\n${all.join('\n')}`);
  assert.match(all[0], /^31 blobs: 31 uploaded — 90\.0 MiB in /);
  assert.match(all[1], new RegExp(`^pushed ${proxy.host}/tty/app:v1@sha256:[0-9a-f]{64}$`));
  assert.equal(all[2], 'EXIT=0');
});

test('plain (a pipe): a throttled 300 MB push prints a line per blob and a periodic overall line', async (t) => {
  const work = await tempDir(t, 'berth-plain');
  const srv = await startBerth(t);
  t.after(() => srv.stop());
  // 3 layers of 100 MiB, ~8 MiB/s each in parallel: about 12 s, so the ~5 s overall line must appear twice.
  const proxy = await startSlowProxy(srv.url, 8 * MiB);
  t.after(() => proxy.stop());
  const img = await makeLayeredLayout(join(work, 'layout'), { layers: 3, layerBytes: 100 * MiB });

  const started = Date.now();
  const child = spawn(process.execPath, [BIN, 'push', `${img.dir}:${img.tag}`, `${proxy.host}/plain/app:v1`], {
    env: { ...process.env, CI: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const lines: { at: number; text: string }[] = [];
  let stdout = '';
  let partial = '';
  child.stdout.on('data', (b) => (stdout += b));
  child.stderr.on('data', (b) => {
    partial += b;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const text of parts) lines.push({ at: Date.now() - started, text });
  });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const shown = lines.map((l) => `${(l.at / 1000).toFixed(1)}s ${l.text}`).join('\n');
  assert.equal(code, 0, shown);
  assert.match(stdout, new RegExp(`^pushed ${proxy.host}/plain/app:v1@sha256:[0-9a-f]{64}\\n$`));
  assert.ok(!lines.some((l) => l.text.includes('\x1b')), `no terminal escapes in a pipe:\n${shown}`);

  const starts = lines.filter((l) => /^pushing blob [0-9a-f]{12} \(100\.0 MiB\)$/.test(l.text));
  const ends = lines.filter((l) => /^pushed blob [0-9a-f]{12} \(100\.0 MiB in [\d.ms]+\)$/.test(l.text));
  assert.equal(starts.length, 3, shown);
  assert.equal(ends.length, 3, shown);
  const overall = lines.filter((l) => /^\d+ of \d+ blobs done: .* of .*, [\d.]+ [KMG]?i?B\/s$/.test(l.text));
  assert.ok(overall.length >= 2, `periodic overall lines:\n${shown}`);
  for (let i = 1; i < overall.length; i++)
    assert.ok(overall[i].at - overall[i - 1].at >= 4000, `about 5 s apart:\n${shown}`);
  assert.ok(overall[0].at < Math.min(...ends.map((e) => e.at)), `progress shown while bytes move:\n${shown}`);
  assert.match(lines.at(-1)!.text, /^4 blobs: 4 uploaded — 300\.0 MiB in /, shown);

  // A pull through the same renderer says what happened to a pull's blobs.
  const pulled = await run(
    process.execPath,
    [BIN, 'pull', `${srv.host}/plain/app:v1`, '--oci-layout', join(work, 'pulled')],
    { env: { CI: 'true' }, timeoutMs: 120_000 },
  );
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.match(pulled.stderr, /^pulled blob [0-9a-f]{12} \(100\.0 MiB in /m);
  assert.match(pulled.stderr, /\n4 blobs: 4 downloaded — 300\.0 MiB in [^\n]+\n$/);
});

test('plain (a pipe): berth build reports its stages — layers built, then reused, then the push', async (t) => {
  const work = await tempDir(t, 'berth-build-stages');
  const srv = await startBerth(t);
  t.after(() => srv.stop());
  await writeTree(work, {
    'berth.yaml': [
      'apiVersion: berth/v1',
      'kind: Image',
      'base: scratch',
      'platforms: [linux/amd64]',
      'layers:',
      '  - name: app',
      '    files: [{ src: app.bin, dest: /app.bin }]',
      '  - name: motd',
      '    files: [{ inline: "hello\\n", dest: /etc/motd }]',
    ].join('\n'),
    'app.bin': Buffer.alloc(2 * MiB, 7),
  });
  const build = () =>
    berthFromSource(
      ['build', '-f', join(work, 'berth.yaml'), '--cache', join(work, 'cache'), '--push', `${srv.host}/stages/app:v1`],
      { env: { CI: 'true' }, timeoutMs: 120_000 },
    );
  const first = await build();
  assert.equal(first.code, 0, first.stderr);
  const stages = first.stderr.split('\n').filter(Boolean);
  const at = (re: RegExp) => stages.findIndex((l) => re.test(l));
  const order = [
    /^\[[\d.ms]+\] linux\/amd64 layer app: building \(tar \+ gzip, unless cached\)$/,
    /^\[[\d.ms]+\] linux\/amd64 layer app: sha256:[0-9a-f]{64} built, [\d.]+ KiB compressed$/,
    /^\[[\d.ms]+\] pushing to --push 127\.0\.0\.1:\d+\/stages\/app:v1$/,
    /^pushing blob [0-9a-f]{12} /,
    /^\[[\d.ms]+\] pushed 127\.0\.0\.1:\d+\/stages\/app:v1@sha256:/,
    /^\d+ blobs: \d+ uploaded — /,
  ].map(at);
  assert.ok(
    order.every((i, n) => i >= 0 && (n === 0 || i > order[n - 1])),
    `stages in order ${order}:\n${first.stderr}`,
  );
  assert.match(first.stdout, /^sha256:[0-9a-f]{64}\n$/, 'stdout keeps only the digest');

  const second = await build();
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /layer app: sha256:[0-9a-f]{64} reused from cache/);
  assert.match(second.stderr, /layer motd: sha256:[0-9a-f]{64} reused from cache/);
  assert.equal(second.stdout, first.stdout);
  const quiet = await berthFromSource(['build', '-q', '-f', join(work, 'berth.yaml'), '--cache', join(work, 'cache')], {
    env: { CI: 'true' },
    timeoutMs: 120_000,
  });
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(quiet.stderr, '', '--quiet prints no stages');
});
