// The image verbs end to end, each result read by a real peer: `manifest`/`config`/`blob` byte-compared with
// crane, `mutate` read by `crane config` and run by docker, `append` seen by `crane export` and docker, `export`
// compared with `crane export`, `index` pulled per platform by containerd, `rebase` run by docker with the new
// base's file. Also: nothing partial on failure (a corrupt blob leaves no -o file, a refused rebase moves no tag)
// and no re-upload of unchanged layers.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import { makeClients, type Clients } from './support/clients.js';
import { startContainerd, startDockerd, type Dockerd } from './support/docker.js';
import { makeBusyboxLayout, makeMultiArchLayout } from './support/oci-layouts.js';
import { ok, requirePeer, run } from './support/peers.js';
import { berth, parseBuild } from './support/builder-fixtures.js';
import { startBerth, type Berth } from './support/berth.js';
import { validateImage } from './support/validate-image.js';

let _dockerd: Promise<Dockerd> | undefined;
let _dockerHost = '';
/** One engine for the file (starting one costs seconds); it trusts the first registry that asks. */
function dockerFor(reg: Berth): Promise<Dockerd> {
  if (_dockerd && _dockerHost !== reg.host) throw new Error('one dockerd per file: reuse the same registry');
  _dockerHost = reg.host;
  _dockerd ??= startDockerd({ insecureRegistries: [reg.host] });
  return _dockerd;
}
after(async () => {
  if (_dockerd) await (await _dockerd).stop();
});

let _reg: Promise<Berth> | undefined;
/** One registry for the file, so the shared dockerd trusts it; each test uses its own repositories. */
function registry(): Promise<Berth> {
  _reg ??= startBerth(undefined);
  return _reg;
}
after(async () => {
  if (_reg) {
    const r = await _reg;
    await r.stop();
    await rm(r.root, { recursive: true, force: true });
  }
});

async function tmp(t: { after(fn: () => Promise<void>): void }, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A busybox image (optionally with marker files) pushed to `ref` by skopeo. */
async function pushBusybox(clients: Clients, dir: string, ref: string, files: Record<string, string> = {}) {
  const img = await makeBusyboxLayout(join(dir, `layout-${Math.random().toString(36).slice(2)}`), { files });
  ok(await clients.skopeo(['copy', img.ref, `docker://${ref}`, '--dest-tls-verify=false']));
  return img;
}

function bjson(r: { code: number; stdout: string; stderr: string; command: string }): any {
  return JSON.parse(ok(r).trim().split('\n').pop()!);
}

/** A tar's entries as comparable lines: name (no ./ or trailing /), type, mode, owner, size, content hash, link. */
async function tarListing(bytes: Buffer): Promise<string[]> {
  const ex = tar.extract();
  const lines: string[] = [];
  const done = (async () => {
    for await (const e of ex) {
      const h = e.header;
      const hash = createHash('sha256');
      for await (const c of e) hash.update(c as Buffer);
      const name = h.name.replace(/^\.?\/+/, '').replace(/\/+$/, '');
      if (name === '' || name === '.') continue;
      lines.push(
        [
          name,
          h.type,
          (h.mode ?? 0) & 0o7777,
          `${h.uid}:${h.gid}`,
          h.size,
          h.type === 'file' ? hash.digest('hex') : '',
          h.linkname ?? '',
        ].join(' '),
      );
    }
  })();
  ex.end(bytes);
  await done;
  return lines.sort();
}

test('manifest, config and blob print the exact bytes crane reads; a corrupt blob leaves no -o file', async (t) => {
  if (!requirePeer(t, 'busybox', 'skopeo', 'crane')) return;
  const reg = await registry();
  const dir = await tmp(t, 'berth-verbs-raw-');
  const clients = await makeClients(t);
  const ref = `${reg.host}/verbs/raw:v1`;
  const img = await pushBusybox(clients, dir, ref, { 'etc/raw.txt': 'raw\n' });

  const manifest = ok(await berth(['manifest', ref]));
  assert.equal(manifest, ok(await clients.crane(['manifest', '--insecure', ref])));
  assert.equal(`sha256:${createHash('sha256').update(manifest).digest('hex')}`, img.manifest.digest);
  const config = ok(await berth(['config', ref]));
  assert.equal(config, ok(await clients.crane(['config', '--insecure', ref])));

  const out = join(dir, 'layer.tgz');
  ok(await berth(['blob', `${reg.host}/verbs/raw@${img.layer.digest}`, '-o', out]));
  const craneOut = join(dir, 'crane.tgz');
  ok(
    await run(
      '/bin/sh',
      ['-c', `crane blob --insecure "$1" > "$2"`, 'sh', `${reg.host}/verbs/raw@${img.layer.digest}`, craneOut],
      {
        env: { HOME: clients.home, PATH: `${process.env.PATH}:/opt/berth-tools/bin` },
      },
    ),
  );
  assert.deepEqual(await readFile(out), await readFile(craneOut));

  // Flip one byte of the stored blob: the download fails on the digest and the -o file never appears.
  const hex = img.layer.digest.slice('sha256:'.length);
  const data = join(reg.root, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
  const original = await readFile(data).catch(() => undefined);
  if (!original) assert.fail(`the stored blob is not at ${data}: ${await readdir(reg.root)}`);
  const corrupt = Buffer.from(original);
  corrupt[corrupt.length - 10] ^= 0xff;
  await writeFile(data, corrupt);
  try {
    const bad = join(dir, 'bad.tgz');
    const r = await berth(['blob', `${reg.host}/verbs/raw@${img.layer.digest}`, '-o', bad]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /digest mismatch/);
    await assert.rejects(stat(bad), 'no partial file');
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.includes('bad')),
      [],
      'no temp file either',
    );
  } finally {
    await writeFile(data, original);
  }

  const missing = await berth(['config', '--platform', 'linux/arm64', ref]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /single linux\/amd64 image, not linux\/arm64/);
});

