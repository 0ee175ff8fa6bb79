// Proves the harness in support/peers.ts against distribution 2.8.2: real clients push, pull, run and list a busybox image
// built without docker, and every daemon the harness starts is gone (by pid) after stop().
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import bcrypt from 'bcryptjs';
import { makeClients } from './support/clients.js';
import { startDistribution, type Distribution } from './support/distribution.js';
import { startContainerd, startDockerd } from './support/docker.js';
import { makeBusyboxLayout, makeMultiArchLayout } from './support/oci-layouts.js';
import { findExecutable, ok, readJson, requirePeer, run, type RunResult } from './support/peers.js';
import { validateImage } from './support/validate-image.js';

async function workDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp('/tmp/peers-test-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('requirePeer skips a missing tool, or fails under CI=true', async (t) => {
  const saved = process.env.CI;
  t.after(() => (process.env.CI = saved));
  process.env.CI = 'true';
  assert.throws(() => requirePeer(t, 'no-such-berth-peer'), /no-such-berth-peer.*install-peers\.sh/);
  delete process.env.CI;
  // Outside CI the test is skipped: observed on a stand-in context so this run itself reports no skip.
  const skips: string[] = [];
  const probe = { skip: (why: string) => skips.push(why) } as unknown as TestContext;
  assert.equal(requirePeer(probe, 'no-such-berth-peer'), false);
  assert.match(skips[0], /missing peer: no-such-berth-peer/);
  assert.equal(requirePeer(t, 'node'), true);
});

test('run collects output and exit codes, and kills a command that outlives its timeout', async () => {
  const r = await run('sh', ['-c', 'echo out; echo err >&2; exit 3']);
  assert.deepEqual([r.code, r.stdout, r.stderr], [3, 'out\n', 'err\n']);
  assert.throws(() => ok(r), /exit 3: sh -c/);
  assert.equal(ok(await run('cat', [], { input: 'piped' })), 'piped');
  await assert.rejects(run('sleep', ['30'], { timeoutMs: 200 }), /timed out after 200 ms: sleep 30/);
});

test('findExecutable looks in /opt/berth-tools/bin too', (t) => {
  if (!requirePeer(t, 'crane')) return;
  assert.match(findExecutable('crane')!, /\/crane$/);
});

test('busybox layouts are deterministic', async (t) => {
  if (!requirePeer(t, 'busybox')) return;
  const dir = await workDir(t);
  const a = await makeBusyboxLayout(join(dir, 'a'), { tag: 'v1' });
  const b = await makeBusyboxLayout(join(dir, 'b'), { tag: 'v1' });
  assert.deepEqual(a.manifest, b.manifest);
  const c = await makeBusyboxLayout(join(dir, 'a'), { tag: 'v2', files: { '/etc/marker': 'c' } });
  assert.notEqual(c.layer.digest, a.layer.digest);
  const index = await readJson<{ manifests: unknown[] }>(join(dir, 'a', 'index.json'));
  assert.equal(index.manifests.length, 2, 'a second tag is added to the same layout');
});

