// The berth transfer verbs against real peers: distribution 2.8.2 and berth serve (copy of a multi-arch image
// with referrers, digests identical end to end), skopeo/umoci on berth-written layouts and vice versa,
// docker load/run of berth's docker-archive and berth push of docker save, credentials from docker login,
// berth login and a credential helper, and one-line errors with exit 1 for bad input.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import bcrypt from 'bcryptjs';
import { remoteTarget } from '../client/copy.js';
import { Client } from '../client/remote.js';
import { digestOf } from '../spec/digest.js';
import { OCI_EMPTY, OCI_INDEX, OCI_MANIFEST } from '../spec/media-types.js';
import { startBerth } from './support/berth.js';
import { makeClients } from './support/clients.js';
import { startDistribution } from './support/distribution.js';
import { startDockerd } from './support/docker.js';
import { makeMultiArchLayout, makeBusyboxLayout } from './support/oci-layouts.js';
import { findExecutable, requirePeer, run, type RunResult } from './support/peers.js';

const BIN = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

function berth(args: string[], env: Record<string, string | undefined> = {}, input?: string): Promise<RunResult> {
  return run(process.execPath, [BIN, ...args], { env: { CI: 'true', ...env }, input, timeoutMs: 180_000 });
}
async function berthOk(args: string[], env: Record<string, string | undefined> = {}, input?: string): Promise<string> {
  const r = await berth(args, env, input);
  assert.equal(r.code, 0, `${r.command}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}
async function berthJson<T = any>(args: string[], env: Record<string, string | undefined> = {}): Promise<T> {
  return JSON.parse(await berthOk([...args, '--json'], env));
}
/** Exit `code` (README "Exit codes") with exactly one line on stderr that matches `re`. */
async function berthFails(
  code: number,
  args: string[],
  re: RegExp,
  env: Record<string, string | undefined> = {},
): Promise<void> {
  const r = await berth(args, env);
  assert.equal(r.code, code, `${r.command} should fail with exit ${code}\n${r.stdout}${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0], /^berth: /);
  assert.match(lines[0], re);
}

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const d = await mkdtemp(`/tmp/${prefix}-`);
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Pushes an artifact (signature/SBOM-like) whose subject is `subject`, through client/ (fallback tag on 2.8). */
async function pushReferrer(
  host: string,
  repo: string,
  subject: { digest: string; size: number; mediaType: string },
  artifactType: string,
  payload: string,
) {
  const r = new Client().repository(`${host}/${repo}`, { push: true });
  const empty = await r.pushBytes(Buffer.from('{}'));
  const layer = await r.pushBytes(Buffer.from(payload));
  const doc = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType,
    config: { mediaType: OCI_EMPTY, digest: empty.digest, size: empty.size },
    layers: [{ mediaType: 'application/octet-stream', digest: layer.digest, size: layer.size }],
    subject,
    annotations: { 'org.example.kind': artifactType },
  };
  const bytes = Buffer.from(JSON.stringify(doc));
  const m = { bytes, mediaType: OCI_MANIFEST, digest: digestOf(bytes) };
  await remoteTarget(r).putManifest(m.digest, m, { subject: subject as any });
  return m.digest;
}