test('mutate: crane config shows every change, docker runs it, layers are not re-uploaded; an index keeps the platforms not picked', async (t) => {
  if (!requirePeer(t, 'busybox', 'skopeo', 'crane', 'docker')) return;
  const reg = await registry();
  const dir = await tmp(t, 'berth-verbs-mutate-');
  const clients = await makeClients(t);
  const ref = `${reg.host}/verbs/mutate:v1`;
  const img = await pushBusybox(clients, dir, ref);
  const to = `${reg.host}/verbs/mutated:v1`;
  const r = bjson(
    await berth([
      'mutate',
      ref,
      '--label',
      'org.opencontainers.image.version=1.2.3',
      '--annotation',
      'com.example.note=hi',
      '--env',
      'GREETING=hello from mutate',
      '--entrypoint',
      '["/bin/sh","-c"]',
      '--cmd',
      'echo "$GREETING" in "$(pwd)" as $(id -u)',
      '--user',
      '1234',
      '--workdir',
      '/tmp',
      '--expose',
      '8080',
      '-t',
      to,
      '--json',
    ]),
  );
  assert.equal(r.from, img.manifest.digest);
  assert.notEqual(r.digest, img.manifest.digest);
  // Only the new config travels: the layer is mounted from verbs/mutate (another repository, same registry).
  assert.deepEqual(r.blobs, { uploaded: 1, mounted: 1, existed: 0 });
  const mutated = await validateImage(to, { platform: 'linux/amd64', layers: 1 });
  const cfg = mutated.config;
  assert.equal(cfg.config.Labels['org.opencontainers.image.version'], '1.2.3');
  assert.deepEqual(cfg.config.Env, ['PATH=/bin', 'GREETING=hello from mutate']);
  assert.deepEqual(cfg.config.Entrypoint, ['/bin/sh', '-c']);
  assert.equal(cfg.config.User, '1234');
  assert.equal(cfg.config.WorkingDir, '/tmp');
  assert.deepEqual(cfg.config.ExposedPorts, { '8080/tcp': {} });
  assert.deepEqual(mutated.layers, [{ ...img.layer, diffId: img.diffId }]);
  assert.equal(mutated.manifest.annotations['com.example.note'], 'hi');
  assert.equal(ok(await berth(['digest', to])).trim(), r.digest);
  // The source tag did not move.
  assert.equal(ok(await berth(['digest', ref])).trim(), img.manifest.digest);

  const docker = await dockerFor(reg);
  assert.equal(
    ok(await docker.docker(['run', '--rm', '--network', 'none', to])),
    'hello from mutate in /tmp as 1234\n',
  );

  // The same edit again gives the same digest (pure function of input and edits).
  const again = bjson(await berth(['mutate', ref, '--label', 'a=b', '-t', `${reg.host}/verbs/mutated:v2`, '--json']));
  const again2 = bjson(await berth(['mutate', ref, '--label', 'a=b', '-t', `${reg.host}/verbs/mutated:v3`, '--json']));
  assert.equal(again.digest, again2.digest);
  assert.deepEqual(again2.blobs, { uploaded: 0, mounted: 0, existed: 2 });

  // An index: only linux/arm64 changes, linux/amd64 keeps its digest; crane reads both.
  const multi = await makeMultiArchLayout(join(dir, 'multi'));
  const mref = `${reg.host}/verbs/multi:v1`;
  ok(await clients.skopeo(['copy', '--all', multi.ref, `docker://${mref}`, '--dest-tls-verify=false']));
  const mi = bjson(await berth(['mutate', mref, '--platform', 'linux/arm64', '--env', 'ONLY=arm', '--json']));
  assert.equal(mi.images.length, 1);
  const index = (await validateImage(mref, { platform: 'linux/arm64/v8' })).manifest;
  assert.equal(index.manifests[0].digest, multi.images[0].digest, 'amd64 untouched');
  assert.notEqual(index.manifests[1].digest, multi.images[1].digest);
  assert.deepEqual(index.manifests[1].platform, { architecture: 'arm64', os: 'linux', variant: 'v8' });
  const arm = JSON.parse(ok(await clients.crane(['config', '--insecure', '--platform', 'linux/arm64', mref])));
  assert.deepEqual(arm.config.Env, ['PATH=/bin', 'ONLY=arm']);
  const amd = JSON.parse(ok(await clients.crane(['config', '--insecure', '--platform', 'linux/amd64', mref])));
  assert.deepEqual(amd.config.Env, ['PATH=/bin']);

  // Bad input: a clear error naming the flag, and the tag does not move.
  const bad = await berth(['mutate', mref, '--env', 'NOEQUALS']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--env "NOEQUALS" must be KEY=VALUE/);
  const none = await berth(['mutate', mref, '--platform', 'linux/s390x', '--label', 'a=b']);
  assert.match(none.stderr, /no image for linux\/s390x; it has linux\/amd64, linux\/arm64/);
  assert.equal(ok(await berth(['digest', mref])).trim(), mi.digest);
});