test('validateImage accepts a whole image and names what is wrong with a broken one', async (t) => {
  if (!requirePeer(t, 'busybox')) return;
  const dir = await workDir(t);
  const img = await makeBusyboxLayout(join(dir, 'ok'), { tag: 'v1' });
  const v = await validateImage(`oci:${img.dir}:v1`, { platform: 'linux/amd64', layers: 1 });
  assert.equal(v.digest, img.manifest.digest);
  assert.deepEqual(v.layers, [{ ...img.layer, diffId: img.diffId }]);
  await assert.rejects(validateImage(`oci:${img.dir}:v1`, { platform: 'linux/arm64' }), /platform/);
  const multi = await makeMultiArchLayout(join(dir, 'multi'));
  const m = await validateImage(multi.ref);
  assert.deepEqual(
    m.images?.map((i) => i.platform),
    ['linux/amd64', 'linux/arm64/v8'],
  );

  // A layer blob swapped for other bytes: its digest no longer matches the descriptor.
  const other = await makeBusyboxLayout(join(dir, 'other'), { tag: 'v1', files: { '/etc/x': 'x' } });
  const hex = img.layer.digest.slice('sha256:'.length);
  await copyFile(join(other.dir, 'blobs/sha256', other.layer.digest.slice(7)), join(img.dir, 'blobs/sha256', hex));
  await assert.rejects(validateImage(`oci:${img.dir}:v1`), new RegExp(`blob ${img.layer.digest} hashes to`));

  // A config whose diff_id is not the uncompressed layer (manifest and config rewritten consistently otherwise).
  const bad = await makeBusyboxLayout(join(dir, 'bad'), { tag: 'v1' });
  const blob = (d: string) => join(bad.dir, 'blobs/sha256', d.slice(7));
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const manifest = JSON.parse(await readFile(blob(bad.manifest.digest), 'utf8'));
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8'));
  config.rootfs.diff_ids = [bad.layer.digest];
  const cfgBytes = Buffer.from(JSON.stringify(config));
  manifest.config = { ...manifest.config, digest: sha(cfgBytes), size: cfgBytes.length };
  await writeFile(blob(manifest.config.digest), cfgBytes);
  const mBytes = Buffer.from(JSON.stringify(manifest));
  await writeFile(blob(sha(mBytes)), mBytes);
  await assert.rejects(validateImage(`oci:${bad.dir}@${sha(mBytes)}`), /uncompressed .* config diff_id/);
});