test('copy a multi-arch image with referrers: distribution → berth → distribution, identical digests', async (t) => {
  if (!requirePeer(t, 'distribution')) return;
  const dist = await startDistribution();
  t.after(() => dist.stop());
  const srv = await startBerth(t);
  const work = await tempDir(t, 'bcopy');
  const li = await makeMultiArchLayout(join(work, 'layout'), { tag: 'v1' });

  const pushed = await berthJson(['push', `${li.dir}:v1`, `${dist.host}/src/app:v1`]);
  assert.equal(pushed.digest, li.index.digest);
  const sig = await pushReferrer(
    dist.host,
    'src/app',
    { ...li.index, mediaType: OCI_INDEX },
    'application/vnd.example.signature',
    'sig',
  );
  const sbom = await pushReferrer(
    dist.host,
    'src/app',
    { ...li.images[0], mediaType: OCI_MANIFEST },
    'application/vnd.example.sbom',
    'sbom',
  );

  const there = await berthJson(['copy', '--referrers', `${dist.host}/src/app:v1`, `${srv.host}/mid/app:v1`]);
  assert.equal(there.digest, li.index.digest);
  assert.equal(there.referrers, 2);
  const back = await berthJson(['copy', '--referrers', `${srv.host}/mid/app:v1`, `${dist.host}/back/app:v1`]);
  assert.equal(back.digest, li.index.digest);

  const c = new Client();
  for (const [host, repo] of [
    [srv.host, 'mid/app'],
    [dist.host, 'back/app'],
  ]) {
    const r = c.repository(`${host}/${repo}`);
    assert.equal((await r.getManifest('v1')).digest, li.index.digest, `${host}/${repo} index`);
    for (const img of li.images) assert.equal((await r.getManifest(img.digest)).digest, img.digest);
    assert.deepEqual(
      (await r.referrers(li.index.digest)).map((d) => d.digest),
      [sig],
      `${host}/${repo} index referrers`,
    );
    assert.deepEqual(
      (await r.referrers(li.images[0].digest)).map((d) => d.digest),
      [sbom],
      `${host}/${repo} image referrers`,
    );
  }
  assert.equal(
    (await c.repository(`${srv.host}/mid/app`).referrers(li.index.digest, 'application/vnd.example.signature'))[0]
      .artifactType,
    'application/vnd.example.signature',
  );

  // A re-copy of what is already there is a no-op; a same-registry copy mounts instead of uploading.
  const again = await berthJson(['copy', `${dist.host}/src/app:v1`, `${srv.host}/mid/app:v1`]);
  assert.equal(again.skipped, true);
  const mounted = await berthJson(['copy', `${srv.host}/mid/app:v1`, `${srv.host}/other/app:v2`]);
  assert.equal(mounted.blobs.uploaded, 0);
  assert.ok(mounted.blobs.mounted >= 1, JSON.stringify(mounted.blobs));

  // The other verbs on the result.
  assert.equal((await berthOk(['digest', `${srv.host}/other/app:v2`])).trim(), li.index.digest);
  assert.equal(
    (await berthOk(['digest', '--platform', 'linux/arm64', `${dist.host}/back/app:v1`])).trim(),
    li.images[1].digest,
  );
  const insp = await berthJson(['inspect', `${srv.host}/mid/app:v1`]);
  assert.deepEqual(
    insp.manifests.map((m: any) => m.platform),
    ['linux/amd64', 'linux/arm64/v8'],
  );
  const raw = await berthOk(['inspect', '--raw', '--json', `${dist.host}/back/app:v1`]);
  assert.equal(digestOf(raw.replace(/\n$/, '')), li.index.digest);
  const cfg = await berthJson(['inspect', '--config', '--platform', 'linux/amd64', `${srv.host}/mid/app:v1`]);
  assert.equal(cfg.architecture, 'amd64');
  await berthOk(['tag', `${srv.host}/mid/app:v1`, 'stable']);
  assert.deepEqual((await berthJson(['tags', `${srv.host}/mid/app`])).tags.sort(), ['stable', 'v1']);
  const cat = await berthJson(['catalog', dist.host]);
  for (const r of ['back/app', 'src/app']) assert.ok(cat.repositories.includes(r), JSON.stringify(cat));
  const del = await berthJson(['delete', `${dist.host}/back/app:v1`]);
  assert.equal(del.deleted, li.index.digest);
  await berthFails(4, ['digest', `${dist.host}/back/app:v1`], /MANIFEST_UNKNOWN|404/);
});

