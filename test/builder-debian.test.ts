// packages.debian end to end (issue 23), against a local archive made and signed by the test (debian-repo.ts):
// two builds in different places give one digest for amd64 + arm64; berth.lock pins every .deb and a locked build
// reads no index; the SBOM lists the packages as pkg:deb purls; dpkg's status.d is there for scanners; the image
// runs under the Docker engine (busybox, the accounts, TLS requests from the image verified against the generated CA
// bundle, which carries a private CA the test ships as a package); a tampered .deb, a tampered Packages index and a
// forged InRelease are refused with nothing stored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { berth, parseBuild } from './support/builder-fixtures.js';
import { ALL_PACKAGES, ARCH_PACKAGES, DEBIAN_PEERS, localRepo, type LocalRepo } from './support/debian-repo.js';
import { startDockerd } from './support/docker.js';
import { ok, requirePeer, run } from './support/peers.js';
import { makeLeaf, pki } from './support/pki.js';

const INCLUDE = ['libc6', 'busybox', 'ca-certificates', 'tzdata'];
const EXPECTED = [...ARCH_PACKAGES, ...ALL_PACKAGES].sort();

function spec(repo: LocalRepo, opts: { include?: string[]; exclude?: string[] } = {}): string {
  return `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
packages:
  debian:
    sources:
      - { url: "${repo.url}", suites: [stable], keyring: archive-keyring.gpg }
    include: [${(opts.include ?? INCLUDE).join(', ')}]
    exclude: [${(opts.exclude ?? ['debconf', 'perl-base']).join(', ')}]
accounts:
  groups: [{ name: app, gid: 1000 }]
  users: [{ name: app, uid: 1000, gid: 1000, home: /home/app }]
config: { entrypoint: [/bin/busybox], cmd: [sh, -c, "/bin/busybox ls /"], user: "1000:1000" }
annotations: { org.opencontainers.image.title: debian-base }
`;
}