test('append: a directory becomes one reproducible layer that crane export and docker see; a tarball with a whiteout removes a file', async (t) => {
  if (!requirePeer(t, 'busybox', 'skopeo', 'crane', 'docker', 'tar')) return;
  const reg = await registry();
  const dir = await tmp(t, 'berth-verbs-append-');
  const clients = await makeClients(t);
  const ref = `${reg.host}/verbs/append:v1`;
  const img = await pushBusybox(clients, dir, ref, { 'etc/motd': 'base motd\n' });
  const add = join(dir, 'add');
  await mkdir(join(add, 'srv/app'), { recursive: true });
  await writeFile(join(add, 'srv/app/hello.txt'), 'hello from append\n');
  await writeFile(join(add, 'srv/app/run.sh'), '#!/bin/sh\ncat /srv/app/hello.txt\n', { mode: 0o755 });

  const to = `${reg.host}/verbs/appended:v1`;
  const a = bjson(await berth(['append', ref, '--dir', add, '-t', to, '--json']));
  assert.deepEqual(a.blobs, { uploaded: 2, mounted: 1, existed: 0 }, 'new layer + config uploaded, base layer mounted');
  // Other times and another run: the same layer, the same image.
  await utimes(join(add, 'srv/app/hello.txt'), 1e9, 1e9);
  const b = bjson(await berth(['append', ref, '--dir', add, '-t', `${reg.host}/verbs/appended:v2`, '--json']));
  assert.equal(b.digest, a.digest);
  assert.equal(b.layer.digest, a.layer.digest);

  const appended = await validateImage(to, { layers: 2 });
  const cfg = appended.config;
  assert.deepEqual(
    appended.layers.map((l) => l.diffId),
    [img.diffId, a.layer.diffId],
  );
  assert.equal(cfg.history.length, 2);
  assert.equal(cfg.history[1].created_by, 'berth append --dir');
  const listing = ok(
    await run('/bin/sh', ['-c', `crane export --insecure "$1" - | tar -tv`, 'sh', to], {
      env: { HOME: clients.home, PATH: `${process.env.PATH}:/opt/berth-tools/bin` },
    }),
  );
  assert.match(listing, /-rwxr-xr-x 0\/0 .* srv\/app\/run\.sh/);
  assert.match(listing, /-rw-r--r-- 0\/0 .* srv\/app\/hello\.txt/);

  const docker = await dockerFor(reg);
  assert.equal(
    ok(await docker.docker(['run', '--rm', '--network', 'none', '--entrypoint', '/srv/app/run.sh', to])),
    'hello from append\n',
  );

  // A tarball (made by GNU tar, used as it is) whose whiteout deletes /etc/motd of the base.
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'etc'), { recursive: true });
  await writeFile(join(tree, 'etc/.wh.motd'), '');
  await writeFile(join(tree, 'etc/added'), 'added\n');
  const tgz = join(dir, 'wh.tar.gz');
  ok(await run('tar', ['-czf', tgz, '-C', tree, 'etc']));
  const wh = `${reg.host}/verbs/appended:wh`;
  const w = bjson(await berth(['append', to, '--tarball', tgz, '-t', wh, '--json']));
  const digestOfFile = `sha256:${createHash('sha256')
    .update(await readFile(tgz))
    .digest('hex')}`;
  assert.equal(w.layer.digest, digestOfFile, 'a gzip tarball is the layer blob byte for byte');
  assert.equal(
    ok(
      await docker.docker([
        'run',
        '--rm',
        '--network',
        'none',
        '--entrypoint',
        '/bin/sh',
        wh,
        '-c',
        'test -e /etc/motd && echo motd present || echo motd gone; cat /etc/added',
      ]),
    ),
    'motd gone\nadded\n',
  );

  // Bad input: nothing pushed, the tag unchanged.
  await writeFile(join(dir, 'not.tar'), 'not a tar at all');
  const bad = await berth(['append', wh, '--tarball', join(dir, 'not.tar')]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /is not a tar, tar\.gz or tar\.zst archive/);
  assert.equal(ok(await berth(['digest', wh])).trim(), w.digest);

  // A Docker schema 2 image (skopeo wrote it) takes only gzip layers: a zstd append is refused, the message names
  // the flag that fixes it (builder/ says it in its own terms, the command adds its flag), and nothing is written.
  const v2 = `${reg.host}/verbs/docker-v2:v1`;
  ok(
    await clients.skopeo([
      'copy',
      '--format',
      'v2s2',
      `docker://${ref}`,
      `docker://${v2}`,
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
    ]),
  );
  const v2digest = ok(await berth(['digest', v2])).trim();
  const zstd = await berth(['append', v2, '--dir', add, '--compression', 'zstd']);
  assert.equal(zstd.code, 1, zstd.stderr);
  assert.match(
    zstd.stderr,
    /^berth: .* is a Docker schema 2 image, whose layers are gzip; append a gzip layer \(--compression gzip\)\n$/,
  );
  assert.equal(ok(await berth(['digest', v2])).trim(), v2digest);
});