test('referrers in an OCI layout: pull --referrers lists them in index.json, oras discovers them, push --referrers carries them', async (t) => {
  if (!requirePeer(t, 'distribution', 'oras')) return;
  const dist = await startDistribution();
  t.after(() => dist.stop());
  const work = await tempDir(t, 'blref');
  const li = await makeMultiArchLayout(join(work, 'src'), { tag: 'v1' });
  await berthOk(['push', `${li.dir}:v1`, `${dist.host}/src/app:v1`]);
  const sig = await pushReferrer(
    dist.host,
    'src/app',
    { ...li.index, mediaType: OCI_INDEX },
    'application/vnd.example.signature',
    'sig',
  );
  const sbom = await pushReferrer(
    dist.host,
    'src/app',
    { ...li.images[0], mediaType: OCI_MANIFEST },
    'application/vnd.example.sbom',
    'sbom',
  );

  const dir = join(work, 'pulled');
  const pulled = await berthJson(['pull', '--referrers', `${dist.host}/src/app:v1`, '--oci-layout', `${dir}:v1`]);
  assert.equal(pulled.referrers, 2);
  const listed = async () => JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')).manifests as any[];
  const entries = await listed();
  assert.deepEqual(entries.map((d) => d.digest).sort(), [li.index.digest, sig, sbom].sort());
  const sigEntry = entries.find((d) => d.digest === sig);
  assert.equal(sigEntry.artifactType, 'application/vnd.example.signature');
  assert.equal(sigEntry.annotations['org.example.kind'], 'application/vnd.example.signature');
  assert.equal(sigEntry.annotations['org.opencontainers.image.ref.name'], undefined);
  // Pulling again adds nothing; a layout written before referrers were listed gets its entries on a re-pull.
  await berthOk(['pull', '--referrers', `${dist.host}/src/app:v1`, '--oci-layout', `${dir}:v1`]);
  assert.equal((await listed()).length, 3);

  // oras-go's layout store finds referrers by scanning the listed manifests for `subject`.
  const oras = findExecutable('oras')!;
  const found = await run(oras, ['discover', '--format', 'json', '--oci-layout', `${dir}:v1`]);
  assert.equal(found.code, 0, found.stderr);
  assert.deepEqual(
    JSON.parse(found.stdout).referrers.map((r: any) => r.digest),
    [sig],
  );
  const child = await run(oras, [
    'discover',
    '--format',
    'json',
    '--platform',
    'linux/amd64',
    '--oci-layout',
    `${dir}:v1`,
  ]);
  assert.equal(child.code, 0, child.stderr);
  assert.deepEqual(
    JSON.parse(child.stdout).referrers.map((r: any) => r.digest),
    [sbom],
  );

  // The layout as a source: referrers travel with push --referrers (fallback tags on distribution 2.8).
  const pushed = await berthJson(['push', '--referrers', dir, `${dist.host}/back/app:v1`]);
  assert.equal(pushed.digest, li.index.digest, 'a bare DIR picks the image, not its referrers');
  assert.equal(pushed.referrers, 2);
  const back = new Client().repository(`${dist.host}/back/app`);
  assert.deepEqual(
    (await back.referrers(li.index.digest)).map((d) => d.digest),
    [sig],
  );
  assert.deepEqual(
    (await back.referrers(li.images[0].digest)).map((d) => d.digest),
    [sbom],
  );
  assert.equal((await back.getManifest(sig)).digest, sig);
});

test('OCI layouts: skopeo and umoci read what berth wrote, berth reads what skopeo wrote', async (t) => {
  if (!requirePeer(t, 'distribution', 'skopeo', 'umoci')) return;
  const dist = await startDistribution();
  t.after(() => dist.stop());
  const clients = await makeClients(t);
  const work = await tempDir(t, 'blayout');
  const li = await makeMultiArchLayout(join(work, 'seed'));
  await berthOk(['push', li.dir, `${dist.host}/seed/app:v1`]);

  // berth pull → layout → skopeo copy (all platforms) → identical index digest.
  const pulled = join(work, 'pulled');
  await berthOk(['pull', `${dist.host}/seed/app:v1`, '--oci-layout', pulled]);
  const sk = await clients.skopeo([
    'copy',
    '--all',
    '--dest-tls-verify=false',
    `oci:${pulled}:v1`,
    `docker://${dist.host}/via-skopeo/app:v1`,
  ]);
  assert.equal(sk.code, 0, sk.stderr);
  assert.equal(
    (await new Client().repository(`${dist.host}/via-skopeo/app`).getManifest('v1')).digest,
    li.index.digest,
  );

  // umoci unpacks a single-platform berth layout (rootless).
  const single = join(work, 'single');
  await berthOk(['pull', '--platform', 'linux/amd64', `${dist.host}/seed/app:v1`, '--oci-layout', `${single}:amd64`]);
  const um = await run('umoci', ['unpack', '--rootless', '--image', `${single}:amd64`, join(work, 'bundle')]);
  assert.equal(um.code, 0, um.stderr);
  assert.ok((await readFile(join(work, 'bundle', 'rootfs', 'bin', 'busybox'))).length > 100_000);

  // skopeo writes a layout; berth pushes it unchanged.
  const skl = join(work, 'skopeo-layout');
  const sk2 = await clients.skopeo([
    'copy',
    '--all',
    '--src-tls-verify=false',
    `docker://${dist.host}/seed/app:v1`,
    `oci:${skl}:t`,
  ]);
  assert.equal(sk2.code, 0, sk2.stderr);
  const res = await berthJson(['push', `${skl}:t`, `${dist.host}/from-skopeo/app:t`]);
  assert.equal(res.digest, li.index.digest);
});

