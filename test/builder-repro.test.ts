// Reproducibility: the same spec on two copies of the inputs that differ in mtimes, umask (so on-disk modes),
// creation order, directory, and a build run with a different TZ, locale, umask and cwd must give identical
// manifest and index digests — with gzip and with zstd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { berth, parseBuild, writeTree } from './support/builder-fixtures.js';

const FILES: Record<string, string> = {
  'dist/amd64/app': '#!/bin/sh\necho amd64\n',
  'dist/arm64/app': '#!/bin/sh\necho arm64\n',
  'static/index.html': '<h1>hi</h1>\n',
  'static/css/site.css': 'body{}\n',
  'static/ü-ünïcode.txt': 'unicode\n',
  [`static/${'long'.repeat(40)}.txt`]: 'long name\n',
  'static/deep/a/b/c/d.txt': 'deep\n',
};

function spec(compression: string): string {
  return `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
compression: ${compression}
layers:
  - name: bin
    files:
      - { src: "dist/{arch}/app", dest: /usr/local/bin/app }
  - name: static
    properties: { uid: 101, gid: 101 }
    files:
      - { src: "static/**", dest: /srv/static/ }
      - { inline: "built by berth\\n", dest: /etc/motd }
      - { symlink: /usr/local/bin/app, dest: /app }
config: { entrypoint: [/app], env: { PORT: "8080" }, workdir: /srv, user: "101:101", exposedPorts: [8080] }
annotations: { org.opencontainers.image.title: repro }
`;
}

async function copyA(compression: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-repro-a-'));
  await writeTree(dir, FILES);
  for (const a of ['amd64', 'arm64']) await chmod(join(dir, `dist/${a}/app`), 0o755);
  await writeFile(join(dir, 'berth.yaml'), spec(compression));
  return dir;
}

async function copyB(compression: string): Promise<string> {
  const old = process.umask(0o077);
  try {
    const dir = await mkdtemp(join(tmpdir(), 'berth-other-place-'));
    await writeTree(join(dir, 'nested/ctx'), FILES, 'reverse');
    const ctx = join(dir, 'nested/ctx');
    for (const a of ['amd64', 'arm64']) await chmod(join(ctx, `dist/${a}/app`), 0o700);
    let t = 1_000_000;
    for (const f of Object.keys(FILES)) await utimes(join(ctx, f), (t += 7777), (t += 3333));
    await writeFile(join(ctx, 'berth.yaml'), spec(compression));
    return ctx;
  } finally {
    process.umask(old);
  }
}

for (const compression of ['gzip', 'zstd']) {
  test(`identical digests from different machines' conditions (${compression})`, async (t) => {
    const a = await copyA(compression);
    const b = await copyB(compression);
    t.after(async () => {
      await rm(a, { recursive: true, force: true });
      await rm(join(b, '../..'), { recursive: true, force: true });
    });
    const ra = parseBuild(
      await berth(['build', '-f', join(a, 'berth.yaml'), '--no-cache', '--json'], {
        cwd: a,
        env: { TZ: 'UTC', LANG: 'C', LC_ALL: 'C', SOURCE_DATE_EPOCH: undefined },
        umask: '022',
      }),
    );
    const rb = parseBuild(
      await berth(['build', '-f', 'nested/ctx/berth.yaml', '--no-cache', '--json'], {
        cwd: join(b, '../..'),
        env: { TZ: 'Asia/Kathmandu', LANG: 'tr_TR.UTF-8', LC_ALL: 'tr_TR.UTF-8', SOURCE_DATE_EPOCH: undefined },
        umask: '077',
      }),
    );
    assert.equal(ra.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.equal(ra.images.length, 2);
    assert.deepEqual(rb.images, ra.images);
    assert.equal(rb.digest, ra.digest);
    // The per-platform source really differs, so the two images must too.
    assert.notEqual(ra.images[0].layers[0].digest, ra.images[1].layers[0].digest);
  });
}

test('SOURCE_DATE_EPOCH changes the digest; --check-reproducible passes', async (t) => {
  const a = await copyA('gzip');
  t.after(() => rm(a, { recursive: true, force: true }));
  const base = parseBuild(
    await berth(['build', '-f', join(a, 'berth.yaml'), '--no-cache', '--json'], {
      env: { SOURCE_DATE_EPOCH: undefined },
    }),
  );
  const later = parseBuild(
    await berth(['build', '-f', join(a, 'berth.yaml'), '--no-cache', '--json'], {
      env: { SOURCE_DATE_EPOCH: '1700000000' },
    }),
  );
  assert.notEqual(later.digest, base.digest);
  const check = await berth(
    ['build', '-f', join(a, 'berth.yaml'), '--check-reproducible', '--cache', join(a, '.cache')],
    { env: { SOURCE_DATE_EPOCH: undefined } },
  );
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stderr, /reproducible: both builds gave sha256:/);
  assert.equal(check.stdout.trim(), base.digest);
});
