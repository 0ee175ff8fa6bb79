// Context safety rules and the reproducible layer format, checked on real files in a temp dir.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { constants as zc, gunzipSync, gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { decompress } from 'zstd-napi';
import { digestOf } from '../spec/digest.js';
import { Context } from './context.js';
import { BlobDir } from './blobs.js';
import { buildLayer } from './layers.js';
import { LayerCache, pruneCache } from './cache.js';
import { layerFiles } from './layer-files.js';
import { randomBytes } from 'node:crypto';
import { planLayer } from './plan.js';
import { tarSegmentSync, tarStream } from './tar.js';
import { parseSpec } from './spec.js';

async function fixture(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-ctx-'));
  for (const [p, c] of Object.entries(files)) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), c);
  }
  return dir;
}

function specFor(entries: string): ReturnType<typeof parseSpec> {
  return parseSpec(`apiVersion: berth/v1\nkind: Image\nlayers:\n  - name: l\n    files:\n${entries}`);
}

const amd64 = { os: 'linux', architecture: 'amd64' };

async function plan(dir: string, entries: string) {
  return planLayer(specFor(entries), 0, amd64, await Context.open(dir));
}

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.match(e.message, re);
    return true;
  });
}

async function entries(blob: Buffer): Promise<
  {
    name: string;
    type: string;
    mode: number;
    uid: number;
    gid: number;
    uname: string;
    mtime: number;
    linkname: string | null;
    body: string;
  }[]
> {
  const out: any[] = [];
  const ex = tar.extract();
  const done = (async () => {
    for await (const e of ex) {
      const parts: Buffer[] = [];
      for await (const c of e) parts.push(c as Buffer);
      const h = e.header;
      out.push({
        name: h.name,
        type: h.type,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        uname: h.uname,
        mtime: h.mtime.getTime() / 1000,
        linkname: h.linkname ?? null,
        body: Buffer.concat(parts).toString(),
      });
    }
  })();
  Readable.from([blob]).pipe(ex as any);
  await done;
  return out;
}

test('symlinks inside the context stay symlinks; ones leaving it are refused unless followSymlinks', async (t) => {
  const dir = await fixture({ 'app/a.txt': 'a' });
  t.after(() => rm(dir, { recursive: true, force: true }));
  await symlink('a.txt', join(dir, 'app/inside'));
  await symlink('/etc/passwd', join(dir, 'app/passwd'));
  await rejects(
    plan(dir, '      - { src: "app/**", dest: /srv/ }\n'),
    /^berth\.yaml:6 layers\[0\]\.files\[0\]\.src: 'app\/passwd' is a symlink to \/etc\/passwd, outside the build context; set followSymlinks: true/,
  );
  const p = await plan(dir, '      - { src: "app/**", dest: /srv/, exclude: [passwd] }\n');
  const link = p.members.find((m) => m.path === 'srv/inside')!;
  assert.deepEqual([link.type, link.linkname], ['symlink', 'a.txt']);
  const followed = await plan(dir, '      - { src: app/passwd, dest: /etc/passwd, followSymlinks: true }\n');
  const f = followed.members.find((m) => m.path === 'etc/passwd')!;
  assert.equal(f.type, 'file');
  assert.equal(f.size, (await readFile('/etc/passwd')).length);
});

test("'..' and absolute globs are refused before the disk is read", async (t) => {
  const dir = await fixture({ 'a.txt': 'a' });
  t.after(() => rm(dir, { recursive: true, force: true }));
  await rejects(
    plan(dir, '      - { src: "../**", dest: /x/ }\n'),
    /src: '\.\.\/\*\*' contains '\.\.'; files must come from inside the build context/,
  );
  await rejects(plan(dir, '      - { src: "a/../../etc/passwd", dest: /x }\n'), /contains '\.\.'/);
  await rejects(
    plan(dir, '      - { src: /etc/passwd, dest: /x }\n'),
    /is absolute; paths are relative to the build context/,
  );
  await rejects(plan(dir, '      - { src: "*.txt", dest: /x/, exclude: ["../x"] }\n'), /contains '\.\.'/);
});

