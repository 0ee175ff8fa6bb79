// berth's ustar/PAX encoder: the bytes are pinned, equal to what tar-stream's pack() wrote for the same members (so
// layers keep their digests), and read back by GNU tar and tar-stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { digestOf } from '../spec/digest.js';
import type { Member } from './plan.js';
import { encodeMember, encodePaxRecords } from './tar-header.js';

const EPOCH = 1700000000;

function member(path: string, over: Partial<Member> = {}): Member {
  return { path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, ...over };
}

/** The members' tar as tar-stream 3.x packs them (the encoder berth used before, through its public API). */
async function tarStreamPack(members: Member[], epoch: number): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const m of members) {
    const h: Partial<tar.Header> & { name: string } = {
      name: m.type === 'directory' ? `${m.path}/` : m.path,
      type: m.type,
      mode: m.mode,
      uid: m.uid,
      gid: m.gid,
      size: m.type === 'file' ? m.size : 0,
      mtime: new Date(epoch * 1000),
    };
    if (m.linkname !== undefined) h.linkname = m.linkname;
    if (m.uname) h.uname = m.uname;
    if (m.gname) h.gname = m.gname;
    await new Promise<void>((res, rej) => {
      const cb = (e?: Error | null) => (e ? rej(e) : res());
      if (m.type === 'file') pack.entry(h, Buffer.alloc(m.size, 'x'), cb);
      else pack.entry(h, cb).end(Buffer.alloc(0));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function encodeAll(members: Member[], epoch: number): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    parts.push(encodeMember(m, epoch));
    if (m.type === 'file') parts.push(Buffer.alloc(m.size, 'x'), Buffer.alloc((512 - (m.size % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Names at every ustar boundary: 100-byte names, 155-byte prefixes, no slash to split at, non-ASCII, long links. */
function variety(): Member[] {
  const out: Member[] = [];
  for (const n of [1, 99, 100, 101, 154, 155, 156, 200, 255, 256, 257, 300, 1000]) {
    out.push(member('n'.repeat(n)));
    out.push(member(`${'p'.repeat(Math.max(1, n - 101))}/${'f'.repeat(Math.min(n, 100))}`));
    out.push(member(`${'a/'.repeat(n >> 1)}z`));
    out.push(member(`dir${n}/${'x'.repeat(n % 97)}`, { type: 'directory', mode: 0o750, size: 0 }));
    out.push(member(`link${n}`, { type: 'symlink', mode: 0o777, size: 0, linkname: 'l'.repeat(n) }));
  }
  // PAX record lengths around a change of digit count (a record counts its own length digits).
  for (let n = 80; n < 110; n++) out.push(member(`é${'r'.repeat(n)}`));
  for (let n = 985; n < 1000; n++) out.push(member(`é${'r'.repeat(n)}`));
  out.push(member('ü/ñ.txt'), member('lnk', { type: 'symlink', size: 0, linkname: 'ü/ñ' }));
  out.push(member('owned', { uid: 1000, gid: 1001, uname: 'app', gname: 'staff', mode: 0o4755 }));
  out.push(member('max-ids', { uid: 2097151, gid: 2097151, uname: 'u'.repeat(32), gname: 'g'.repeat(32) }));
  out.push(member('zero-mode-file', { mode: 0 }), member('zero-mode-dir', { type: 'directory', mode: 0, size: 0 }));
  out.push(member('empty', { size: 0 }), member('block', { size: 512 }), member('more', { size: 513 }));
  return out;
}

test('the header bytes are what tar-stream packed for the same members (layers keep their digests)', async () => {
  const members = variety();
  for (const epoch of [0, EPOCH, 2 ** 31 - 1]) {
    const mine = encodeAll(members, epoch);
    const theirs = await tarStreamPack(members, epoch);
    for (let at = 0; at < Math.min(mine.length, theirs.length); at += 512) {
      if (!mine.subarray(at, at + 512).equals(theirs.subarray(at, at + 512)))
        assert.fail(
          `block at ${at} differs (epoch ${epoch}):\n${mine.subarray(at, at + 512)}\n${theirs.subarray(at, at + 512)}`,
        );
    }
    assert.equal(mine.length, theirs.length);
  }
});

test('pinned bytes: a ustar header and a PAX header', () => {
  const plain = encodeMember(member('srv/app.js', { size: 1234, uid: 1000, gid: 1000, uname: 'app' }), EPOCH);
  assert.equal(plain.length, 512);
  const field = (at: number, n: number) => plain.subarray(at, at + n).toString('latin1');
  assert.equal(field(0, 11), 'srv/app.js\0');
  assert.equal(field(100, 8), '000644 \0'); // mode
  assert.equal(field(108, 8), '001750 \0'); // uid 1000
  assert.equal(field(124, 12), '00000002322 '); // size 1234
  assert.equal(field(136, 12), '14524770400 '); // mtime 1700000000
  assert.equal(field(148, 8), '011711 \0'); // checksum
  assert.equal(field(156, 1), '0');
  assert.equal(field(257, 8), 'ustar\x0000');
  assert.equal(field(265, 4), 'app\0');
  assert.equal(field(329, 16), '000000 \x00000000 \x00'); // devmajor, devminor
  assert.equal(digestOf(plain), 'sha256:3bd3edeea6cee08d7b025a0d8b2f87401a51a21c0e28bbc1661434e5aa0e7e39');

  const long = `srv/${'d'.repeat(120)}/${'f'.repeat(140)}`;
  const pax = encodeMember(member(long, { type: 'symlink', size: 0, linkname: 'ü' }), EPOCH);
  assert.equal(pax.length, 3 * 512);
  assert.equal(pax.subarray(0, 10).toString(), 'PaxHeader\0');
  assert.equal(pax[156], 'x'.charCodeAt(0));
  const records = `${Buffer.byteLength(` path=${long}\n`) + 3} path=${long}\n15 linkpath=ü\n`;
  assert.equal(pax.subarray(512, 512 + Buffer.byteLength(records)).toString(), records);
  assert.deepEqual(encodePaxRecords(long, 'ü'), Buffer.from(records));
  assert.equal(pax.subarray(1024, 1034).toString(), 'PaxHeader\0');
  assert.equal(pax[1024 + 156], '2'.charCodeAt(0));
  assert.equal(digestOf(pax), 'sha256:330f40d6000cc30ba5c17c8a69c0410130faf02004fb870e4f0b9855f9b014e5');
});

test('epochs past 2038 and sizes past 8 GiB are written in full (octal; base-256 for the size)', async () => {
  const late = encodeMember(member('f'), 8589934591);
  assert.equal(late.subarray(136, 148).toString('latin1'), '77777777777 ');
  const y2040 = encodeMember(member('f'), 2208988800);
  assert.equal(y2040.subarray(136, 148).toString('latin1'), `${(2208988800).toString(8).padStart(11, '0')} `);
  const huge = encodeMember(member('big', { size: 2 ** 33 + 5 }), 0);
  assert.deepEqual([...huge.subarray(124, 136)], [0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 5]);
  // tar-stream reads them back.
  const ex = tar.extract();
  const seen: tar.Header[] = [];
  const done = (async () => {
    for await (const e of ex) {
      seen.push(e.header);
      e.resume();
    }
  })();
  Readable.from([y2040, Buffer.alloc(1024)]).pipe(ex as unknown as NodeJS.WritableStream);
  await done;
  assert.equal(seen[0].mtime!.getTime(), 2208988800 * 1000);
});

test('GNU tar lists the members with their full names, links, owners and times', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-tarhdr-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const long = `srv/${'d'.repeat(120)}/${'f'.repeat(140)}`;
  const members = [
    member('srv', { type: 'directory', size: 0, mode: 0o755 }),
    member(long, { uid: 1000, gid: 1001, uname: 'app', gname: 'staff' }),
    member('srv/ü.txt'),
    member('srv/link', { type: 'symlink', mode: 0o777, size: 0, linkname: 'l'.repeat(150) }),
  ];
  await writeFile(join(dir, 'a.tar'), encodeAll(members, EPOCH));
  const out = execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', join(dir, 'a.tar')], {
    env: { ...process.env, TZ: 'UTC', LC_ALL: 'C.UTF-8' },
  }).toString();
  const lines = out.trim().split('\n');
  assert.equal(lines.length, 4, out);
  assert.match(lines[0], /^drwxr-xr-x 0\/0 +0 2023-11-14 22:13:20 srv\/$/);
  assert.match(lines[1], new RegExp(`^-rw-r--r-- 1000/1001 +3 2023-11-14 22:13:20 ${long}$`));
  assert.match(lines[2], /srv\/ü\.txt$/);
  assert.match(lines[3], new RegExp(`^lrwxrwxrwx 0/0 +0 .* srv/link -> ${'l'.repeat(150)}$`));
});