test('real peers against distribution 2.8.2', async (t) => {
  if (!requirePeer(t, 'distribution', 'skopeo', 'busybox')) return;
  const registry = await startDistribution();
  t.after(registry.stop);
  const clients = await makeClients(t);
  const dir = await workDir(t);
  const image = await makeBusyboxLayout(join(dir, 'busybox'), { tag: 'v1' });
  const ref = `${registry.host}/x:v1`;
  ok(await clients.skopeo(['copy', image.ref, `docker://${ref}`, '--dest-tls-verify=false']));

  await t.test('docker pulls and runs it, and stop() ends dockerd by pid', async (t) => {
    if (!requirePeer(t, 'docker')) return;
    const engine = await startDockerd({ insecureRegistries: [registry.host], registryMirrors: [registry.url] });
    t.after(engine.stop);
    ok(await engine.docker(['pull', ref]));
    const out = ok(await engine.docker(['run', '--rm', '--network', 'none', ref]));
    assert.equal(out.trim(), 'hello-from-berth');
    // docker.io/library/mirrored:v1 can only come from the mirror: nothing here reaches the internet.
    ok(
      await clients.skopeo([
        'copy',
        image.ref,
        `docker://${registry.host}/library/mirrored:v1`,
        '--dest-tls-verify=false',
      ]),
    );
    ok(await engine.docker(['pull', 'mirrored:v1']));
    const managed = join(engine.dir, 'exec', 'containerd', 'containerd.pid');
    const containerdPid = Number(readFileSync(managed, 'utf8'));
    await engine.stop();
    assert.equal(alive(engine.pid), false, 'dockerd is gone');
    assert.equal(alive(containerdPid), false, 'its managed containerd is gone');
    assert.equal(existsSync(engine.dir), false, 'its temp dir is removed');
  });

  await t.test('ctr pulls and unpacks it', async (t) => {
    if (!requirePeer(t, 'containerd')) return;
    const containerd = await startContainerd();
    t.after(containerd.stop);
    ok(await containerd.ctr(['images', 'pull', '--plain-http', ref]));
    const snapshots = join(containerd.dir, 'root', 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    const unpacked = readdirSync(snapshots).some((id) => existsSync(join(snapshots, id, 'fs', 'bin', 'busybox')));
    assert.ok(unpacked, 'the layer is unpacked into an overlayfs snapshot');
  });

  await t.test('crane, oras and regctl list its tags', async (t) => {
    if (!requirePeer(t, 'crane', 'oras', 'regctl')) return;
    assert.equal(ok(await clients.crane(['ls', `${registry.host}/x`])).trim(), 'v1');
    assert.equal(ok(await clients.oras(['repo', 'tags', '--plain-http', `${registry.host}/x`])).trim(), 'v1');
    ok(await clients.regctl(['registry', 'set', '--tls', 'disabled', registry.host]));
    assert.equal(ok(await clients.regctl(['tag', 'ls', `${registry.host}/x`])).trim(), 'v1');
    assert.equal(ok(await clients.crane(['digest', ref])).trim(), image.manifest.digest);
  });

  await t.test('podman pulls, runs and pushes it', async (t) => {
    if (!requirePeer(t, 'podman')) return;
    ok(await clients.podman(['pull', '--tls-verify=false', ref]));
    const out = ok(await clients.podman(['run', '--rm', '--network', 'none', ref]));
    assert.equal(out.trim(), 'hello-from-berth');
    ok(await clients.podman(['push', '--tls-verify=false', ref, `${registry.host}/from-podman:v1`]));
    const tags = ok(await clients.skopeo(['list-tags', '--tls-verify=false', `docker://${registry.host}/from-podman`]));
    assert.deepEqual(JSON.parse(tags).Tags, ['v1']);
  });

  await t.test('skopeo copy --all keeps the index digest both ways', async () => {
    await checkMultiArchRoundTrip(registry, clients.skopeo, dir);
  });
});

async function checkMultiArchRoundTrip(
  registry: Distribution,
  skopeo: (args: string[]) => Promise<RunResult>,
  dir: string,
): Promise<void> {
  const multi = await makeMultiArchLayout(join(dir, 'multi'), { tag: 'm1' });
  const remote = `docker://${registry.host}/multi:m1`;
  ok(await skopeo(['copy', '--all', multi.ref, remote, '--dest-tls-verify=false']));
  const raw = JSON.parse(ok(await skopeo(['inspect', '--raw', '--tls-verify=false', remote])));
  assert.equal(raw.manifests.length, 2);
  const pushed = ok(await skopeo(['inspect', '--format', '{{.Digest}}', '--tls-verify=false', remote])).trim();
  assert.equal(pushed, multi.index.digest);
  const back = join(dir, 'back');
  ok(await skopeo(['copy', '--all', '--src-tls-verify=false', remote, `oci:${back}:m1`]));
  const index = await readJson<{ manifests: Array<{ digest: string }> }>(join(back, 'index.json'));
  assert.equal(index.manifests[0].digest, multi.index.digest);
}

test('distribution options: Basic auth, and a pull-through cache of another distribution', async (t) => {
  if (!requirePeer(t, 'distribution', 'skopeo', 'crane', 'busybox')) return;
  const dir = await workDir(t);
  const clients = await makeClients(t);
  const image = await makeBusyboxLayout(join(dir, 'layout'), { tag: 'v1' });

  const htpasswd = join(dir, 'htpasswd');
  await writeFile(htpasswd, `alice:${bcrypt.hashSync('secret', 10)}\n`);
  const locked = await startDistribution({ htpasswd });
  t.after(locked.stop);
  const push = (creds: string[]) =>
    clients.skopeo(['copy', ...creds, '--dest-tls-verify=false', image.ref, `docker://${locked.host}/x:v1`]);
  assert.notEqual((await push([])).code, 0, 'anonymous push is refused');
  ok(await push(['--dest-creds', 'alice:secret']));

  const upstream = await startDistribution();
  t.after(upstream.stop);
  ok(await clients.skopeo(['copy', '--dest-tls-verify=false', image.ref, `docker://${upstream.host}/x:v1`]));
  const cache = await startDistribution({ proxy: { remoteurl: upstream.url } });
  t.after(cache.stop);
  assert.equal(ok(await clients.crane(['digest', `${cache.host}/x:v1`])).trim(), image.manifest.digest);
});