test('a symlinked directory leading out of the context is refused', async (t) => {
  const dir = await fixture({ 'a.txt': 'a' });
  t.after(() => rm(dir, { recursive: true, force: true }));
  await symlink('/etc', join(dir, 'etc'));
  await rejects(
    plan(dir, '      - { src: "etc/**", dest: /x/ }\n'),
    /'etc' resolves to \/etc, outside the build context/,
  );
});

test('FIFOs are refused with a clear message', async (t) => {
  const dir = await fixture({ 'a.txt': 'a' });
  t.after(() => rm(dir, { recursive: true, force: true }));
  execFileSync('mkfifo', [join(dir, 'pipe')]);
  await rejects(
    plan(dir, '      - { src: "**", dest: /x/ }\n'),
    /'pipe' is a FIFO \(named pipe\); a layer can hold only files, directories and symlinks \(exclude it\)/,
  );
  const ok = await plan(dir, '      - { src: "**", dest: /x/, exclude: [pipe] }\n');
  assert.deepEqual(
    ok.members.map((m) => m.path),
    ['x', 'x/a.txt'],
  );
});

test('non-UTF-8 names are refused with an escaped name; 200-byte names work via PAX', async (t) => {
  const dir = await fixture({ 'ok.txt': 'ok' });
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bad = Buffer.concat([Buffer.from(`${dir}/bad-`), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]);
  await writeFile(bad, 'x');
  await rejects(
    plan(dir, '      - { src: "**", dest: /x/ }\n'),
    /file name 'bad-\\xff\\xfe\.txt' is not valid UTF-8; rename it or exclude it/,
  );
  await rm(bad);
  const long = 'n'.repeat(200);
  await writeFile(join(dir, long), 'long');
  const blobs = new BlobDir(join(dir, '.blobs'));
  const p = await plan(dir, '      - { src: "*", dest: /x/, exclude: [".blobs"] }\n');
  const built = await buildLayer(p, { epoch: 0, compression: 'gzip', blobs });
  const list = await entries(gunzipSync(await readFile(blobs.path(built.layer.descriptor.digest))));
  assert.deepEqual(
    list.map((e) => e.name),
    ['x/', `x/${long}`, 'x/ok.txt'],
  );
  assert.equal(list[1].body, 'long');
});

test('errors name the field at fault and say the fix: dest with .., conflicts between entries', async (t) => {
  const dir = await fixture({ 'a.txt': 'a', 'lib/x.so': 'x' });
  t.after(() => rm(dir, { recursive: true, force: true }));
  // `..` in dest is the dest's fault, not the src's.
  await rejects(
    plan(dir, '      - { src: a.txt, dest: /usr/../etc/a.txt }\n'),
    /^berth\.yaml:6 layers\[0\]\.files\[0\]\.dest: '\/usr\/\.\.\/etc\/a\.txt' contains '\.\.'; write the path inside the image without it, e.g. '\/etc\/a\.txt'$/,
  );
  await rejects(
    plan(dir, '      - { inline: "x", dest: /a/../../b }\n'),
    /layers\[0\]\.files\[0\]\.dest: .* contains '\.\.'/,
  );
  await rejects(
    plan(dir, '      - { directory: /var/../x }\n'),
    /layers\[0\]\.files\[0\]\.directory: .* contains '\.\.'/,
  );
  // A symlink and files under it: the entry whose files would sit under the symlink is named, and the symlink's.
  await rejects(
    plan(
      dir,
      '      - { inline: "x", dest: /etc/motd }\n      - { symlink: /usr/lib, dest: /lib }\n      - { src: "lib/**", dest: /lib/ }\n',
    ),
    /^berth\.yaml:8 layers\[0\]\.files\[2\]\.dest: '\/lib\/x\.so' would sit under '\/lib', which this layer makes a symlink \(from layers\[0\]\.files\[1\]\); a path can't be both a directory and a symlink: change one of the two dests$/,
  );
  await rejects(
    plan(dir, '      - { src: "lib/**", dest: /lib/ }\n      - { inline: "x", dest: /lib/x.so/y }\n'),
    /layers\[0\]\.files\[1\]\.dest: '\/lib\/x\.so\/y' would sit under '\/lib\/x\.so', which this layer makes a file \(from layers\[0\]\.files\[0\]\)/,
  );
});

