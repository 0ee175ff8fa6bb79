// `tar:` entries: archives made here with tar-stream (so every odd member type is under our control), read back
// through planLayer + buildLayer exactly as `berth build` does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, rm, symlink, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import tar, { type Header } from 'tar-stream';
import { compress } from 'zstd-napi';
import { BlobDir } from './blobs.js';
import { LayerCache } from './cache.js';
import { Context } from './context.js';
import { buildLayer } from './layers.js';
import { planLayer } from './plan.js';
import { parseSpec } from './spec.js';

type Member = Partial<Header> & { name: string; body?: string | Buffer };

async function archive(members: Member[]): Promise<Buffer> {
  const pack = tar.pack();
  const out = (async () => {
    const parts: Buffer[] = [];
    for await (const c of pack) parts.push(c as Buffer);
    return Buffer.concat(parts);
  })();
  for (const { body, ...h } of members) {
    await new Promise<void>((res, rej) =>
      pack.entry({ mtime: new Date(1_600_000_000_000), ...h }, body ?? '', (e) => (e ? rej(e) : res())),
    );
  }
  pack.finalize();
  return out;
}

const BIG = Buffer.alloc(3 << 20, 'berth'); // above the in-memory threshold: the streaming path
const TREE: Member[] = [
  { name: './', type: 'directory', mode: 0o755 },
  { name: './usr/', type: 'directory', mode: 0o755, uid: 501, gid: 20, uname: 'dev', gname: 'staff' },
  { name: './usr/bin/', type: 'directory', mode: 0o700 },
  { name: './usr/bin/tool', mode: 0o4750, body: '#!/bin/sh\necho tool\n', uid: 501 },
  { name: '/etc/motd', mode: 0o640, body: 'hello\n' },
  { name: 'usr/bin/alias', type: 'link', linkname: './usr/bin/tool' },
  { name: 'bin', type: 'symlink', linkname: 'usr/bin' },
  { name: 'etc/abs', type: 'symlink', linkname: '/etc/passwd' },
  { name: 'data/big.bin', mode: 0o644, body: BIG },
];

async function context(
  t: { after(fn: () => Promise<void>): void },
  files: Record<string, Buffer | string>,
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-tarin-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [p, c] of Object.entries(files)) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), c);
  }
  return dir;
}

async function planIn(dir: string, entries: string, props = '') {
  const spec = parseSpec(`apiVersion: berth/v1\nkind: Image\n${props}layers:\n  - name: l\n    files:\n${entries}`);
  return planLayer(spec, 0, { os: 'linux', architecture: 'amd64' }, await Context.open(dir), {
    tarInputs: new BlobDir(join(dir, '.cache/tar-inputs')),
  });
}

async function layerOf(dir: string, entries: string, props = '') {
  const p = await planIn(dir, entries, props);
  const blobs = new BlobDir(join(dir, '.cache/blobs'));
  const built = await buildLayer(p, { epoch: 0, compression: 'gzip', blobs });
  return { plan: p, built, list: await members(gunzipSync(await readFile(blobs.path(built.layer.descriptor.digest)))) };
}

async function members(raw: Buffer): Promise<Record<string, Header & { body: string }>> {
  const out: Record<string, Header & { body: string }> = {};
  const ex = tar.extract();
  const done = (async () => {
    for await (const e of ex) {
      const parts: Buffer[] = [];
      for await (const c of e) parts.push(c as Buffer);
      out[e.header.name] = { ...e.header, body: Buffer.concat(parts).toString() };
    }
  })();
  Readable.from([raw]).pipe(ex as never);
  await done;
  return out;
}

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.match(e.message, re);
    return true;
  });
}

test('plain, gzip and zstd archives (told apart by magic bytes, not names) give the same layer; archive times and owners never reach it', async (t) => {
  const tarball = await archive(TREE);
  const later = await archive(
    TREE.map((m) => ({ ...m, mtime: new Date(1_700_000_000_000), uid: 1234, gid: 99, uname: 'someone' })),
  );
  assert.notDeepEqual(later, tarball);
  const dir = await context(t, {
    'plain.tar': tarball,
    'gz.tar.zst': gzipSync(tarball), // misleading names on purpose
    'zst.tar.gz': compress(tarball),
    'later.tar': later,
  });
  const digests = [];
  for (const a of ['plain.tar', 'gz.tar.zst', 'zst.tar.gz', 'later.tar'])
    digests.push((await layerOf(dir, `      - { tar: ${a} }\n`)).built.layer.descriptor.digest);
  assert.equal(new Set(digests).size, 1, digests.join(' '));

  const { list } = await layerOf(dir, '      - { tar: plain.tar }\n');
  assert.deepEqual(Object.keys(list), [
    'bin',
    'data/',
    'data/big.bin',
    'etc/',
    'etc/abs',
    'etc/motd',
    'usr/',
    'usr/bin/',
    'usr/bin/alias',
    'usr/bin/tool',
  ]);
  for (const h of Object.values(list)) {
    assert.deepEqual([h.mtime.getTime(), h.uid, h.gid, h.uname, h.gname], [0, 0, 0, '', ''], h.name);
  }
  assert.deepEqual([list['usr/bin/tool'].mode, list['usr/bin/tool'].body], [0o4750, '#!/bin/sh\necho tool\n']);
  assert.equal(list['usr/bin/'].mode, 0o700);
  assert.equal(list['etc/motd'].mode, 0o640);
  assert.equal(list['etc/'].mode, 0o755, 'a parent the archive does not name gets fixed metadata');
  // The hard link became an independent copy with its target's content and mode.
  assert.deepEqual(
    [list['usr/bin/alias'].type, list['usr/bin/alias'].mode, list['usr/bin/alias'].body],
    ['file', 0o4750, '#!/bin/sh\necho tool\n'],
  );
  assert.deepEqual([list.bin.type, list.bin.linkname], ['symlink', 'usr/bin']);
  assert.deepEqual(
    [list['etc/abs'].type, list['etc/abs'].linkname],
    ['symlink', '/etc/passwd'],
    'targets are verbatim',
  );
  assert.ok(Buffer.from(list['data/big.bin'].body).equals(BIG));
});