test('export gives the same filesystem as crane export: later layers win, whiteouts applied, none written', async (t) => {
  if (!requirePeer(t, 'busybox', 'skopeo', 'crane', 'tar')) return;
  const reg = await registry();
  const dir = await tmp(t, 'berth-verbs-export-');
  const clients = await makeClients(t);
  const ref = `${reg.host}/verbs/export:v1`;
  await pushBusybox(clients, dir, ref, { 'etc/keep': 'keep\n', 'etc/gone': 'gone\n', 'srv/x': 'old x\n' });
  // Layer 2: replace /srv/x, delete /etc/gone; layer 3 (zstd): a new directory.
  const t2 = join(dir, 't2');
  await mkdir(join(t2, 'etc'), { recursive: true });
  await mkdir(join(t2, 'srv'), { recursive: true });
  await writeFile(join(t2, 'etc/.wh.gone'), '');
  await writeFile(join(t2, 'srv/x'), 'new x\n');
  ok(await run('tar', ['-cf', join(dir, 'l2.tar'), '--owner=0', '--group=0', '-C', t2, 'etc', 'srv']));
  const mid = `${reg.host}/verbs/export:v2`;
  ok(await berth(['append', ref, '--tarball', join(dir, 'l2.tar'), '-t', mid]));
  const t3 = join(dir, 't3');
  await mkdir(join(t3, 'opt/tool'), { recursive: true });
  await writeFile(join(t3, 'opt/tool/readme'), 'zstd layer\n');
  const top = `${reg.host}/verbs/export:v3`;
  ok(await berth(['append', mid, '--dir', t3, '--compression', 'zstd', '-t', top]));

  const ours = join(dir, 'ours.tar');
  ok(await berth(['export', top, '-o', ours]));
  const theirs = join(dir, 'theirs.tar');
  ok(
    await run('/bin/sh', ['-c', `crane export --insecure "$1" "$2"`, 'sh', top, theirs], {
      env: { HOME: clients.home, PATH: `${process.env.PATH}:/opt/berth-tools/bin` },
    }),
  );
  const a = await tarListing(await readFile(ours));
  const b = await tarListing(await readFile(theirs));
  assert.deepEqual(a, b);
  const names = a.map((l) => l.split(' ')[0]);
  assert.ok(names.includes('etc/keep') && names.includes('opt/tool/readme'));
  assert.ok(!names.includes('etc/gone'), 'whited-out file is gone');
  assert.ok(!names.some((n) => n.includes('.wh.')), 'no whiteout file written');
  const x = await run('tar', ['-xOf', ours, 'srv/x']);
  assert.equal(ok(x), 'new x\n');
});