test('a file that changes while the layer is written is named, with its image path and the fix', async (t) => {
  const big = 'b'.repeat((1 << 20) + 100); // above SMALL_FILE: the streamed path
  const dir = await fixture({ 'big.bin': big, 'small.txt': 'small' });
  t.after(() => rm(dir, { recursive: true, force: true }));
  const consume = async (members: Awaited<ReturnType<typeof plan>>['members']) => {
    for await (const _ of tarStream(members, 0)) void _;
  };
  for (const [name, now] of [
    ['big.bin', `${big}grown`],
    ['big.bin', 'shrunk'],
    ['small.txt', 'smaller'],
    ['small.txt', 'x'],
  ]) {
    const { members } = await plan(dir, `      - { src: ${name}, dest: /srv/${name} }\n`);
    await writeFile(join(dir, name), now);
    const re = new RegExp(
      `^${join(dir, name)} \\(/srv/${name.replace('.', '\\.')} in the image\\) changed while the layer was being written: planned \\d+ bytes, now .*; keep the build context unchanged during berth build`,
    );
    await rejects(consume(members), re);
    assert.throws(
      () => tarSegmentSync(members, 0),
      (e: Error) => re.test(e.message),
    );
    await writeFile(join(dir, name), name === 'big.bin' ? big : 'small');
  }
});

test('no match names the entry; optional entries may match nothing', async (t) => {
  const dir = await fixture({ 'a.txt': 'a' });
  t.after(() => rm(dir, { recursive: true, force: true }));
  await rejects(
    plan(dir, '      - { src: "dist/**", dest: /x/ }\n'),
    /^berth\.yaml:6 layers\[0\]\.files\[0\]\.src: no file matches 'dist\/\*\*'$/,
  );
  await rejects(
    plan(dir, '      - { src: "dist/{arch}/app", dest: /app }\n'),
    /no file matches 'dist\/amd64\/app' \(for linux\/amd64\)/,
  );
  assert.deepEqual((await plan(dir, '      - { src: "dist/**", dest: /x/, optional: true }\n')).members, []);
});

