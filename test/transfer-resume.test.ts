// Resumable pulls, measured at the server: a pull of a 200 MiB layer killed (SIGKILL) at ~30 % and run again
// downloads only the remainder (bytes counted by a proxy in front of berth serve) and leaves no temp file; Ctrl-C
// (SIGINT) leaves only `<blob>.partial`; a corrupted partial is detected by its digest, discarded and downloaded
// again in full, and the result is correct.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import tar from 'tar-stream';
import { startBerth } from './support/berth.js';
import { startCountingProxy } from './support/counting-proxy.js';
import { berthCli, listFiles, makeBigLayout, spawnBerth } from './support/transfer-fixtures.js';
import { ok } from './support/peers.js';

const SIZE = 200 << 20;

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

/** Starts a pull and sends `signal` once `partial` holds at least `fraction` of SIZE; returns the kept length. */
async function interruptAt(
  args: string[],
  partial: string,
  fraction: number,
  signal: NodeJS.Signals,
): Promise<{ kept: number; code: number | null; signal: string | null; stderr: string }> {
  const p = spawnBerth(args);
  const deadline = Date.now() + 60_000;
  let exited = false;
  p.done.then(() => (exited = true));
  while (!exited && (await sizeOf(partial)) < SIZE * fraction) {
    assert.ok(Date.now() < deadline, `the pull never reached ${fraction * 100}%: ${p.stderr()}`);
    await sleep(10);
  }
  assert.ok(!exited, `the pull ended before it could be interrupted: ${p.stderr()}`);
  p.child.kill(signal);
  const end = await p.done;
  return { kept: await sizeOf(partial), ...end, stderr: p.stderr() };
}

test('an interrupted pull resumes with Range: only the remainder crosses the wire; a corrupt partial is re-downloaded', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'berth-resume-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const img = await makeBigLayout(join(work, 'src'), SIZE);
  const reg = await startBerth(t);
  ok(await berthCli(['push', `${img.dir}:${img.tag}`, `${reg.host}/big/app:v1`, '--json']));
  const proxy = await startCountingProxy(reg.url);
  t.after(() => proxy.stop());
  const ref = `${proxy.host}/big/app:v1`;
  const hex = img.layer.digest.slice('sha256:'.length);
  const layerGets = () => proxy.bytesOut('GET', `/blobs/${img.layer.digest}`);

  // 1. SIGKILL at ~30 %: only the partial is left; the rerun fetches exactly what the partial lacks.
  const out = join(work, 'out');
  const blob = join(out, 'blobs', 'sha256', hex);
  proxy.rate = 60 << 20;
  const killed = await interruptAt(['pull', ref, '--oci-layout', `${out}:v1`], `${blob}.partial`, 0.3, 'SIGKILL');
  assert.equal(killed.signal, 'SIGKILL');
  assert.ok(killed.kept >= SIZE * 0.3 && killed.kept < SIZE, `kept ${killed.kept} of ${SIZE}`);
  let left = await listFiles(out);
  assert.ok(left.includes(`blobs/sha256/${hex}.partial`), left.join(', '));
  assert.ok(!left.includes(`blobs/sha256/${hex}`), 'the layer is not published before it is complete');
  assert.ok(!left.some((f) => f.endsWith('.tmp')), `no temp file: ${left.join(', ')}`);

  proxy.rate = undefined;
  proxy.bytes.clear();
  ok(await berthCli(['pull', ref, '--oci-layout', `${out}:v1`, '--json']));
  assert.equal(layerGets(), SIZE - killed.kept, 'the rerun downloads only the bytes the partial lacks');
  assert.equal(await sha256File(blob), img.layer.digest);
  left = await listFiles(out);
  assert.ok(!left.some((f) => f.endsWith('.tmp') || f.endsWith('.partial')), `nothing left over: ${left.join(', ')}`);

  // 2. Ctrl-C (SIGINT): a clean exit (130) that leaves the partial and nothing else temporary.
  const out2 = join(work, 'out2');
  const blob2 = join(out2, 'blobs', 'sha256', hex);
  proxy.rate = 60 << 20;
  const stopped = await interruptAt(['pull', ref, '--oci-layout', `${out2}:v1`], `${blob2}.partial`, 0.3, 'SIGINT');
  assert.equal(stopped.code, 130, stopped.stderr);
  assert.match(stopped.stderr, /interrupted \(SIGINT\); partial downloads are kept/);
  left = await listFiles(out2);
  assert.ok(left.includes(`blobs/sha256/${hex}.partial`), left.join(', '));
  assert.ok(!left.some((f) => f.endsWith('.tmp')), `no temp file after Ctrl-C: ${left.join(', ')}`);
  assert.ok(!left.includes(`blobs/sha256/${hex}`));

  // 3. The partial is corrupted (a flipped run of bytes): its digest check fails, it is discarded, and the blob is
  // downloaded again from the start — the remainder plus a full copy cross the wire, and the result is correct.
  const fh = await open(`${blob2}.partial`, 'r+');
  await fh.write(Buffer.alloc(4096, 0xa5), 0, 4096, 1 << 20);
  await fh.close();
  proxy.rate = undefined;
  proxy.bytes.clear();
  ok(await berthCli(['pull', ref, '--oci-layout', `${out2}:v1`, '--json']));
  assert.equal(layerGets(), SIZE - stopped.kept + SIZE, 'remainder (then found corrupt) + one full download');
  assert.equal(await sha256File(blob2), img.layer.digest);
  left = await listFiles(out2);
  assert.ok(!left.some((f) => f.endsWith('.tmp') || f.endsWith('.partial')), left.join(', '));
});

