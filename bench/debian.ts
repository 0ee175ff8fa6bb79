// Debian base bench (issue 23): berth builds the 8-package base of test/builder-debian.test.ts (libc6, busybox,
// ca-certificates, tzdata and their closure less debconf/perl-base) for amd64 + arm64 from the local signed archive
// of test/debian-repo.ts (loopback only): cold (resolve + verify + download + unpack), cold with berth.lock (no
// index read), and warm (everything cached). The reference is the same by hand with Debian's tools, per
// architecture: `apt-get update` + `apt-get download` (a private apt state against the same archive, same key),
// `dpkg-deb -x` each package and `tar | gzip` the tree — which gives a rootfs tarball with no dpkg status, no CA
// bundle, no accounts, no lock and no reproducibility. debootstrap --variant=minbase needs a full archive (it
// installs ~90 packages with their maintainer scripts, as root), so it is not run here.
// Run alone: `node --import tsx bench/debian.ts`.
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ARCHS, DEBIAN_PEERS, localRepo, type LocalRepo } from '../test/support/debian-repo.js';
import { findExecutable, run, type RunResult } from '../test/support/peers.js';
import { median, type Bench, type Row } from './types.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

const _spec = (repo: LocalRepo) => `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
packages:
  debian:
    sources: [{ url: "${repo.url}", suites: [stable], keyring: archive-keyring.gpg }]
    include: [libc6, busybox, ca-certificates, tzdata]
    exclude: [debconf, perl-base]
`;

async function _time(steps: () => Promise<RunResult[]>): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (const r of await steps()) if (r.code !== 0) throw new Error(`${r.command}: ${r.stderr.slice(0, 400)}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function _byHand(repo: LocalRepo, dir: string): Promise<RunResult[]> {
  const out: RunResult[] = [];
  for (const arch of ARCHS) {
    const apt = join(dir, `apt-${arch}`);
    await mkdir(join(apt, 'state/lists/partial'), { recursive: true });
    await mkdir(join(apt, 'cache/archives/partial'), { recursive: true });
    await writeFile(join(apt, 'status'), '');
    await writeFile(join(apt, 'sources.list'), `deb [signed-by=${repo.keyring}] ${repo.url} stable main\n`);
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
    const names = ['libc6', 'libgcc-s1', 'gcc-12-base', 'busybox', 'openssl', 'libssl3', 'ca-certificates', 'tzdata'];
    out.push(await run('apt-get', [...opts, '-qq', 'download', ...names], { cwd: debs, timeoutMs: 300_000 }));
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
    const dir = await mkdtemp(join(tmpdir(), 'berth-bench-deb-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'berth.yaml'), _spec(repo));
    await copyFile(repo.keyring, join(dir, 'archive-keyring.gpg'));
    const build = (cache: string, extra: string[] = []) =>
      run(
        process.execPath,
        [BERTH, 'build', '-f', join(dir, 'berth.yaml'), '--cache', cache, '--oci-layout', join(dir, 'out'), ...extra],
        {
          timeoutMs: 600_000,
        },
      );
    const cold: number[] = [];
    const locked: number[] = [];
    const warm: number[] = [];
    const byHand: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await rm(join(dir, 'berth.lock'), { force: true });
      cold.push(await _time(async () => [await build(join(dir, `c${i}`), ['--lock'])]));
      locked.push(await _time(async () => [await build(join(dir, `l${i}`))]));
      warm.push(await _time(async () => [await build(join(dir, `l${i}`))]));
      if (findExecutable('dpkg-deb')) {
        const hand = join(dir, `hand${i}`);
        byHand.push(await _time(() => _byHand(repo, hand)));
        await rm(hand, { recursive: true, force: true });
      }
    }
    const peerName = 'apt-get download + dpkg-deb -x + tar|gzip';
    const debs = (await readdir(join(repo.dir, 'pool/main'))).length;
    return [
      {
        name: `Debian base, 8 packages × amd64+arm64 (${debs} .debs), cold: resolve + verify + download + unpack`,
        unit: 's',
        berth: median(cold),
        peer: byHand.length ? median(byHand) : undefined,
        peerName,
        better: 'lower',
        note: 'by hand: no dpkg status, CA bundle, accounts, lock or reproducibility',
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