test('index: create from per-platform images (platform from each config), containerd pulls each platform; add replaces, remove drops', async (t) => {
  if (!requirePeer(t, 'busybox', 'skopeo', 'crane', 'containerd')) return;
  const reg = await registry();
  const dir = await tmp(t, 'berth-verbs-index-');
  const clients = await makeClients(t);
  const multi = await makeMultiArchLayout(join(dir, 'multi'));
  const src = `${reg.host}/verbs/parts`;
  ok(await clients.skopeo(['copy', '--all', multi.ref, `docker://${src}:all`, '--dest-tls-verify=false']));
  const [amd, arm] = multi.images.map((d) => `${src}@${d.digest}`);
  const idx = `${reg.host}/verbs/index:v1`;
  const c = bjson(await berth(['index', 'create', idx, amd, arm, '--annotation', 'org.example=1', '--json']));
  assert.ok(c.blobs.mounted >= 1, `blobs mounted from ${src}: ${JSON.stringify(c.blobs)}`);
  assert.equal(c.blobs.uploaded, 0, 'nothing re-uploaded');
  const index = JSON.parse(ok(await clients.crane(['manifest', '--insecure', idx])));
  assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(
    index.manifests.map((d: any) => [d.digest, d.platform]),
    [
      [multi.images[0].digest, { architecture: 'amd64', os: 'linux' }],
      [multi.images[1].digest, { architecture: 'arm64', os: 'linux', variant: 'v8' }],
    ],
  );
  assert.equal(index.annotations['org.example'], '1');

  const ctrd = await startContainerd();
  t.after(() => ctrd.stop());
  // arm64 first, into an empty containerd: what it fetched is exactly that platform's image.
  for (const [i, p] of [
    [1, 'linux/arm64'],
    [0, 'linux/amd64'],
  ] as const) {
    ok(await ctrd.ctr(['images', 'pull', '--plain-http', '--platform', p, idx]));
    const content = ok(await ctrd.ctr(['content', 'ls', '-q']));
    assert.ok(content.includes(multi.images[i].digest), `containerd fetched the ${p} manifest`);
  }
  const fetched = ok(await ctrd.ctr(['content', 'ls', '-q']));
  assert.ok(fetched.includes(c.digest), 'and the index berth wrote');

  // add: another amd64 image replaces the amd64 entry; remove: arm64 goes.
  const other = `${reg.host}/verbs/other:v1`;
  const o = await pushBusybox(clients, dir, other, { 'etc/other': 'other\n' });
  bjson(await berth(['index', 'add', idx, other, '--json']));
  let now = JSON.parse(ok(await clients.crane(['manifest', '--insecure', idx])));
  assert.deepEqual(
    now.manifests.map((d: any) => d.digest),
    [o.manifest.digest, multi.images[1].digest],
  );
  bjson(await berth(['index', 'remove', idx, '--platform', 'linux/arm64', '--json']));
  now = JSON.parse(ok(await clients.crane(['manifest', '--insecure', idx])));
  assert.deepEqual(
    now.manifests.map((d: any) => d.digest),
    [o.manifest.digest],
  );
  ok(await ctrd.ctr(['images', 'pull', '--plain-http', '--platform', 'linux/amd64', idx]));

  // Two images of one platform are refused, and nothing is written.
  const before = ok(await berth(['digest', idx])).trim();
  const dup = await berth(['index', 'create', idx, amd, other]);
  assert.notEqual(dup.code, 0);
  assert.match(dup.stderr, /two images for linux\/amd64/);
  assert.equal(ok(await berth(['digest', idx])).trim(), before);
  const gone = await berth(['index', 'remove', idx, '--platform', 'linux/s390x']);
  assert.match(gone.stderr, /no linux\/s390x entry to remove; it has linux\/amd64/);
});