test('an interrupted pull into a docker-archive resumes too: the rerun downloads only the remainder and leaves only the tar', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'berth-resume-archive-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const img = await makeBigLayout(join(work, 'src'), SIZE);
  const reg = await startBerth(t);
  ok(await berthCli(['push', `${img.dir}:${img.tag}`, `${reg.host}/big/archive:v1`, '--json']));
  const proxy = await startCountingProxy(reg.url);
  t.after(() => proxy.stop());
  const ref = `${proxy.host}/big/archive:v1`;
  const hex = img.layer.digest.slice('sha256:'.length);
  const out = join(work, 'out');
  await mkdir(out);
  const file = join(out, 'app.tar');
  const partial = join(out, '.app.tar.berth-pull', 'blobs', 'sha256', `${hex}.partial`);

  proxy.rate = 60 << 20;
  const killed = await interruptAt(['pull', ref, '--docker-archive', file], partial, 0.3, 'SIGKILL');
  assert.equal(killed.signal, 'SIGKILL');
  assert.ok(killed.kept >= SIZE * 0.3 && killed.kept < SIZE, `kept ${killed.kept} of ${SIZE}`);
  assert.ok(!(await listFiles(out)).includes('app.tar'), 'no archive before it is complete');

  proxy.rate = undefined;
  proxy.bytes.clear();
  ok(await berthCli(['pull', ref, '--docker-archive', file, '--json']));
  assert.equal(
    proxy.bytesOut('GET', `/blobs/${img.layer.digest}`),
    SIZE - killed.kept,
    'the rerun downloads only the bytes the partial lacks',
  );
  assert.deepEqual(await listFiles(out), ['app.tar'], 'the staging layout is gone; only the archive is left');
  // The archive holds the layer under its digest, byte for byte.
  const names: string[] = [];
  const extract = tar.extract();
  extract.on('entry', (h, stream, next) => {
    names.push(h.name);
    const hash = createHash('sha256');
    stream.on('data', (c) => hash.update(c as Buffer));
    stream.on('end', () => {
      if (h.name === `${hex}.tar`) assert.equal(`sha256:${hash.digest('hex')}`, img.layer.digest);
      next();
    });
  });
  await pipeline(createReadStream(file), extract);
  assert.ok(names.includes(`${hex}.tar`) && names.includes('manifest.json'), names.join(', '));
});
