// A `berth gc` killed (SIGKILL) during its mark or its sweep must not stall pushes (issue 14, item 6): the state it
// leaves says "mark/sweep in progress", and writers that overlap a GC wait for its sweep to end. A dead GC's state
// must be recognised as dead within seconds, so a small push right after the kill completes quickly and the next
// `berth gc` takes the lease over. On the filesystem with a GC on this host (its process is gone: dead at once) and
// on real S3 with a GC that claims another host (as a CronJob pod would: dead once its heartbeat stops for 5 s).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { startBerth, type Berth } from './support/berth.js';
import { startS3Server, S3_PEER, type S3Server } from './support/s3-server.js';
import { requirePeer } from './support/peers.js';
import { raw, sha256, pushBlob, imageManifest, pushManifest } from './support/registry-client.js';

const run = promisify(execFile);
const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const VICTIM = fileURLToPath(new URL('./support/gc-victim.ts', import.meta.url));
/** "A few seconds": well under the 30 s timeouts of common clients, with room for a loaded 2-core machine. */
const PUSH_BUDGET_MS = 10_000;

async function pushImage(berth: Berth, repo: string, tag: string): Promise<{ digest: string; blobs: string[] }> {
  const config = Buffer.from(JSON.stringify({ nonce: randomBytes(8).toString('hex') }));
  const layer = randomBytes(2048);
  const blobs = [await pushBlob(berth.url, repo, config), await pushBlob(berth.url, repo, layer)];
  const body = imageManifest({ digest: blobs[0], size: config.length }, [{ digest: blobs[1], size: layer.length }]);
  const res = await pushManifest(berth.url, repo, tag, body);
  if (res.status !== 201) throw new Error(`PUT manifest ${res.status} ${res.body}`);
  return { digest: sha256(body), blobs };
}

/** Starts the stuck GC and SIGKILLs it once it is frozen in `phase`. */
async function killGcDuring(t: TestContext, phase: 'mark' | 'sweep', where: object, foreign: boolean): Promise<void> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', VICTIM, phase, JSON.stringify(where), ...(foreign ? ['foreign'] : [])],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b) => {
      out += b;
      if (out.includes(`stuck ${phase}`)) resolve();
    });
    child.stderr.on('data', (b) => (out += b));
    child.once('exit', (code) => reject(new Error(`the GC exited (${code}) before it got stuck:\n${out}`)));
  });
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function crashThenPush(
  t: TestContext,
  berth: Berth,
  where: object,
  gcArgs: string[],
  foreign = false,
): Promise<void> {
  for (const phase of ['mark', 'sweep'] as const) {
    // Garbage for the sweep to start on: an image pushed, then deleted.
    const old = await pushImage(berth, 'crash/old', phase);
    assert.equal((await raw(berth.url, 'DELETE', `/v2/crash/old/manifests/${old.digest}`)).status, 202);
    await killGcDuring(t, phase, where, foreign);

    const started = Date.now();
    const pushed = await Promise.race([
      pushImage(berth, 'crash/app', `after-${phase}`),
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`a push after a GC killed during its ${phase} took over ${3 * PUSH_BUDGET_MS} ms`)),
          3 * PUSH_BUDGET_MS,
        ).unref(),
      ),
    ]);
    const ms = Date.now() - started;
    t.diagnostic(`push after a GC killed during its ${phase}: ${ms} ms`);
    assert.ok(ms < PUSH_BUDGET_MS, `push after a GC killed during its ${phase} took ${ms} ms`);

    // The next GC takes the dead one's lease over (no "lease held" for a minute) and keeps what is tagged.
    const gc = await run(process.execPath, [BERTH, 'gc', ...gcArgs, '--grace', '0s', '--json'], { timeout: 60_000 });
    assert.ok(JSON.parse(gc.stdout).blobs >= 2, 'the next GC ran and swept the deleted image');
    const m = await raw(berth.url, 'GET', `/v2/crash/app/manifests/after-${phase}`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(m.status, 200);
    assert.equal(sha256(m.body), pushed.digest);
    for (const d of pushed.blobs)
      assert.equal((await raw(berth.url, 'GET', `/v2/crash/app/blobs/${d}`)).status, 200, `${d} kept`);
  }
}

test('a GC killed during mark or sweep does not stall pushes (filesystem)', { timeout: 240_000 }, async (t) => {
  const berth = await startBerth(t, { config: 'log: { requests: false }\n' });
  await crashThenPush(t, berth, { fs: berth.root }, ['--root', berth.root]);
});

test('a GC killed during mark or sweep does not stall pushes (S3)', { timeout: 300_000 }, async (t) => {
  if (!requirePeer(t, S3_PEER)) return;
  const s3: S3Server = await startS3Server();
  t.after(() => s3.stop());
  const s3opts = {
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    prefix: 'crash',
  };
  const yaml = [
    'storage:',
    '  s3:',
    ...Object.entries(s3opts).map(([k, v]) => `    ${k}: ${v}`),
    'log: { requests: false }',
    '',
  ].join('\n');
  const berth = await startBerth(t, { config: yaml });
  const file = `${berth.root}-gc.yaml`;
  await writeFile(file, yaml);
  t.after(() => rm(file, { force: true }));
  await crashThenPush(t, berth, { s3: s3opts }, ['--config', file], true);
});