test('rebase: an image built FROM a base moves to the base tag’s newest digest with no flags and runs under docker with the new base’s file', async (t) => {
  if (!requirePeer(t, 'busybox', 'crane', 'docker')) return;
  const reg = await registry();
  const dir = await tmp(t, 'berth-verbs-rebase-');
  const clients = await makeClients(t);
  await copyFile('/bin/busybox', join(dir, 'busybox'));
  const baseRef = `${reg.host}/verbs/base:stable`;
  const buildBase = async (version: string) => {
    await writeFile(
      join(dir, 'base.yaml'),
      `apiVersion: berth/v1
kind: Image
layers:
  - name: busybox
    files:
      - { src: busybox, dest: /bin/busybox, mode: "0755" }
      - { symlink: busybox, dest: /bin/sh }
  - name: version
    files:
      - { inline: "base ${version}\\n", dest: /etc/base-version }
config: { env: { PATH: /bin } }
`,
    );
    return parseBuild(
      await berth(['build', '-f', join(dir, 'base.yaml'), '--cache', join(dir, '.cache'), '--push', baseRef, '--json']),
    );
  };
  const v1 = await buildBase('one');
  await writeFile(
    join(dir, 'app.yaml'),
    `apiVersion: berth/v1
kind: Image
base: ${baseRef}
layers:
  - name: app
    files:
      - { inline: "app layer\\n", dest: /srv/app.txt }
config: { entrypoint: [/bin/sh, -c], cmd: ["cat /etc/base-version /srv/app.txt"] }
`,
  );
  const appRef = `${reg.host}/verbs/app:v1`;
  const app = parseBuild(
    await berth(['build', '-f', join(dir, 'app.yaml'), '--cache', join(dir, '.cache'), '--push', appRef, '--json']),
  );
  // The builder recorded where it came from (image-spec annotations.md).
  const m = JSON.parse(ok(await clients.crane(['manifest', '--insecure', appRef])));
  assert.equal(m.annotations['org.opencontainers.image.base.name'], baseRef);
  assert.equal(m.annotations['org.opencontainers.image.base.digest'], v1.digest);

  // Nothing newer yet: the rebase is the same image.
  const same = bjson(await berth(['rebase', appRef, '-t', `${reg.host}/verbs/app:same`, '--json']));
  assert.equal(same.digest, app.digest);

  const v2 = await buildBase('two');
  assert.notEqual(v2.digest, v1.digest);
  const rebased = `${reg.host}/verbs/app:rebased`;
  const r = bjson(await berth(['rebase', appRef, '-t', rebased, '--json']));
  assert.deepEqual(r.oldBase, { name: baseRef, digest: v1.digest });
  assert.deepEqual(r.newBase, { name: baseRef, digest: v2.digest });
  assert.equal(r.blobs.uploaded, 1, 'only the new config is uploaded');
  const after_ = JSON.parse(ok(await clients.crane(['manifest', '--insecure', rebased])));
  assert.equal(after_.annotations['org.opencontainers.image.base.digest'], v2.digest);
  const newBaseLayers = JSON.parse(ok(await clients.crane(['manifest', '--insecure', baseRef]))).layers;
  assert.deepEqual(
    after_.layers.map((l: any) => l.digest),
    [...newBaseLayers.map((l: any) => l.digest), m.layers[2].digest],
  );
  const cfg = (await validateImage(rebased, { layers: 3 })).config;
  assert.deepEqual(cfg.config.Entrypoint, ['/bin/sh', '-c']);

  const docker = await dockerFor(reg);
  assert.equal(ok(await docker.docker(['run', '--rm', '--network', 'none', rebased])), 'base two\napp layer\n');

  // An old base the image does not start with is refused, and no tag moves.
  const unrelated = `${reg.host}/verbs/unrelated:v1`;
  await pushBusybox(clients, dir, unrelated, { 'etc/unrelated': 'x\n' });
  const refused = await berth(['rebase', appRef, '--old-base', unrelated, '--new-base', baseRef]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /does not start with the layers of the old base/);
  assert.equal(ok(await berth(['digest', appRef])).trim(), app.digest);
  // An image that does not record its base needs --old-base.
  const plain = await berth(['rebase', unrelated]);
  assert.match(plain.stderr, /does not record its base .* --old-base/);
});

