// Debian base bench (issue 23): berth builds a Debian base of 9 packages — libc6, busybox, ca-certificates and
// tzdata with their whole Pre-Depends/Depends closure (libgcc-s1, gcc-12-base, openssl, libssl3, debconf) — for
// amd64 + arm64 from a local signed archive on loopback (test/support/debian-repo.ts plus debconf, fetched once with
// `apt-get download`): cold (resolve + verify + download + unpack), cold with berth.lock (no index read), and warm
// (everything cached). The peer is mmdebstrap --variant=extract (debootstrap's successor in Debian: apt resolves and
// downloads, the packages are unpacked and not configured — the closest tool to what berth does; debootstrap
// --variant=minbase would install ~90 packages and run their maintainer scripts as root), per architecture, the same
// packages from the same archive into a .tar.gz. Without mmdebstrap the peer is the same by hand: `apt-get download`
// + `dpkg-deb -x` + `tar | gzip`. Neither leaves dpkg status entries, a CA bundle or accounts (no maintainer script
// runs), nor a lock.
// Run alone: `node --import tsx bench/debian.ts`.
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  ALL_PACKAGES,
  ARCH_PACKAGES,
  ARCHS,
  DEBIAN_PEERS,
  fixtureDebs,
  localRepo,
  type LocalRepo,
} from '../test/support/debian-repo.js';
import { findExecutable, run, type RunResult } from '../test/support/peers.js';
import { median, type Bench, type Row } from './types.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

/** What ca-certificates and tzdata depend on besides the tests' closure (debconf; perl-base is Essential, unnamed). */
const EXTRA_ARCH: string[] = [];
const EXTRA_ALL = ['debconf'];
const CLOSURE = [...ARCH_PACKAGES, ...ALL_PACKAGES, ...EXTRA_ARCH, ...EXTRA_ALL].sort();

const _spec = (repo: LocalRepo) => `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
packages:
  debian:
    sources: [{ url: "${repo.url}", suites: [stable], keyring: archive-keyring.gpg }]
    include: [libc6, busybox, ca-certificates, tzdata]
`;

