// deb-unpack against .debs made by dpkg-deb itself, in every compression it writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobDir } from './blobs.js';
import { arMembers, readDeb, readDebCached } from './deb-unpack.js';

const hasDpkgDeb = (() => {
  try {
    execFileSync('dpkg-deb', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('readDeb: control, md5sums and data members of dpkg-deb packages (none, gzip, xz, zstd) are the same', {
  skip: !hasDpkgDeb && process.env.CI !== 'true' ? 'dpkg-deb is not installed' : false,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-deb-unpack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pkg = join(dir, 'pkg');
  mkdirSync(join(pkg, 'DEBIAN'), { recursive: true });
  mkdirSync(join(pkg, 'usr/bin'), { recursive: true });
  mkdirSync(join(pkg, 'usr/share/doc/hello'), { recursive: true });
  writeFileSync(
    join(pkg, 'DEBIAN/control'),
    'Package: hello\nVersion: 1:2.0-1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: test\n one\n',
  );
  writeFileSync(join(pkg, 'DEBIAN/postinst'), '#!/bin/sh\nexit 1\n');
  chmodSync(join(pkg, 'DEBIAN/postinst'), 0o755);
  writeFileSync(join(pkg, 'DEBIAN/md5sums'), 'd41d8cd98f00b204e9800998ecf8427e  usr/bin/hello\n');
  writeFileSync(join(pkg, 'usr/bin/hello'), '#!/bin/sh\necho hello\n');
  chmodSync(join(pkg, 'usr/bin/hello'), 0o4755);
  symlinkSync('hello', join(pkg, 'usr/bin/hi'));
  writeFileSync(join(pkg, 'usr/share/doc/hello/copyright'), 'free\n');
  const staging = new BlobDir(join(dir, 'staging'));
  const seen: string[] = [];
  for (const z of ['none', 'gzip', 'xz', 'zstd']) {
    const deb = join(dir, `hello-${z}.deb`);
    execFileSync('dpkg-deb', ['--root-owner-group', `-Z${z}`, '--build', pkg, deb], { stdio: 'ignore' });
    const names = (await arMembers(deb, deb)).map((m) => m.name);
    assert.equal(names[0], 'debian-binary');
    const c = await readDeb(deb, `hello-${z}.deb`, staging);
    assert.match(c.control, /^Package: hello\nVersion: 1:2\.0-1\n/);
    assert.equal(c.md5sums, 'd41d8cd98f00b204e9800998ecf8427e  usr/bin/hello\n');
    const shape = c.members.map(
      (m) => `${m.path} ${m.type} ${m.mode.toString(8)} ${m.uid}:${m.gid} ${m.linkname ?? m.size}`,
    );
    assert.ok(shape.includes('usr/bin/hello file 4755 0:0 21'), shape.join('\n'));
    assert.ok(shape.includes('usr/bin/hi symlink 777 0:0 hello'));
    assert.ok(!c.members.some((m) => m.path.includes('DEBIAN') || m.path.includes('postinst')));
    const hello = c.members.find((m) => m.path === 'usr/bin/hello')!;
    assert.equal(readFileSync((hello.source as { abs: string }).abs, 'utf8'), '#!/bin/sh\necho hello\n');
    seen.push(JSON.stringify(shape));
  }
  assert.equal(new Set(seen).size, 1, 'every compression gives the same members');

  // The unpack cache answers the second time without reading the .deb (here: a deleted one).
  const deb = join(dir, 'hello-xz.deb');
  const cache = join(dir, 'unpacked');
  const first = await readDebCached(deb, 'a'.repeat(64), 'hello.deb', staging, cache);
  rmSync(deb);
  const again = await readDebCached(deb, 'a'.repeat(64), 'hello.deb', staging, cache);
  assert.deepEqual(
    again.members.map((m) => [m.path, m.mode, m.size]),
    first.members.map((m) => [m.path, m.mode, m.size]),
  );
  await assert.rejects(readDeb(join(dir, 'pkg/usr/share/doc/hello/copyright'), 'copyright', staging), /is not a \.deb/);
});