async function place(t: { after(fn: () => Promise<void>): void }, repo: LocalRepo, text = spec(repo)) {
  const dir = await mkdtemp(join(tmpdir(), 'berth-deb-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'berth.yaml'), text);
  await copyFile(repo.keyring, join(dir, 'archive-keyring.gpg'));
  return dir;
}

const build = (dir: string, extra: string[] = []) =>
  berth(
    [
      'build',
      '-f',
      join(dir, 'berth.yaml'),
      '--cache',
      join(dir, '.cache'),
      '--oci-layout',
      join(dir, 'out'),
      '--json',
      ...extra,
    ],
    { timeoutMs: 300_000 },
  );

const blob = (dir: string, digest: string) => join(dir, 'out/blobs/sha256', digest.slice('sha256:'.length));

test('packages.debian: same digest from two places (amd64 + arm64), lock pins every .deb, status.d and SBOM list them', {
  timeout: 600_000,
}, async (t) => {
  if (!requirePeer(t, ...DEBIAN_PEERS, 'tar')) return;
  const repo = await localRepo(t);
  const a = await place(t, repo);
  const first = parseBuild(await build(a, ['--lock']));
  assert.equal(first.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(
    first.images.map((i) => i.platform),
    ['linux/amd64', 'linux/arm64'],
  );
  const b = await place(t, repo);
  const second = parseBuild(await build(b));
  assert.equal(second.digest, first.digest, 'a second place, a fresh cache: the same image');

  const lock = JSON.parse(await readFile(join(a, 'berth.lock'), 'utf8'));
  for (const arch of ['amd64', 'arm64']) {
    const pkgs = lock.debian.architectures[arch];
    assert.deepEqual(
      pkgs.map((p: any) => p.name),
      EXPECTED,
      `${arch}: the closure less the excluded`,
    );
    for (const p of pkgs) {
      assert.match(p.sha256, /^[0-9a-f]{64}$/);
      assert.equal(p.architecture, ALL_PACKAGES.includes(p.name) ? 'all' : arch);
      assert.equal(p.url, `${repo.url}/${p.filename}`);
      assert.equal(p.source, 0);
      const deb = await readFile(join(repo.dir, p.filename));
      assert.equal(createHash('sha256').update(deb).digest('hex'), p.sha256);
    }
  }

  // Locked: no index is read (the archive could have moved on), and the image is the same — also from another
  // URL for the same archive (a mirror or snapshot serves the pinned files at the same paths).
  const c = await place(t, repo, spec(repo).replace(repo.url, repo.url.replace('127.0.0.1', 'localhost')));
  await copyFile(join(a, 'berth.lock'), join(c, 'berth.lock'));
  repo.requests.length = 0;
  assert.equal(parseBuild(await build(c)).digest, first.digest);
  assert.ok(!repo.requests.some((r) => r.startsWith('/dists/')), `no index read: ${repo.requests.join(' ')}`);
  assert.ok(repo.requests.some((r) => r.startsWith('/pool/')));
  // A year later the archive has dropped a pinned version: the locked build says so and how to go on (a snapshot
  // of the archive serves it), and stores nothing of the image.
  const tz = lock.debian.architectures.amd64.find((p: any) => p.name === 'tzdata');
  await rename(join(repo.dir, tz.filename), join(repo.dir, `${tz.filename}.gone`));
  const later = await place(t, repo);
  await copyFile(join(a, 'berth.lock'), join(later, 'berth.lock'));
  const gone = await build(later);
  assert.notEqual(gone.code, 0);
  assert.match(
    gone.stderr,
    new RegExp(
      `packages\\.debian\\.sources(\\.0|\\[0\\])\\.url: tzdata ${tz.version.replace(/[+.]/g, '\\$&')} \\(pinned by berth\\.lock\\) is gone from ${repo.url}/${tz.filename.replace(/[+.]/g, '\\$&')}: point the source at a snapshot of the archive`,
    ),
  );
  assert.equal(await readdir(join(later, 'out')).catch(() => 'none'), 'none', 'no image written');
  await rename(join(repo.dir, `${tz.filename}.gone`), join(repo.dir, tz.filename));

  // The layer: dpkg status.d for scanners, the loader of each architecture, accounts, the generated CA bundle.
  const layerOf = async (i: number) => {
    const m = JSON.parse(await readFile(blob(a, first.images[i].digest), 'utf8'));
    assert.equal(m.layers.length, 1, 'one layer of packages');
    return blob(a, m.layers[0].digest);
  };
  const amd64 = await layerOf(0);
  const list = ok(await run('tar', ['-tzf', amd64]));
  assert.match(list, /^\.?\/?lib64\/ld-linux-x86-64\.so\.2$/m);
  assert.match(list, /^\.?\/?bin\/busybox$/m);
  for (const p of EXPECTED)
    assert.match(list, new RegExp(`^var/lib/dpkg/status\\.d/${p.replace(/[+.]/g, '\\$&')}$`, 'm'));
  const status = ok(await run('tar', ['-xzOf', amd64, 'var/lib/dpkg/status.d/libc6']));
  assert.match(status, /^Package: libc6\nStatus: install ok installed\n/);
  assert.match(
    status,
    new RegExp(
      `^Version: ${lock.debian.architectures.amd64.find((p: any) => p.name === 'libc6').version.replace(/[+.]/g, '\\$&')}$`,
      'm',
    ),
  );
  assert.match(status, /^Architecture: amd64$/m);
  assert.match(
    ok(await run('tar', ['-xzOf', amd64, 'var/lib/dpkg/status.d/libc6.md5sums'])),
    /^[0-9a-f]{32} {2}usr\//m,
  );
  assert.equal(
    ok(await run('tar', ['-xzOf', amd64, 'etc/passwd'])),
    'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
  );
  const bundle = ok(await run('tar', ['-xzOf', amd64, 'etc/ssl/certs/ca-certificates.crt']));
  const certs = list.split('\n').filter((l) => /^usr\/share\/ca-certificates\/.*\.crt$/.test(l));
  assert.ok(certs.length > 100, `${certs.length} certificates shipped`);
  assert.equal(bundle.match(/-----BEGIN CERTIFICATE-----/g)?.length, certs.length, 'every certificate in the bundle');
  const arm64 = ok(await run('tar', ['-tzf', await layerOf(1)]));
  assert.match(arm64, /^lib\/ld-linux-aarch64\.so\.1$/m);
  assert.match(arm64, /^lib\/aarch64-linux-gnu\/libc\.so\.6$/m);

  // The SBOM: every package with its version, as a purl scanners match.
  for (const [i, img] of first.images.entries()) {
    const sbom = (img as any).sbom as string;
    assert.ok(sbom, `${img.platform} has an SBOM`);
    const manifest = JSON.parse(await readFile(blob(a, sbom), 'utf8'));
    const doc = JSON.parse(await readFile(blob(a, manifest.layers[0].digest), 'utf8'));
    const arch = ['amd64', 'arm64'][i];
    const purls = doc.packages.flatMap((p: any) => p.externalRefs.map((r: any) => r.referenceLocator));
    for (const p of lock.debian.architectures[arch]) {
      const version = encodeURIComponent(p.version);
      assert.ok(
        purls.includes(`pkg:deb/debian/${p.name}@${version}?arch=${p.architecture}&distro=debian-12`),
        `${arch} SBOM lists ${p.name} ${p.version}`,
      );
    }
  }

  // --lock --update (also spelled --update-lock) re-resolves and says what changed.
  await writeFile(join(a, 'berth.yaml'), spec(repo, { include: ['libc6', 'busybox', 'ca-certificates'] }));
  const updated = await berth(
    [
      'build',
      '-f',
      join(a, 'berth.yaml'),
      '--cache',
      join(a, '.cache'),
      '--oci-layout',
      join(a, 'out'),
      '--lock',
      '--update',
    ],
    { timeoutMs: 300_000 },
  );
  ok(updated);
  assert.match(updated.stderr, /^\s+- tzdata \S+ \(amd64\)$/m);
  assert.match(updated.stderr, /^\s+- tzdata \S+ \(arm64\)$/m);
  assert.ok(
    !JSON.parse(await readFile(join(a, 'berth.lock'), 'utf8')).debian.architectures.amd64.some(
      (p: any) => p.name === 'tzdata',
    ),
  );

  // Without exclude, ca-certificates needs debconf, which this archive lacks: the error names the chain.
  await writeFile(join(b, 'berth.yaml'), spec(repo, { exclude: [] }));
  const broken = await build(b);
  assert.notEqual(broken.code, 0);
  assert.match(
    broken.stderr,
    /packages\.debian\.include: amd64: \S+ \S+ depends on "debconf \(>= 0\.5\) \| debconf-2\.0", which no package in the sources satisfies/,
  );
});

/** A package as an organisation ships its private CA: the certificate under /usr/share/ca-certificates. */
async function caPackage(dir: string, crt: string): Promise<string> {
  const root = join(dir, 'berth-test-ca');
  await mkdir(join(root, 'DEBIAN'), { recursive: true });
  await mkdir(join(root, 'usr/share/ca-certificates/berth-test'), { recursive: true });
  await copyFile(crt, join(root, 'usr/share/ca-certificates/berth-test/berth-test-ca.crt'));
  await writeFile(
    join(root, 'DEBIAN/control'),
    'Package: berth-test-ca\nVersion: 1.0\nArchitecture: all\nMaintainer: berth tests <test@berth.invalid>\nDepends: ca-certificates\nDescription: the private CA of the test\n',
  );
  const deb = join(dir, 'berth-test-ca_1.0_all.deb');
  ok(await run('dpkg-deb', ['--root-owner-group', '--build', root, deb]));
  return deb;
}

/** An HTTPS server on loopback that answers every GET with `hello over TLS /<path>`. */
async function httpsServer(t: { after(fn: () => Promise<void>): void }, dir: string, name: string): Promise<number> {
  const server = createHttpsServer(
    { key: await readFile(join(dir, `${name}.key`)), cert: await readFile(join(dir, `${name}.crt`)) },
    (req, res) => res.end(`hello over TLS ${req.url}\n`),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

test('packages.debian: the base runs under docker — busybox, accounts, a TLS request verified against the CA bundle, tzdata', {
  timeout: 600_000,
}, async (t) => {
  if (!requirePeer(t, ...DEBIAN_PEERS, 'docker', 'dpkg-deb', 'openssl')) return;
  const repo = await localRepo(t);
  // A private CA shipped as a package (as organisations ship theirs): the generated bundle must carry it, as
  // update-ca-certificates would, so a TLS client in the image trusts a server it signed — and no other.
  const tls = await pki(t);
  await makeLeaf(tls, 'other-ca', 'stranger', 2, 'serverAuth');
  await repo.add([await caPackage(tls, join(tls, 'ca.crt'))]);
  const trusted = await httpsServer(t, tls, 'server');
  const stranger = await httpsServer(t, tls, 'stranger');
  const dir = await place(t, repo, spec(repo, { include: [...INCLUDE, 'berth-test-ca'] }));
  const archive = join(dir, 'base.tar');
  const tag = `berth-test/debian-base:${process.pid}`;
  ok(
    await berth(
      [
        'build',
        '-f',
        join(dir, 'berth.yaml'),
        '--cache',
        join(dir, '.cache'),
        '--platform',
        'linux/amd64',
        '--docker-archive',
        archive,
        '--tag',
        tag,
      ],
      { timeoutMs: 300_000 },
    ),
  );
  const dockerd = await startDockerd({ insecureRegistries: [] });
  t.after(() => dockerd.stop());
  ok(await dockerd.docker(['load', '-i', archive]));
  const script = [
    'B=/bin/busybox',
    '$B id',
    '$B cat /etc/passwd | $B grep ^app:',
    '$B ls /var/lib/dpkg/status.d | $B grep -c md5sums',
    '/usr/bin/openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt /usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt',
    '$B readlink /etc/localtime',
    '$B date -d @0 +%Z',
  ].join('; ');
  const out = ok(
    await dockerd.docker(['run', '--rm', '--network', 'none', '--entrypoint', '/bin/busybox', tag, 'sh', '-c', script]),
  );
  const lines = out.trim().split('\n');
  assert.match(lines[0], /^uid=1000\(app\) gid=1000\(app\)/);
  assert.match(lines[1], /^app:x:1000:1000:/);
  assert.ok(Number(lines[2]) >= 6, `md5sums files: ${lines[2]}`);
  assert.match(lines[3], /ISRG_Root_X1\.crt: OK$/);
  assert.equal(lines[4], '/usr/share/zoneinfo/Etc/UTC');
  assert.equal(lines[5], 'UTC');

  // TLS requests from the image to the test's servers (host network, loopback): openssl verifies the server's
  // chain and its IP against the image's bundle, named (-CAfile) and as OpenSSL's default (/usr/lib/ssl/cert.pem
  // is openssl's link to it); a server signed by a CA the bundle lacks is refused.
  const request = (port: number, path: string, ca: string) =>
    `out=$($B printf 'GET /${path} HTTP/1.0\\r\\n\\r\\n' | /usr/bin/openssl s_client -connect 127.0.0.1:${port} ` +
    `-verify_return_error -verify_ip 127.0.0.1 -quiet ${ca} 2>&1); echo "${path} rc=$? $(echo "$out" | $B tail -n 1)"`;
  const tlsScript = [
    'B=/bin/busybox',
    request(trusted, 'bundle', '-CAfile /etc/ssl/certs/ca-certificates.crt'),
    request(trusted, 'default', ''),
    request(stranger, 'stranger', '-CAfile /etc/ssl/certs/ca-certificates.crt'),
  ].join('; ');
  const got = ok(
    await dockerd.docker([
      'run',
      '--rm',
      '--network',
      'host',
      '--entrypoint',
      '/bin/busybox',
      tag,
      'sh',
      '-c',
      tlsScript,
    ]),
  )
    .trim()
    .split('\n');
  assert.equal(got[0], 'bundle rc=0 hello over TLS /bundle', got.join('\n'));
  assert.equal(got[1], 'default rc=0 hello over TLS /default', got.join('\n'));
  assert.match(
    got[2],
    /^stranger rc=1 .*(unable to get local issuer certificate|certificate verify failed)/,
    got.join('\n'),
  );
  // The image's default command: busybox's ls of the root, as the app user.
  assert.match(ok(await dockerd.docker(['run', '--rm', '--network', 'none', tag])), /^usr$/m);
});

test('packages.debian refuses a tampered .deb, a tampered Packages index and a forged InRelease; nothing is stored', {
  timeout: 600_000,
}, async (t) => {
  if (!requirePeer(t, ...DEBIAN_PEERS)) return;
  const repo = await localRepo(t);
  const stored = async (dir: string) => readdir(join(dir, '.cache/debian/sha256')).catch(() => [] as string[]);
  const pool = join(repo.dir, 'pool/main');
  const busybox = (await readdir(pool)).find((f) => f.startsWith('busybox_') && f.endsWith('_amd64.deb'))!;
  const original = await readFile(join(pool, busybox));

  // 1. The .deb on the mirror changed; the index (signed) still names the original.
  const evil = Buffer.from(original);
  evil[evil.length - 100] ^= 0xff;
  const evilHex = createHash('sha256').update(evil).digest('hex');
  await writeFile(join(pool, busybox), evil);
  const d1 = await place(t, repo);
  const r1 = await build(d1);
  assert.notEqual(r1.code, 0);
  assert.match(
    r1.stderr,
    new RegExp(`${busybox.replace(/[+.]/g, '\\$&')}: checksum mismatch .*the Packages index says sha256:`),
  );
  assert.ok(!(await stored(d1)).includes(evilHex), 'the tampered .deb is not in the cache');

  // 2. The attacker also rewrites the Packages index to match — but cannot re-sign the Release.
  const bin = join(repo.dir, 'dists/stable/main/binary-amd64');
  const packages = gunzipSync(await readFile(join(bin, 'Packages.gz')))
    .toString()
    .replace(createHash('sha256').update(original).digest('hex'), evilHex);
  await writeFile(join(bin, 'Packages.gz'), gzipSync(packages));
  await writeFile(join(bin, 'Packages'), packages);
  const d2 = await place(t, repo);
  const r2 = await build(d2);
  assert.notEqual(r2.code, 0);
  assert.match(r2.stderr, /binary-amd64\/Packages\.gz: checksum mismatch .*the signed Release says sha256:/);
  assert.ok(!(await stored(d2)).includes(createHash('sha256').update(gzipSync(packages)).digest('hex')));

  // 3. ...and edits the signed Release text: the signature no longer verifies.
  const inRelease = join(repo.dir, 'dists/stable/InRelease');
  const text = await readFile(inRelease, 'utf8');
  await writeFile(inRelease, text.replace('Version: 12.0', 'Version: 13.0'));
  const d3 = await place(t, repo);
  const r3 = await build(d3);
  assert.notEqual(r3.code, 0);
  assert.match(r3.stderr, /InRelease: signature check failed against \S+archive-keyring\.gpg: gpgv reports BADSIG/);
  assert.deepEqual(await stored(d3), [], 'nothing downloaded past a bad signature');

  // 4. Re-signed by a key the spec does not trust: with no keyring named, the system's Debian keyring is the one.
  await repo.sign();
  const noKeyring = spec(repo).replace(', keyring: archive-keyring.gpg', '');
  assert.doesNotMatch(noKeyring, /keyring/);
  const d4 = await place(t, repo, noKeyring);
  const r4 = await build(d4);
  assert.notEqual(r4.code, 0);
  assert.match(
    r4.stderr,
    /signature check failed against \/usr\/share\/keyrings\/debian-archive-keyring\.gpg: it is signed by a key that is not in the keyring/,
  );

  // Restored and re-signed: the same spec builds.
  await writeFile(join(pool, busybox), original);
  ok(
    await run('dpkg-scanpackages', ['--arch', 'amd64', '--multiversion', 'pool'], { cwd: repo.dir }).then(async (r) => {
      await writeFile(join(bin, 'Packages'), r.stdout);
      await writeFile(join(bin, 'Packages.gz'), gzipSync(r.stdout));
      return r;
    }),
  );
  await repo.sign();
  parseBuild(await build(d1));
});