test('rebase of a multi-platform image: each platform moves onto the same platform of the new base index', async (t) => {
  if (!requirePeer(t, 'busybox', 'crane', 'docker')) return;
  const reg = await registry();
  const dir = await tmp(t, 'berth-verbs-rebase-multi-');
  const clients = await makeClients(t);
  await copyFile('/bin/busybox', join(dir, 'busybox'));
  const baseRef = `${reg.host}/verbs/mbase:1`;
  const buildBase = async (version: string) => {
    await writeFile(
      join(dir, 'base.yaml'),
      `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
layers:
  - name: busybox
    files:
      - { src: busybox, dest: /bin/busybox, mode: "0755" }
      - { symlink: busybox, dest: /bin/sh }
      - { inline: "base ${version}\\n", dest: /etc/base-version }
config: { env: { PATH: /bin } }
`,
    );
    return parseBuild(
      await berth(['build', '-f', join(dir, 'base.yaml'), '--cache', join(dir, '.cache'), '--push', baseRef, '--json']),
    );
  };
  const v1 = await buildBase('one');
  await writeFile(
    join(dir, 'app.yaml'),
    `apiVersion: berth/v1
kind: Image
base: ${baseRef}
platforms: [linux/amd64, linux/arm64]
layers:
  - name: app
    files:
      - { inline: "app\\n", dest: /srv/app.txt }
config: { entrypoint: [/bin/sh, -c], cmd: ["cat /etc/base-version /srv/app.txt"] }
`,
  );
  const appRef = `${reg.host}/verbs/mapp:v1`;
  const app = parseBuild(
    await berth(['build', '-f', join(dir, 'app.yaml'), '--cache', join(dir, '.cache'), '--push', appRef, '--json']),
  );
  assert.equal(app.mediaType, 'application/vnd.oci.image.index.v1+json');
  const v2 = await buildBase('two');
  const r = bjson(await berth(['rebase', appRef, '--json']));
  assert.equal(r.oldBase.digest, v1.digest);
  assert.equal(r.newBase.digest, v2.digest);
  assert.deepEqual(
    r.images.map((i: any) => i.platform),
    ['linux/amd64', 'linux/arm64'],
  );
  const index = JSON.parse(ok(await clients.crane(['manifest', '--insecure', appRef])));
  assert.equal(index.annotations['org.opencontainers.image.base.digest'], v2.digest);
  for (const [i, p] of ['linux/amd64', 'linux/arm64'].entries()) {
    const m = JSON.parse(
      ok(await clients.crane(['manifest', '--insecure', `${appRef.split(':v1')[0]}@${index.manifests[i].digest}`])),
    );
    const base = JSON.parse(ok(await clients.crane(['manifest', '--insecure', '--platform', p, baseRef])));
    assert.equal(m.layers[0].digest, base.layers[0].digest, `${p} sits on the new base's ${p} layer`);
    assert.equal(m.layers[1].digest, app.images[i].layers[0].digest, `${p} keeps its app layer`);
  }
  const docker = await dockerFor(reg);
  assert.equal(ok(await docker.docker(['run', '--rm', '--network', 'none', appRef])), 'base two\napp\n');
});