test('file contents are staged once per content under the cache, so a rebuild hits the layer cache', async (t) => {
  const dir = await context(t, { 'a.tar': await archive(TREE) });
  const p = await planIn(dir, '      - { tar: a.tar }\n');
  const staged = (await readdir(join(dir, '.cache/tar-inputs/sha256'))).filter((n) => !n.startsWith('.'));
  assert.equal(staged.length, 3, 'tool (and its hard link), motd, big.bin'); // no temp files left behind
  const tool = p.members.find((m) => m.path === 'usr/bin/tool')!;
  const alias = p.members.find((m) => m.path === 'usr/bin/alias')!;
  assert.deepEqual(alias.source, tool.source);
  assert.equal(p.origins.get('usr/bin/tool'), 'a.tar!/usr/bin/tool');

  const blobs = new BlobDir(join(dir, '.cache/blobs'));
  const cache = await LayerCache.open(join(dir, '.cache'));
  const first = await buildLayer(p, { epoch: 0, compression: 'zstd', blobs, cache });
  const again = await buildLayer(await planIn(dir, '      - { tar: a.tar }\n'), {
    epoch: 0,
    compression: 'zstd',
    blobs,
    cache,
  });
  assert.deepEqual([first.cached, again.cached], [false, true]);
  assert.equal(again.layer.descriptor.digest, first.layer.descriptor.digest);
});

test("a member with '..' is refused, naming the archive and the member", async (t) => {
  const dir = await context(t, {
    'up.tar': await archive([
      { name: 'ok.txt', body: 'ok' },
      { name: 'a/../../x', body: 'evil' },
    ]),
    'uplink.tar': await archive([
      { name: 'ok.txt', body: 'ok' },
      { name: 'h', type: 'link', linkname: '../etc/shadow' },
    ]),
  });
  await rejects(
    planIn(dir, '      - { tar: up.tar }\n'),
    /^berth\.yaml:6 layers\[0\]\.files\[0\]\.tar: 'up\.tar' member 'a\/\.\.\/\.\.\/x' contains '\.\.'; an archive's members must stay below its root$/,
  );
  await rejects(
    planIn(dir, '      - { tar: uplink.tar }\n'),
    /'uplink\.tar' member 'h' is a hard link to '\.\.\/etc\/shadow', which is not a regular file earlier in the archive/,
  );
});

test('symlinks: absolute targets are kept verbatim; a member written through an archive symlink is refused', async (t) => {
  const dir = await context(t, {
    'abs.tar': await archive([{ name: 'etc', type: 'symlink', linkname: '/host/etc' }]),
    'escape.tar': await archive([
      { name: 'evil', type: 'symlink', linkname: '/etc' },
      { name: 'evil/passwd', body: 'root::0:0::/:/bin/sh\n' },
    ]),
  });
  const p = await planIn(dir, '      - { tar: abs.tar, dest: /opt/app }\n');
  const link = p.members.find((m) => m.path === 'opt/app/etc')!;
  assert.deepEqual([link.type, link.linkname], ['symlink', '/host/etc']);
  await rejects(
    planIn(dir, '      - { tar: escape.tar }\n'),
    /tar: 'escape\.tar' member 'evil\/passwd' would be written through the symlink 'evil' \(-> \/etc\)/,
  );
});