test('layer tar: sorted, implied parents fixed, epoch times, spec owners, no names unless set', async (t) => {
  const dir = await fixture({ 'bin/tool': '#!/bin/sh\n', 'b/z.txt': 'z', 'b/a.txt': 'a' });
  t.after(() => rm(dir, { recursive: true, force: true }));
  execFileSync('chmod', ['0700', join(dir, 'bin/tool')]);
  const p = await plan(
    dir,
    [
      '      - { src: "b/**", dest: /srv/data/, uid: 1000, gid: 1001 }',
      '      - { src: bin/tool, dest: /usr/bin/tool }',
      '      - { inline: "hi\\n", dest: /etc/motd, user: app, group: app }',
      '      - { symlink: /usr/bin/tool, dest: /tool }',
      '      - { directory: /var/lib/app, mode: "0700", uid: 65532 }',
      '',
    ].join('\n'),
  );
  const blobs = new BlobDir(join(dir, '.blobs'));
  const built = await buildLayer(p, { epoch: 1700000000, compression: 'gzip', blobs });
  const gz = await readFile(blobs.path(built.layer.descriptor.digest));
  assert.equal(digestOf(gz), built.layer.descriptor.digest);
  // gzip header: magic, deflate, no flags, MTIME 0, XFL 0, OS 255 — nothing from the build machine.
  assert.deepEqual([...gz.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
  const raw = gunzipSync(gz);
  assert.equal(digestOf(raw), built.layer.diffId);
  const list = await entries(raw);
  assert.deepEqual(
    list.map((e) => e.name),
    [
      'etc/',
      'etc/motd',
      'srv/',
      'srv/data/',
      'srv/data/a.txt',
      'srv/data/z.txt',
      'tool',
      'usr/',
      'usr/bin/',
      'usr/bin/tool',
      'var/',
      'var/lib/',
      'var/lib/app/',
    ],
  );
  const by = Object.fromEntries(list.map((e) => [e.name, e]));
  assert.ok(list.every((e) => e.mtime === 1700000000));
  assert.deepEqual([by['usr/'].mode, by['usr/'].uid, by['usr/'].uname], [0o755, 0, '']);
  assert.deepEqual([by['usr/bin/tool'].mode, by['usr/bin/tool'].uid], [0o755, 0]); // owner-exec source → 0755
  assert.deepEqual(
    [by['srv/data/a.txt'].mode, by['srv/data/a.txt'].uid, by['srv/data/a.txt'].gid],
    [0o644, 1000, 1001],
  );
  assert.deepEqual([by['etc/motd'].uname, by['etc/motd'].body], ['app', 'hi\n']);
  assert.deepEqual([by.tool.type, by.tool.linkname], ['symlink', '/usr/bin/tool']);
  assert.deepEqual([by['var/lib/app/'].mode, by['var/lib/app/'].uid], [0o700, 65532]);
});

test('zstd layers decompress to the same tar (same diffID) as gzip ones', async (t) => {
  const dir = await fixture({ 'a.txt': 'a'.repeat(10000) });
  t.after(() => rm(dir, { recursive: true, force: true }));
  const blobs = new BlobDir(join(dir, '.blobs'));
  const p = await plan(dir, '      - { src: a.txt, dest: /a.txt }\n');
  const g = await buildLayer(p, { epoch: 0, compression: 'gzip', blobs });
  const z = await buildLayer(p, { epoch: 0, compression: 'zstd', blobs });
  assert.equal(z.layer.descriptor.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  assert.equal(g.layer.diffId, z.layer.diffId);
  assert.equal(digestOf(decompress(await readFile(blobs.path(z.layer.descriptor.digest)))), z.layer.diffId);
});

test('a one-file change rebuilds only its segment, and gives the bytes a cold build gives (gzip and zstd)', async (t) => {
  // ~6 MiB over 600 files: several segments (segments.ts), so most of the layer is reused on the rebuild.
  const files: Record<string, string> = {};
  for (let i = 0; i < 600; i++)
    files[`tree/d${i % 7}/f${i}.txt`] = `${i}:`.padEnd(10_000, String.fromCharCode(97 + (i % 26)));
  const dir = await fixture(files);
  // One incompressible 9 MiB file: a segment too big to read ahead, so it is copied as a stream.
  await writeFile(join(dir, 'tree/big.bin'), randomBytes(9 << 20));
  const cacheDir = await mkdtemp(join(tmpdir(), 'berth-cache-'));
  t.after(() =>
    Promise.all([rm(dir, { recursive: true, force: true }), rm(cacheDir, { recursive: true, force: true })]),
  );
  const spec = `      - { src: "tree/**", dest: /srv/ }\n`;
  for (const compression of ['gzip', 'zstd'] as const) {
    const warm = {
      epoch: 0,
      compression,
      blobs: new BlobDir(join(cacheDir, compression, 'blobs')),
      cache: await LayerCache.open(join(cacheDir, compression)),
      slot: 'ctx\0linux/amd64\0l',
    };
    const first = await buildLayer(await plan(dir, spec), warm);
    assert.ok(first.segmentsReused!.total >= 3, `expected several segments, got ${first.segmentsReused!.total}`);
    assert.equal(first.segmentsReused!.reused, 0);

    await writeFile(join(dir, 'tree/d3/f3.txt'), 'changed\n');
    const again = await buildLayer(await plan(dir, spec), warm);
    assert.equal(again.cached, false);
    assert.equal(
      again.segmentsReused!.reused,
      again.segmentsReused!.total - 1,
      'every segment but the changed one is copied',
    );

    // A cold build of the changed tree, with no cache at all, writes the very same blob.
    const cold = await buildLayer(await plan(dir, spec), {
      epoch: 0,
      compression,
      blobs: new BlobDir(join(cacheDir, `${compression}-cold`)),
    });
    assert.equal(again.layer.descriptor.digest, cold.layer.descriptor.digest);
    assert.equal(again.layer.diffId, cold.layer.diffId);
    const blob = await readFile(warm.blobs.path(again.layer.descriptor.digest));
    const tarBytes = compression === 'gzip' ? gunzipSync(blob) : decompress(blob);
    assert.equal(
      digestOf(tarBytes),
      again.layer.diffId,
      'the diffID is the digest of the whole (multi-member) stream, decompressed',
    );
    const listed = await entries(tarBytes);
    assert.equal(listed.find((e) => e.name === 'srv/d3/f3.txt')?.body, 'changed\n');
    assert.equal(listed.filter((e) => e.type === 'file').length, 601);
    // The SBOM's file list, read segment by segment (and cached per segment), is the whole-blob list.
    const bySegment = await layerFiles(again.layer, join(cacheDir, compression), again.segments);
    assert.deepEqual(bySegment, await layerFiles(again.layer));
    assert.equal(bySegment.length, 601);

    // The cold build kept no uncompressed segments; the rebuild kept one per read-ahead segment (the big one streams).
    const kept = async () => (await readdir(join(cacheDir, compression, 'segments'))).filter((n) => n.endsWith('.tar'));
    assert.equal((await kept()).length, again.segmentsReused!.total - 1);
    // A kept copy of the wrong length (truncated, or a stale file) is ignored: decompressed instead, same bytes.
    const victim = join(cacheDir, compression, 'segments', (await kept())[0]);
    await writeFile(victim, (await readFile(victim)).subarray(1));
    // (Same size: the segment boundaries stay where they are.)
    await writeFile(join(dir, 'tree/d5/f5.txt'), 'X'.repeat(files['tree/d5/f5.txt'].length));
    const third = await buildLayer(await plan(dir, spec), warm);
    const coldThird = await buildLayer(await plan(dir, spec), {
      epoch: 0,
      compression,
      blobs: new BlobDir(join(cacheDir, `${compression}-cold`)),
    });
    assert.equal(third.segmentsReused!.reused, third.segmentsReused!.total - 1);
    assert.equal(third.layer.descriptor.digest, coldThird.layer.descriptor.digest);
    assert.equal(third.layer.diffId, coldThird.layer.diffId);
    await writeFile(join(dir, 'tree/d3/f3.txt'), files['tree/d3/f3.txt']);
    await writeFile(join(dir, 'tree/d5/f5.txt'), files['tree/d5/f5.txt']);
  }
});

/** A fresh local layer cache (removed with `dir` after the test) and gzip build options that use it. */
async function gzipCache(t: TestContext, dir: string) {
  const cacheDir = await mkdtemp(join(tmpdir(), 'berth-cache-'));
  t.after(() =>
    Promise.all([rm(dir, { recursive: true, force: true }), rm(cacheDir, { recursive: true, force: true })]),
  );
  const opts = {
    epoch: 0,
    compression: 'gzip' as const,
    blobs: new BlobDir(join(cacheDir, 'blobs')),
    cache: await LayerCache.open(cacheDir),
    slot: 's',
  };
  return { cacheDir, opts };
}

test('pruneCache drops least recently used blobs over the cap, never the kept ones; what stays is still a hit', async (t) => {
  const dir = await fixture({ 'a/x.bin': '' });
  const { cacheDir, opts } = await gzipCache(t, dir);
  const built: Awaited<ReturnType<typeof buildLayer>>[] = [];
  for (let i = 0; i < 4; i++) {
    await writeFile(join(dir, 'a/x.bin'), randomBytes(256 << 10)); // incompressible: each blob ~256 KiB
    built.push(await buildLayer(await plan(dir, '      - { src: a, dest: /a/ }\n'), opts));
    await new Promise((r) => setTimeout(r, 20)); // distinct mtimes
  }
  const path = (i: number) => opts.blobs.path(built[i].layer.descriptor.digest);
  const keep = new Set([path(3), path(0)]);
  const r = await pruneCache(cacheDir, 700 << 10, keep);
  assert.ok(r.removed >= 2 && r.freedBytes >= 2 * (256 << 10), JSON.stringify(r));
  assert.equal(await opts.blobs.has(built[0].layer.descriptor.digest), true, 'kept although oldest');
  assert.equal(await opts.blobs.has(built[3].layer.descriptor.digest), true, 'kept');
  assert.equal(await opts.blobs.has(built[1].layer.descriptor.digest), false, 'least recently used goes first');
  // Under the cap: nothing happens.
  assert.deepEqual(await pruneCache(cacheDir, 1 << 30), { removed: 0, freedBytes: 0 });
  // The newest blob survived, so the current content is still a layer-cache hit.
  const again = await buildLayer(await plan(dir, '      - { src: a, dest: /a/ }\n'), opts);
  assert.equal(again.cached, true, 'the newest blob is still cached');
});

test('the in-memory tar of a segment is byte for byte the streamed tar (PAX names, symlinks, inline data, owners)', async (t) => {
  const long = `${'d'.repeat(120)}/${'f'.repeat(200)}`;
  const dir = await fixture({
    'a/empty': '',
    'a/x.txt': 'x'.repeat(513),
    [`a/${long}`]: 'long',
    'a/ü/ñ.txt': 'utf8',
    'a/exact': 'e'.repeat(1024),
  });
  t.after(() => rm(dir, { recursive: true, force: true }));
  await symlink('x.txt', join(dir, 'a', 'link'));
  await symlink('ü/ñ.txt'.padEnd(120, '/'), join(dir, 'a', 'longlink'));
  const p = planLayer(
    parseSpec(
      'apiVersion: berth/v1\nkind: Image\nlayers:\n  - name: l\n    properties: { uid: 1000, gid: 1000, user: app, group: app }\n    files:\n' +
        '      - { src: "a/**", dest: /srv/ }\n      - { inline: "hello\\n", dest: /etc/hi, mode: "0600" }\n      - { directory: /var/empty, mode: "0000" }\n',
    ),
    0,
    amd64,
    await Context.open(dir),
  );
  const { members } = await p;
  const streamed: Buffer[] = [];
  const sums: string[] = [];
  for await (const c of tarStream(members, 1700000000, (m, s) => sums.push(`${m.path} ${s.sha256} ${s.sha1}`), {
    endOfArchive: false,
  }))
    streamed.push(c as Buffer);
  const syncSums: string[] = [];
  const inMemory = tarSegmentSync(members, 1700000000, (m, s) => syncSums.push(`${m.path} ${s.sha256} ${s.sha1}`));
  assert.ok(
    members.some((m) => Buffer.byteLength(m.path) > 255),
    'a name that needs a PAX header',
  );
  assert.equal(digestOf(inMemory), digestOf(Buffer.concat(streamed)));
  assert.deepEqual(syncSums, sums);
  // A file that changed size since planning is an error, not a short member.
  await writeFile(join(dir, 'a', 'x.txt'), 'shorter');
  assert.throws(
    () => tarSegmentSync(members, 0),
    /x\.txt \(\/srv\/x\.txt in the image\) changed while the layer was being written/,
  );
});

test('members sort by UTF-8 bytes, also past U+FFFF (where UTF-16 order differs)', async (t) => {
  // b/ holds a U+FFFD name, so the walk reads it as raw bytes (a/ is read as strings): both must give byte order.
  const names = ['z', '\uE000', '\u{1F600}', 'é'];
  const dir = await fixture(
    Object.fromEntries([...names.map((n) => [`a/${n}`, '']), ...[...names, '\uFFFD'].map((n) => [`b/${n}`, ''])]),
  );
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { members } = await plan(dir, '      - { src: "a/**", dest: /x/ }\n      - { src: "b/**", dest: /y/ }\n');
  const paths = members.map((m) => m.path);
  assert.deepEqual(
    paths,
    [...paths].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
  );
  assert.deepEqual(paths, [
    'x',
    'x/z',
    'x/é',
    'x/\uE000',
    'x/\u{1F600}',
    'y',
    'y/z',
    'y/é',
    'y/\uE000',
    'y/\uFFFD',
    'y/\u{1F600}',
  ]);
  // The walk's own order (what a glob sees first) is byte order too.
  const walked = (await (await Context.open(dir)).select('a/**')).map((f) => f.rel);
  assert.deepEqual(walked, ['z', 'é', '\uE000', '\u{1F600}']);
});

test("a plan's own gzip level and member size: the same tar, the members it says, its own cache key", async (t) => {
  // Compressible and over SEGMENT_MIN_BYTES, so the level shows in the bytes; numbers.txt is varied enough for
  // zlib's memLevel to show too.
  const text = 'berth compresses this line at the level the plan asks for\n'.repeat(40_000);
  const numbers = Array.from({ length: 60_000 }, (_, i) => `line ${(i * 7919) % 100_003} of berth\n`).join('');
  const dir = await fixture({ 'a/big.txt': text, 'a/numbers.txt': numbers, 'a/small.txt': 'small\n' });
  const { opts } = await gzipCache(t, dir);
  const p = await plan(dir, '      - { src: "a/**", dest: /srv/ }\n');
  const standard = await buildLayer(p, opts);
  const fast = await buildLayer({ ...p, gzip: { level: 1 } }, opts);
  assert.equal(fast.cached, false, 'a layer at another level is not a cache hit on the default one');
  assert.equal(fast.layer.diffId, standard.layer.diffId);
  assert.notEqual(fast.layer.descriptor.digest, standard.layer.descriptor.digest);
  const blob = await readFile(opts.blobs.path(fast.layer.descriptor.digest));
  const members = [...fast.segments!.map((s) => blob.subarray(s.offset, s.offset + s.length))];
  const level1 = (tar: Buffer) => {
    const out = gzipSync(tar, { level: 1, memLevel: 8, windowBits: 15, strategy: zc.Z_DEFAULT_STRATEGY });
    out.fill(0, 4, 9);
    out[9] = 0xff;
    return out;
  };
  const expected = [...members.map((m) => gunzipSync(m)), Buffer.alloc(1024)].map(level1);
  assert.ok(Buffer.concat(expected).equals(blob), 'the blob is each segment gzipped alone at level 1, in order');
  assert.ok(blob.length > (await readFile(opts.blobs.path(standard.layer.descriptor.digest))).length);
  // The same plan again is a cache hit on its own key.
  assert.equal((await buildLayer({ ...p, gzip: { level: 1 } }, opts)).cached, true);

  // In members: each segment's tar cut every memberBytes, each piece its own member, in order.
  const memberBytes = 256 << 10;
  const split = await buildLayer({ ...p, gzip: { level: 1, memberBytes } }, opts);
  assert.equal(split.cached, false, 'members are another cache key');
  assert.equal(split.layer.diffId, standard.layer.diffId);
  const splitBlob = await readFile(opts.blobs.path(split.layer.descriptor.digest));
  const pieces: Buffer[] = [];
  for (const s of split.segments!) {
    const tar = gunzipSync(splitBlob.subarray(s.offset, s.offset + s.length));
    for (let at = 0; at < tar.length; at += memberBytes) pieces.push(tar.subarray(at, at + memberBytes));
  }
  assert.ok(pieces.length > split.segments!.length + 2, `several members per segment, got ${pieces.length}`);
  const expectedSplit = Buffer.concat([...pieces, Buffer.alloc(1024)].map(level1));
  assert.ok(expectedSplit.equals(splitBlob), 'the blob is each segment cut into level-1 members, in order');

  // zlib's memLevel (preset go's 9): its own cache key, and exactly the bytes zlib gives with it.
  const mem9 = await buildLayer({ ...p, gzip: { level: 1, memLevel: 9, memberBytes } }, opts);
  assert.equal(mem9.cached, false, 'another memLevel is another cache key');
  assert.equal(mem9.layer.diffId, standard.layer.diffId);
  const mem9Blob = await readFile(opts.blobs.path(mem9.layer.descriptor.digest));
  const level1Mem9 = (tar: Buffer) => {
    const out = gzipSync(tar, { level: 1, memLevel: 9, windowBits: 15, strategy: zc.Z_DEFAULT_STRATEGY });
    out.fill(0, 4, 9);
    out[9] = 0xff;
    return out;
  };
  assert.ok(Buffer.concat([...pieces, Buffer.alloc(1024)].map(level1Mem9)).equals(mem9Blob));
  assert.notEqual(mem9.layer.descriptor.digest, split.layer.descriptor.digest, 'memLevel changes these bytes');
  assert.equal((await buildLayer({ ...p, gzip: { level: 1, memLevel: 9, memberBytes } }, opts)).cached, true);
});