test('docker: berth pull --docker-archive → docker load → docker run; docker save → berth push; docker login credentials', async (t) => {
  if (!requirePeer(t, 'distribution', 'docker', 'busybox')) return;
  const work = await tempDir(t, 'bdocker');
  const htpasswd = join(work, 'htpasswd');
  await writeFile(htpasswd, `alice:${bcrypt.hashSync('s3cret', 8)}\n`);
  const dist = await startDistribution({ htpasswd });
  t.after(() => dist.stop());
  const srv = await startBerth(t);
  const dockerd = await startDockerd({ insecureRegistries: [dist.host, srv.host] });
  t.after(() => dockerd.stop());
  const dockerConfig = join(dockerd.dir, 'config');
  const img = await makeBusyboxLayout(join(work, 'layout'), {
    tag: 'v1',
    cmd: ['/bin/sh', '-c', 'echo ran-from-berth-archive'],
  });

  // No credentials: a clear error naming berth login.
  const emptyConfig = join(work, 'empty-docker');
  await berthFails(5, ['push', `${img.dir}:v1`, `${dist.host}/app:v1`], /berth login/, {
    DOCKER_CONFIG: emptyConfig,
    REGISTRY_AUTH_FILE: undefined,
    XDG_RUNTIME_DIR: undefined,
  });

  // Credentials stored by `docker login` are used by berth.
  const dl = await dockerd.docker(['login', '-u', 'alice', '--password-stdin', dist.host], { input: 's3cret\n' });
  assert.equal(dl.code, 0, dl.stderr);
  const env = { DOCKER_CONFIG: dockerConfig, REGISTRY_AUTH_FILE: undefined, XDG_RUNTIME_DIR: undefined };
  await berthOk(['push', `${img.dir}:v1`, `${dist.host}/app:v1`], env);

  // berth pull --docker-archive → docker load → docker run.
  const tar = join(work, 'app.tar');
  await berthOk(['pull', `${dist.host}/app:v1`, '--docker-archive', tar], env);
  const load = await dockerd.docker(['load', '-i', tar]);
  assert.equal(load.code, 0, load.stderr);
  assert.match(load.stdout, new RegExp(`${dist.host}/app:v1`));
  const ran = await dockerd.docker(['run', '--rm', '--network', 'none', `${dist.host}/app:v1`]);
  assert.equal(ran.code, 0, ran.stderr);
  assert.match(ran.stdout, /ran-from-berth-archive/);

  // docker save → berth push → docker pull (from berth serve) → docker run.
  const saved = join(work, 'saved.tar');
  assert.equal((await dockerd.docker(['save', '-o', saved, `${dist.host}/app:v1`])).code, 0);
  await berthOk(['push', saved, `${srv.host}/saved/app:v1`]);
  const pull = await dockerd.docker(['pull', `${srv.host}/saved/app:v1`]);
  assert.equal(pull.code, 0, pull.stderr);
  const ran2 = await dockerd.docker(['run', '--rm', '--network', 'none', `${srv.host}/saved/app:v1`]);
  assert.match(ran2.stdout, /ran-from-berth-archive/);
});

