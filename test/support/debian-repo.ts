// A local Debian archive for the builder's tests (issue 23): real .debs fetched once with `apt-get download` (a
// private apt state dir, amd64 + arm64, cached under $BERTH_TEST_CACHE or /tmp/berth-test-cache), indexed by
// dpkg-scanpackages, a Release written and signed here with a throwaway gpg key, served on 127.0.0.1 by this
// process. Builds under test never reach a remote mirror.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, join, normalize } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ok, run } from './peers.js';

/** The closure of libc6, busybox, ca-certificates, tzdata and openssl in bookworm, less debconf and perl-base. */
export const ARCH_PACKAGES = ['libc6', 'libgcc-s1', 'gcc-12-base', 'busybox', 'openssl', 'libssl3'];
export const ALL_PACKAGES = ['ca-certificates', 'tzdata'];
export const ARCHS = ['amd64', 'arm64'];
export const DEBIAN_PEERS = ['apt-get', 'dpkg-scanpackages', 'gpg', 'gpgv', 'xz'];

const CACHE = join(process.env.BERTH_TEST_CACHE || '/tmp/berth-test-cache', 'debian');
const MIRROR = 'http://deb.debian.org/debian';

/**
 * The fixture .debs (downloaded once into CACHE/`name`; later runs use the cache): `arch` packages for each of
 * ARCHS, `all` ones once. Defaults: the tests' closure.
 */
export async function fixtureDebs(
  name = 'debs',
  arch: string[] = ARCH_PACKAGES,
  all: string[] = ALL_PACKAGES,
): Promise<string> {
  const out = join(CACHE, name);
  const want = [...ARCHS.flatMap((a) => arch.map((p) => `${p}:${a}`)), ...all];
  const have = await readdir(out).catch(() => [] as string[]);
  if (have.length >= want.length) return out;
  const apt = join(CACHE, 'apt');
  await mkdir(join(apt, 'state/lists/partial'), { recursive: true });
  await mkdir(join(apt, 'cache/archives/partial'), { recursive: true });
  await writeFile(join(apt, 'status'), '');
  await writeFile(
    join(apt, 'sources.list'),
    `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${MIRROR} bookworm main\n`,
  );
  const opts = [
    `Dir::State=${apt}/state`,
    `Dir::State::status=${apt}/status`,
    `Dir::Cache=${apt}/cache`,
    `Dir::Etc::SourceList=${apt}/sources.list`,
    `Dir::Etc::SourceParts=${apt}/none`,
    'APT::Architecture=amd64',
    'APT::Architectures::=amd64',
    'APT::Architectures::=arm64',
    'Acquire::Languages=none',
    'Debug::NoLocking=1',
  ].flatMap((o) => ['-o', o]);
  ok(await run('apt-get', [...opts, '-qq', 'update'], { timeoutMs: 300_000 }));
  const tmp = `${out}.tmp-${process.pid}`;
  await mkdir(tmp, { recursive: true });
  ok(await run('apt-get', [...opts, '-qq', 'download', ...want], { cwd: tmp, timeoutMs: 300_000 }));
  await rm(out, { recursive: true, force: true });
  await rename(tmp, out);
  return out;
}

export interface LocalRepo {
  /** Archive root served over HTTP. */
  url: string;
  dir: string;
  /** The binary keyring (public key) that signed InRelease. */
  keyring: string;
  /** Paths requested so far. */
  requests: string[];
  /** Re-signs dists/stable/Release after a test changed an index (or not, to test the refusal). */
  sign(): Promise<void>;
  /** Adds .debs (e.g. made by the test with dpkg-deb) to the pool, re-indexes every architecture and re-signs. */
  add(debs: string[]): Promise<void>;
  stop(): Promise<void>;
}

/** A signed archive `stable/main` for amd64 and arm64 with the fixture .debs, served on a free loopback port. */
export async function localRepo(t: { after(fn: () => Promise<void>): void }): Promise<LocalRepo> {
  const debs = await fixtureDebs();
  const dir = await mkdtemp(join(tmpdir(), 'berth-debrepo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pool = join(dir, 'pool/main');
  await mkdir(pool, { recursive: true });
  for (const f of await readdir(debs)) await copyFile(join(debs, f), join(pool, f.replace(/%3a/gi, '_')));
  const gnupg = join(dir, '.gnupg');
  await mkdir(gnupg, { mode: 0o700 });
  const gpg = (args: string[]) =>
    run('gpg', ['--homedir', gnupg, '--batch', '--pinentry-mode', 'loopback', '--passphrase', '', ...args]);
  ok(await gpg(['--quick-gen-key', 'berth test archive <test@berth.invalid>', 'ed25519', 'sign', 'never']));
  const keyring = join(dir, 'archive-keyring.gpg');
  await writeFile(keyring, (await runBuffer('gpg', ['--homedir', gnupg, '--export'])) as Buffer);
  const dists = join(dir, 'dists/stable');
  const index = async () => {
    for (const arch of ARCHS) {
      const bin = join(dists, `main/binary-${arch}`);
      await mkdir(bin, { recursive: true });
      const packages = ok(await run('dpkg-scanpackages', ['--arch', arch, '--multiversion', 'pool'], { cwd: dir }));
      await writeFile(join(bin, 'Packages'), packages);
      await writeFile(join(bin, 'Packages.gz'), gzipSync(packages));
    }
  };
  const sign = async () => {
    await writeFile(join(dists, 'Release'), await releaseText(dists));
    await rm(join(dists, 'InRelease'), { force: true });
    ok(await gpg(['--clearsign', '-o', join(dists, 'InRelease'), join(dists, 'Release')]));
  };
  const add = async (files: string[]) => {
    for (const f of files) await copyFile(f, join(pool, basename(f).replace(/%3a/gi, '_')));
    await index();
    await sign();
  };
  await index();
  await sign();
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0]));
    requests.push(path);
    if (path.includes('..') || path.includes('/.gnupg')) {
      res.writeHead(403).end();
      return;
    }
    const file = join(dir, path);
    stat(file).then(
      (s) => {
        if (!s.isFile()) return res.writeHead(404).end();
        res.writeHead(200, { 'content-length': s.size });
        createReadStream(file).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const stop = () => new Promise<void>((r) => server.close(() => r()));
  t.after(stop);
  return { url: `http://127.0.0.1:${port}`, dir, keyring, requests, sign, add, stop };
}

/** A Release file for the indexes under `dists` (what apt-ftparchive release would write, minus MD5). */
async function releaseText(dists: string): Promise<string> {
  const lines: string[] = [];
  for (const arch of ARCHS) {
    for (const name of ['Packages', 'Packages.gz']) {
      const rel = `main/binary-${arch}/${name}`;
      const data = await readFile(join(dists, rel));
      lines.push(` ${createHash('sha256').update(data).digest('hex')} ${data.length} ${rel}`);
    }
  }
  return [
    'Origin: berth-test',
    'Label: berth-test',
    'Suite: stable',
    'Codename: bookworm',
    'Version: 12.0',
    'Date: Sat, 01 Jan 2022 00:00:00 UTC',
    `Architectures: ${ARCHS.join(' ')}`,
    'Components: main',
    'No-Support-for-Architecture-all: Packages',
    'SHA256:',
    ...lines,
    '',
  ].join('\n');
}

async function runBuffer(cmd: string, args: string[]): Promise<Buffer> {
  const { spawn } = await import('node:child_process');
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const parts: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => parts.push(c));
    child.on('error', fail);
    child.on('close', (code) => (code === 0 ? done(Buffer.concat(parts)) : fail(new Error(`${cmd} exited ${code}`))));
  });
}