async function _time(steps: () => Promise<RunResult[]>): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (const r of await steps()) if (r.code !== 0) throw new Error(`${r.command}: ${r.stderr.slice(0, 400)}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** mmdebstrap per architecture: apt resolves the closure from the archive, extract unpacks it, a .tar.gz. */
async function _mmdebstrap(repo: LocalRepo, keyring: string, dir: string): Promise<RunResult[]> {
  const out: RunResult[] = [];
  await mkdir(dir, { recursive: true });
  for (const arch of ARCHS)
    out.push(
      await run(
        'mmdebstrap',
        [
          '--quiet',
          '--variant=extract',
          `--architectures=${arch}`,
          `--include=${CLOSURE.join(',')}`,
          '--aptopt=Acquire::Languages "none"',
          'bookworm',
          join(dir, `rootfs-${arch}.tar.gz`),
          `deb [signed-by=${keyring}] ${repo.url} stable main`,
        ],
        { timeoutMs: 600_000 },
      ),
    );
  return out;
}

async function _byHand(repo: LocalRepo, keyring: string, dir: string): Promise<RunResult[]> {
  const out: RunResult[] = [];
  for (const arch of ARCHS) {
    const apt = join(dir, `apt-${arch}`);
    await mkdir(join(apt, 'state/lists/partial'), { recursive: true });
    await mkdir(join(apt, 'cache/archives/partial'), { recursive: true });
    await writeFile(join(apt, 'status'), '');
    await writeFile(join(apt, 'sources.list'), `deb [signed-by=${keyring}] ${repo.url} stable main\n`);
    const opts = [
      `Dir::State=${apt}/state`,
      `Dir::State::status=${apt}/status`,
      `Dir::Cache=${apt}/cache`,
      `Dir::Etc::SourceList=${apt}/sources.list`,
      `Dir::Etc::SourceParts=${apt}/none`,
      `APT::Architecture=${arch}`,
      'Acquire::Languages=none',
      'Debug::NoLocking=1',
    ].flatMap((o) => ['-o', o]);
    out.push(await run('apt-get', [...opts, '-qq', 'update'], { timeoutMs: 300_000 }));
    const debs = join(dir, `debs-${arch}`);
    await mkdir(debs, { recursive: true });
    out.push(await run('apt-get', [...opts, '-qq', 'download', ...CLOSURE], { cwd: debs, timeoutMs: 300_000 }));
    const root = join(dir, `rootfs-${arch}`);
    await mkdir(root, { recursive: true });
    for (const f of await readdir(debs)) out.push(await run('dpkg-deb', ['-x', join(debs, f), root]));
    out.push(await run('sh', ['-c', `tar -C "${root}" -cf - . | gzip -6 > "${root}.tar.gz"`]));
  }
  return out;
}

export async function benchDebian(rounds = 3): Promise<Row[]> {
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const repo = await localRepo({ after: (fn) => cleanups.push(fn) });
    const extra = await fixtureDebs('bench-debs', EXTRA_ARCH, EXTRA_ALL);
    await repo.add((await readdir(extra)).map((f) => join(extra, f)));
    const dir = await mkdtemp(join(tmpdir(), 'berth-bench-deb-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    // apt reads signed-by keys as its unprivileged _apt user: the key must be world-readable.
    await chmod(dir, 0o755);
    const keyring = join(dir, 'archive-keyring.gpg');
    await copyFile(repo.keyring, keyring);
    await chmod(keyring, 0o644);
    await writeFile(join(dir, 'berth.yaml'), _spec(repo));
    const build = (cache: string, extraArgs: string[] = []) =>
      run(
        process.execPath,
        [
          BERTH,
          'build',
          '-f',
          join(dir, 'berth.yaml'),
          '--cache',
          cache,
          '--oci-layout',
          join(dir, 'out'),
          ...extraArgs,
        ],
        { timeoutMs: 600_000 },
      );
    const mmdebstrap = findExecutable('mmdebstrap');
    const peerName = mmdebstrap ? 'mmdebstrap --variant=extract' : 'apt-get download + dpkg-deb -x + tar|gzip';
    const cold: number[] = [];
    const locked: number[] = [];
    const warm: number[] = [];
    const peer: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await rm(join(dir, 'berth.lock'), { force: true });
      cold.push(await _time(async () => [await build(join(dir, `c${i}`), ['--lock'])]));
      if (i === 0) {
        // Both sides build the same package set.
        const lock = JSON.parse(await readFile(join(dir, 'berth.lock'), 'utf8'));
        for (const arch of ARCHS) {
          const names = lock.debian.architectures[arch].map((p: { name: string }) => p.name).sort();
          if (names.join(' ') !== CLOSURE.join(' '))
            throw new Error(`berth resolved ${names.join(' ')} for ${arch}, not ${CLOSURE.join(' ')}`);
        }
      }
      locked.push(await _time(async () => [await build(join(dir, `l${i}`))]));
      warm.push(await _time(async () => [await build(join(dir, `l${i}`))]));
      const other = join(dir, `peer${i}`);
      peer.push(await _time(() => (mmdebstrap ? _mmdebstrap : _byHand)(repo, keyring, other)));
      await rm(other, { recursive: true, force: true });
    }
    const debs = (await readdir(join(repo.dir, 'pool/main'))).filter((f) => f.endsWith('.deb')).length;
    return [
      {
        name: `Debian base, ${CLOSURE.length} packages × amd64+arm64 (${debs} .debs), cold: resolve + verify + download + unpack`,
        unit: 's',
        berth: median(cold),
        peer: median(peer),
        peerName,
        better: 'lower',
        note: `${peerName}: no dpkg status, CA bundle or accounts (no maintainer script runs), no lock`,
      },
      {
        name: 'Debian base, cold cache, berth.lock present (no index read)',
        unit: 's',
        berth: median(locked),
        better: 'lower',
      },
      {
        name: 'Debian base, warm rebuild (packages and layer cached)',
        unit: 's',
        berth: median(warm),
        better: 'lower',
      },
    ];
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
}

export const debianBench: Bench = {
  name: 'debian',
  async run(ctx) {
    if (DEBIAN_PEERS.some((p) => !findExecutable(p))) throw new Error(`needs ${DEBIAN_PEERS.join(', ')}`);
    return benchDebian(ctx.rounds);
  },
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(JSON.stringify(await benchDebian(), null, 2));
}