test('berth login / logout and a credential helper on PATH', async (t) => {
  if (!requirePeer(t, 'distribution')) return;
  const work = await tempDir(t, 'blogin');
  const htpasswd = join(work, 'htpasswd');
  await writeFile(htpasswd, `bob:${bcrypt.hashSync('hunter2', 8)}\n`);
  const dist = await startDistribution({ htpasswd });
  t.after(() => dist.stop());
  const img = await makeBusyboxLayout(join(work, 'layout'), { tag: 'v1' });
  const base = { REGISTRY_AUTH_FILE: undefined, XDG_RUNTIME_DIR: undefined };

  // berth login writes docker's config.json; pushes then work; logout forgets.
  const cfgDir = join(work, 'docker');
  const env = { ...base, DOCKER_CONFIG: cfgDir };
  await berthFails(2, ['login', dist.host, '-u', 'bob', '--password-stdin'], /missing password/, env);
  const wrong = await berth(['login', dist.host, '-u', 'bob', '-p', 'nope'], env);
  assert.equal(wrong.code, 5);
  assert.match(wrong.stderr, /login to .* failed/);
  await berthOk(['login', dist.host, '-u', 'bob', '--password-stdin'], env, 'hunter2\n');
  const cfg = JSON.parse(await readFile(join(cfgDir, 'config.json'), 'utf8'));
  assert.equal(Buffer.from(cfg.auths[dist.host].auth, 'base64').toString(), 'bob:hunter2');
  await berthOk(['push', `${img.dir}:v1`, `${dist.host}/app:v1`], env);
  await berthOk(['logout', dist.host], env);
  await berthFails(5, ['digest', `${dist.host}/app:v1`], /berth login/, env);

  // A credential helper: docker-credential-berthtest on PATH, named by credsStore.
  const bin = join(work, 'bin');
  await mkdir(bin);
  const store = join(work, 'helper-store.json');
  await writeFile(store, JSON.stringify({ [dist.host]: { Username: 'bob', Secret: 'hunter2' } }));
  const helper = join(bin, 'docker-credential-berthtest');
  await writeFile(
    helper,
    `#!/usr/bin/env node
const fs = require('fs');
const store = ${JSON.stringify(store)};
let input = '';
process.stdin.on('data', (d) => (input += d)).on('end', () => {
  const db = JSON.parse(fs.readFileSync(store, 'utf8'));
  const action = process.argv[2];
  if (action === 'get') {
    const e = db[input.trim()];
    if (!e) { process.stdout.write('credentials not found in native keychain'); process.exit(1); }
    process.stdout.write(JSON.stringify({ ServerURL: input.trim(), ...e }));
  } else if (action === 'store') {
    const e = JSON.parse(input); db[e.ServerURL] = { Username: e.Username, Secret: e.Secret };
    fs.writeFileSync(store, JSON.stringify(db));
  } else if (action === 'erase') { delete db[input.trim()]; fs.writeFileSync(store, JSON.stringify(db)); }
});
`,
  );
  await chmod(helper, 0o755);
  const helperCfg = join(work, 'docker-helper');
  await mkdir(helperCfg);
  await writeFile(join(helperCfg, 'config.json'), JSON.stringify({ credsStore: 'berthtest' }));
  const henv = { ...base, DOCKER_CONFIG: helperCfg, PATH: `${bin}:${process.env.PATH}` };
  assert.match((await berthOk(['digest', `${dist.host}/app:v1`], henv)).trim(), /^sha256:/);
  // berth login stores through the helper, not into config.json.
  await writeFile(store, '{}');
  await berthOk(['login', dist.host, '-u', 'bob', '-p', 'hunter2'], henv);
  assert.deepEqual(JSON.parse(await readFile(store, 'utf8'))[dist.host], { Username: 'bob', Secret: 'hunter2' });
  assert.equal(JSON.parse(await readFile(join(helperCfg, 'config.json'), 'utf8')).auths[dist.host].auth, undefined);
});

test('bad input: one-line errors naming the problem and the fix, exit code by kind (README "Exit codes")', async (t) => {
  if (!requirePeer(t, 'distribution')) return;
  const dist = await startDistribution();
  t.after(() => dist.stop());
  const work = await tempDir(t, 'bbad');
  const li = await makeMultiArchLayout(join(work, 'layout'));
  await berthOk(['push', li.dir, `${dist.host}/app:v1`]);
  await berthFails(2, ['copy', 'UPPER/Case:tag', `${dist.host}/x:y`], /invalid reference .*\[HOST\[:PORT\]\/\]NAME/);
  await berthFails(2, ['inspect', `${dist.host}/app:bad tag`], /invalid reference/);
  await berthFails(
    4,
    ['copy', '--platform', 'linux/s390x', `${dist.host}/app:v1`, `${dist.host}/other:v1`],
    /no image for platform linux\/s390x; available: linux\/amd64, linux\/arm64\/v8/,
  );
  await berthFails(2, ['inspect', '--platform', 'linux', `${dist.host}/app:v1`], /invalid platform "linux".*os\/arch/);
  await berthFails(
    4,
    ['pull', `${dist.host}/app:v1`, '--docker-archive', join(work, 'x.tar'), '--platform', 'windows/amd64'],
    /no image for windows\/amd64/,
  );
  await berthFails(6, ['tags', '127.0.0.1:1/nothing'], /cannot reach registry 127\.0\.0\.1:1 .*check the address/);
  await berthFails(4, ['digest', `${dist.host}/app:nope`], /404|MANIFEST_UNKNOWN/);
  await berthFails(4, ['push', join(work, 'missing'), `${dist.host}/x:y`], /does not exist/);
  await berthFails(2, ['pull', `${dist.host}/app:v1`], /exactly one of --oci-layout/);
  await berthFails(2, ['copy', '--bogus', 'a', 'b'], /bogus/);
  const help = await berthOk(['copy', '--help']);
  assert.match(help, /Examples:/);
});