test('devices and FIFOs are refused with a message naming the member', async (t) => {
  const dir = await context(t, {
    'dev.tar': await archive([
      { name: 'ok', body: 'x' },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 },
    ]),
    'blk.tar': await archive([{ name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 }]),
    'fifo.tar': await archive([{ name: 'run/pipe', type: 'fifo' }]),
  });
  await rejects(
    planIn(dir, '      - { tar: dev.tar }\n'),
    /^berth\.yaml:6 layers\[0\]\.files\[0\]\.tar: 'dev\.tar' member 'dev\/null' is a character device; a layer can hold only files, directories and symlinks/,
  );
  await rejects(planIn(dir, '      - { tar: blk.tar }\n'), /'blk\.tar' member 'dev\/sda' is a block device/);
  await rejects(planIn(dir, '      - { tar: fifo.tar }\n'), /'fifo\.tar' member 'run\/pipe' is a fifo/);
});

test('properties (spec → layer → entry) override modes and owners; dest moves the archive root', async (t) => {
  const dir = await context(t, { 'a.tar': await archive(TREE) });
  const { list } = await layerOf(
    dir,
    '      - { tar: a.tar, dest: /opt/app, mode: "0600", user: app }\n',
    'properties: { uid: 1000, gid: 1001, dirMode: "0750", group: grp }\n',
  );
  assert.deepEqual(
    [list['opt/app/usr/bin/tool'].mode, list['opt/app/usr/bin/tool'].uid, list['opt/app/usr/bin/tool'].gid],
    [0o600, 1000, 1001],
  );
  assert.deepEqual([list['opt/app/usr/bin/tool'].uname, list['opt/app/usr/bin/tool'].gname], ['app', 'grp']);
  assert.equal(list['opt/app/usr/bin/alias'].mode, 0o600);
  assert.deepEqual([list['opt/app/usr/'].mode, list['opt/app/usr/'].uid], [0o750, 1000]);
  // The archive's './' is dest itself; dest's parents are implied, with fixed metadata.
  assert.deepEqual([list['opt/app/'].mode, list['opt/app/'].uid], [0o750, 1000]);
  assert.deepEqual([list['opt/'].mode, list['opt/'].uid, list['opt/'].uname], [0o755, 0, '']);
  assert.equal(list['opt/app/bin'].mode, 0o777, 'symlinks are always 0777');
  const p = await planIn(dir, '      - { tar: a.tar, dest: /opt/app }\n');
  assert.equal(
    p.origins.get('opt/app/usr/bin/tool'),
    'a.tar!/usr/bin/tool',
    'provenance names the member in the archive',
  );
  assert.ok(!('usr/' in list));
});

test('the archive path follows the context rules and must name one regular file', async (t) => {
  const dir = await context(t, {
    'a.tar': await archive(TREE),
    'sub/x.tar': await archive(TREE),
    'junk.tar': 'not an archive at all, but long enough to hold a header? no.',
  });
  await symlink('/etc/hostname', join(dir, 'out.tar'));
  await symlink('a.tar', join(dir, 'in.tar'));
  await rejects(
    planIn(dir, '      - { tar: /etc/a.tar }\n'),
    /tar: '\/etc\/a\.tar' is absolute; paths are relative to the build context/,
  );
  await rejects(planIn(dir, '      - { tar: ../a.tar }\n'), /tar: '\.\.\/a\.tar' contains '\.\.'/);
  await rejects(
    planIn(dir, '      - { tar: out.tar }\n'),
    /'out\.tar' is a symlink to \/etc\/hostname, outside the build context/,
  );
  await rejects(
    planIn(dir, '      - { tar: sub }\n'),
    /tar: 'sub' is not a regular file; a tar entry names one archive/,
  );
  await rejects(planIn(dir, '      - { tar: "*.tar" }\n'), /'\*\.tar' is a glob; a tar entry names one archive/);
  await rejects(planIn(dir, '      - { tar: missing.tar }\n'), /tar: no archive 'missing\.tar' in the build context/);
  await rejects(planIn(dir, '      - { tar: junk.tar }\n'), /tar: cannot read 'junk\.tar' as a tar archive: /);
  const xz = await context(t, { 'a.tar.xz': Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]) });
  await rejects(
    planIn(xz, '      - { tar: a.tar.xz }\n'),
    /'a\.tar\.xz' is xz-compressed; tar entries read plain, gzip or zstd archives/,
  );
  const cut = await context(t, { 'cut.tgz': gzipSync(await archive(TREE)).subarray(0, 4000) });
  await rejects(
    planIn(cut, '      - { tar: cut.tgz }\n'),
    /tar: cannot read 'cut\.tgz' as a gzip-compressed tar archive: unexpected end of file/,
  );
  const perArch = await context(t, { 'rootfs-amd64.tar': await archive([{ name: 'arch', body: 'amd64' }]) });
  assert.deepEqual(
    (await planIn(perArch, '      - { tar: "rootfs-{arch}.tar" }\n')).members.map((m) => m.path),
    ['arch'],
  );
  const viaLink = await planIn(dir, '      - { tar: in.tar }\n');
  assert.ok(
    viaLink.members.some((m) => m.path === 'usr/bin/tool'),
    'a symlink inside the context to an archive is fine',
  );
  await rejects(planIn(dir, '      - { tar: a.tar.gz }\n'), /no archive 'a\.tar\.gz'/);
});