test('the verbs read and write every transport: a registry image mutated into oci:, appended into an oci-archive, indexed from layouts, read back by skopeo', async (t) => {
  if (!requirePeer(t, 'busybox', 'skopeo', 'crane')) return;
  const reg = await registry();
  const dir = await tmp(t, 'berth-verbs-transports-');
  const clients = await makeClients(t);
  const ref = `${reg.host}/verbs/transports:v1`;
  const img = await pushBusybox(clients, dir, ref, { 'etc/t.txt': 't\n' });
  const layout = join(dir, 'out-layout');

  // registry → oci: (mutate writes a new config and manifest; the layer comes along unchanged).
  const mutated = ok(await berth(['mutate', ref, '--label', 'via=oci', '-t', `oci:${layout}:v2`])).trim();
  assert.match(mutated, new RegExp(`^oci:${layout}@sha256:[0-9a-f]{64}$`));
  const inspected = JSON.parse(ok(await clients.skopeo(['inspect', `oci:${layout}:v2`])));
  assert.equal(inspected.Labels.via, 'oci');
  assert.deepEqual(inspected.Layers, [img.layer.digest]);
  assert.equal(`${layout}@${inspected.Digest}`, mutated.slice('oci:'.length));
  // …and the read verbs take it back from the layout, byte for byte what skopeo reads.
  assert.equal(
    ok(await berth(['config', `oci:${layout}:v2`])),
    ok(await clients.skopeo(['inspect', '--config', '--raw', `oci:${layout}:v2`])),
  );
  assert.equal(
    ok(await berth(['manifest', `oci:${layout}:v2`])),
    ok(await clients.skopeo(['inspect', '--raw', `oci:${layout}:v2`])),
  );
  assert.deepEqual(
    await tarListing(await runBuffer(['export', `oci:${layout}:v2`])),
    await tarListing(await runBuffer(['export', ref])),
  );

  // oci: → oci-archive: (append a directory); the archive appears whole and skopeo reads two layers.
  const add = join(dir, 'add');
  await mkdir(join(add, 'opt'), { recursive: true });
  await writeFile(join(add, 'opt', 'added.txt'), 'added\n');
  const archive = join(dir, 'appended.tar');
  ok(await berth(['append', `oci:${layout}:v2`, '--dir', add, '-t', `oci-archive:${archive}:v3`]));
  const arch = JSON.parse(ok(await clients.skopeo(['inspect', `oci-archive:${archive}:v3`])));
  assert.equal(arch.Layers.length, 2);
  assert.equal(arch.Layers[0], img.layer.digest);
  assert.equal(arch.Labels.via, 'oci');
  assert.deepEqual(
    (await readdir(dir)).filter((n) => n.includes('.tmp') || n.includes('partial')),
    [],
    'no temp file beside the archive',
  );

  // oci-archive: → docker-archive: (mutate), read by skopeo as docker load would.
  const dockerTar = join(dir, 'app.tar');
  ok(await berth(['mutate', `oci-archive:${archive}:v3`, '--env', 'X=1', '-t', `docker-archive:${dockerTar}:app:v4`]));
  const dimg = JSON.parse(ok(await clients.skopeo(['inspect', `docker-archive:${dockerTar}`])));
  assert.ok(dimg.Env.includes('X=1'), dimg.Env.join(' '));
  assert.equal(dimg.Layers.length, 2);

  // index create from a layout image and a registry image into a layout: skopeo lists the platforms.
  // (the arm64 image named by digest inside another layout: oci:DIR@DIGEST)
  const multi = await makeMultiArchLayout(join(dir, 'multi'));
  const armImage = `oci:${multi.dir}@${multi.images[1].digest}`;
  const idx = ok(await berth(['index', 'create', `oci:${layout}:multi`, `oci:${layout}:v2`, armImage])).trim();
  const raw = JSON.parse(ok(await clients.skopeo(['inspect', '--raw', `oci:${layout}:multi`])));
  assert.deepEqual(raw.manifests.map((d: any) => `${d.platform.os}/${d.platform.architecture}`).sort(), [
    'linux/amd64',
    'linux/arm64',
  ]);
  assert.match(idx, /^oci:.*@sha256:/);

  // A bad transport reference is a usage error that names the forms; nothing is written.
  const bad = await berth(['mutate', ref, '--label', 'a=b', '-t', `oci:${layout}@sha256:${'0'.repeat(64)}`]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /names a digest; write to a tag/);
  const missing = await berth(['config', `oci:${join(dir, 'nope')}:v1`]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /is not an OCI layout/);
});

async function runBuffer(args: string[]): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-verbs-buf-'));
  try {
    const file = join(dir, 'out');
    ok(await berth([...args, '-o', file]));
    return await readFile(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
