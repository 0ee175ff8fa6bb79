// `packages.debian`: a base layer made of Debian packages, per platform — resolved from the signed indexes
// (deb-repo.ts, deb-resolve.ts) or taken as pinned by berth.lock, downloaded and verified, unpacked from each
// data.tar (deb-unpack.ts). No maintainer script runs; what the scripts of a base's packages would do that matters
// in an image is done here, declaratively and the same on every machine:
// - /var/lib/dpkg/status.d/<name> (the package's control file, with `Status: install ok installed`) and
//   <name>.md5sums, where distroless puts them and where Trivy, Grype and Syft look;
// - /etc/passwd and /etc/group: root, nobody/nogroup and the spec's `accounts` (base-passwd's postinst);
// - /etc/ssl/certs/ca-certificates.crt: every certificate under /usr/share/ca-certificates, in byte order of its
//   path, each ending in a newline (update-ca-certificates, run by ca-certificates' postinst);
// - /etc/localtime → /usr/share/zoneinfo/Etc/UTC and /etc/timezone (tzdata's postinst, non-interactive).
// Packages unpack in name order into one map: a path two packages ship is the later one's (dpkg would refuse
// such a pair unless one Replaces the other; real bases have none).
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import pLimit from 'p-limit';
import type { Accounts, DebianPackages } from '../spec/build-spec.js';
import { canonicalJson } from '../spec/canonical-json.js';
import { digestOf } from '../spec/digest.js';
import type { Platform } from '../spec/manifest.js';
import { formatPlatform } from '../spec/platform.js';
import type { BlobDir } from './blobs.js';
import { sortByUtf8 } from './byte-order.js';
import { field, parseStanzas } from './deb-control.js';
import { type DebRepo, HttpError } from './deb-repo.js';
import { type DebCandidate, resolve, ResolveError, universe } from './deb-resolve.js';
import { readDebCached } from './deb-unpack.js';
import { finishMembers, type LayerPlan, type Member } from './plan.js';
import { BuildOptionError, type LoadedSpec } from './spec.js';

/** One installed package as berth.lock pins it and the SBOM lists it. */
export interface LockedDeb {
  name: string;
  version: string;
  architecture: string;
  sha256: string;
  size: number;
  /** Where the .deb was downloaded from (informative in the lock: a locked build uses `source` and `filename`). */
  url: string;
  /** Index of the spec's packages.debian.sources entry it comes from. */
  source: number;
  /** Path below that source's url (`pool/main/…`): a snapshot or mirror at another URL serves the same path. */
  filename: string;
  /** purl `distro` qualifier, e.g. debian-12. */
  distro?: string;
}

/** berth.lock's `debian`: the package set per Debian architecture, valid while the spec's `inputs` hash holds. */
export interface DebianLock {
  inputs: string;
  architectures: Record<string, LockedDeb[]>;
}

export const DEFAULT_LAYER = 'debian';

/** Debian's architecture names for OCI platforms (dpkg-architecture -L). */
const DEB_ARCH: Record<string, string> = {
  amd64: 'amd64',
  arm64: 'arm64',
  '386': 'i386',
  'arm/v7': 'armhf',
  'arm/v6': 'armel',
  'arm/v5': 'armel',
  ppc64le: 'ppc64el',
  s390x: 's390x',
  riscv64: 'riscv64',
  mips64le: 'mips64el',
};

export function debArch(p: Platform): string | undefined {
  if (p.os !== 'linux') return undefined;
  return DEB_ARCH[p.variant && p.architecture === 'arm' ? `arm/${p.variant}` : p.architecture];
}

/**
 * What the lock's package set depends on: suites, components and the lists. Not the URLs (pointing a source at a
 * snapshot or a mirror keeps the pins: the same files, by SHA-256) nor the keyring (it verifies, it does not pin).
 */
export function debianInputs(d: DebianPackages): string {
  return digestOf(
    canonicalJson({
      sources: d.sources.map((s) => ({ suites: s.suites, components: s.components ?? ['main'] })),
      include: [...d.include].sort(),
      exclude: [...(d.exclude ?? [])].sort(),
    }),
  );
}

export interface DebianLayerOptions {
  repo: DebRepo;
  /** Where data.tar members' bytes are staged (the build's tar-inputs dir). */
  staging: BlobDir;
  /** The package set berth.lock pins for this architecture: no index is read then. */
  locked?: LockedDeb[];
  /** Where each .deb's unpacked member list is kept (by the .deb's SHA-256), so a rebuild does not unpack again. */
  unpacked?: string;
}

export async function debianLayer(
  loaded: LoadedSpec,
  platform: Platform,
  opts: DebianLayerOptions,
): Promise<{ plan: LayerPlan; packages: LockedDeb[] }> {
  const deb = loaded.spec.packages!.debian!;
  const arch = debArch(platform);
  if (!arch)
    throw loaded.error(
      ['platforms'],
      `${formatPlatform(platform)} has no Debian architecture; packages.debian needs linux/amd64, linux/arm64, …`,
    );
  const bad = opts.locked?.find((p) => !deb.sources[p.source]);
  if (bad)
    throw new BuildOptionError(
      'lock',
      loaded.error(
        ['packages', 'debian', 'sources'],
        `berth.lock pins ${bad.name} to source ${bad.source}, which the spec does not have; re-pin the packages`,
      ).message,
    );
  const packages = opts.locked
    ? opts.locked.map((p) => ({ ...p, url: `${deb.sources[p.source].url.replace(/\/+$/, '')}/${p.filename}` }))
    : await _resolve(loaded, deb, arch, opts.repo);
  const limit = pLimit(4);
  const files = await Promise.all(
    packages.map((p) =>
      limit(() =>
        opts.repo.download(p.url, p.sha256, p.size, 'package').catch((e) => {
          if (opts.locked && e instanceof HttpError && e.status === 404)
            throw new BuildOptionError(
              'lock',
              loaded.error(
                ['packages', 'debian', 'sources', p.source, 'url'],
                `${p.name} ${p.version} (pinned by berth.lock) is gone from ${p.url}: point the source at a snapshot of the archive, or re-pin the packages`,
              ).message,
            );
          throw e;
        }),
      ),
    ),
  );
  const byPath = new Map<string, Member>();
  const origins = new Map<string, string>();
  const unpackLimit = pLimit(2);
  const contents = await Promise.all(
    packages.map((p, i) =>
      unpackLimit(() =>
        readDebCached(files[i], p.sha256, `${p.name}_${p.version}_${p.architecture}.deb`, opts.staging, opts.unpacked),
      ),
    ),
  );
  packages.forEach((p, i) => {
    const c = contents[i];
    const [control] = parseStanzas(c.control);
    if (field(control, 'Package') !== p.name || field(control, 'Version') !== p.version)
      throw loaded.error(
        ['packages', 'debian'],
        `${p.url} holds ${field(control, 'Package')} ${field(control, 'Version')}, not ${p.name} ${p.version} as the index says`,
      );
    for (const m of c.members) {
      byPath.set(m.path, m);
      if (m.type === 'file') origins.set(m.path, `deb:${p.name}_${p.version}_${p.architecture}`);
    }
    _file(byPath, `var/lib/dpkg/status.d/${p.name}`, Buffer.from(_status(c.control)));
    if (c.md5sums) _file(byPath, `var/lib/dpkg/status.d/${p.name}.md5sums`, Buffer.from(c.md5sums));
  });
  await _caBundle(byPath);
  _tzdata(byPath);
  for (const m of accountMembers(loaded, loaded.spec.accounts)) byPath.set(m.path, m);
  const fail = (msg: string, path: string, parent: string) =>
    loaded.error(['packages', 'debian', 'include'], `${msg}: /${path} and /${parent} come from different packages`);
  return { plan: { name: deb.layer ?? DEFAULT_LAYER, members: finishMembers(byPath, fail), origins }, packages };
}

async function _resolve(loaded: LoadedSpec, deb: DebianPackages, arch: string, repo: DebRepo): Promise<LockedDeb[]> {
  const candidates: DebCandidate[] = [];
  for (const [i, source] of deb.sources.entries())
    for (const c of await repo.candidates(source, arch)) candidates.push({ ...c, source: { ...c.source, index: i } });
  try {
    return resolve(universe(candidates), deb.include, deb.exclude).map((c) => ({
      name: c.name,
      version: c.version,
      architecture: c.architecture,
      sha256: c.sha256,
      size: c.size,
      url: `${c.source.url}/${c.filename}`,
      source: c.source.index ?? 0,
      filename: c.filename,
      distro: c.source.distro,
    }));
  } catch (e) {
    if (e instanceof ResolveError) throw loaded.error(['packages', 'debian', 'include'], `${arch}: ${e.message}`);
    throw e;
  }
}

/** The control file as a dpkg status entry: `Status:` right after `Package:`, one trailing newline. */
function _status(control: string): string {
  const lines = control.replace(/\n+$/, '').split('\n');
  const at = lines.findIndex((l) => /^Package:/i.test(l));
  lines.splice(at + 1, 0, 'Status: install ok installed');
  return `${lines.join('\n')}\n`;
}

function _file(byPath: Map<string, Member>, path: string, data: Buffer, mode = 0o644): void {
  byPath.set(path, { path, type: 'file', mode, uid: 0, gid: 0, size: data.length, source: { data } });
}

async function _caBundle(byPath: Map<string, Member>): Promise<void> {
  const certs = sortByUtf8(
    [...byPath.values()].filter(
      (m) => m.type === 'file' && m.path.startsWith('usr/share/ca-certificates/') && m.path.endsWith('.crt'),
    ),
    (m) => m.path,
  );
  if (!certs.length) return;
  const parts: Buffer[] = [];
  for (const m of certs) {
    const src = m.source!;
    const data = 'data' in src ? src.data : await readFile(src.abs);
    parts.push(data, ...(data.length && data[data.length - 1] !== 0x0a ? [Buffer.from('\n')] : []));
  }
  _file(byPath, 'etc/ssl/certs/ca-certificates.crt', Buffer.concat(parts));
}

function _tzdata(byPath: Map<string, Member>): void {
  if (!byPath.has('usr/share/zoneinfo/Etc/UTC')) return;
  byPath.set('etc/localtime', {
    path: 'etc/localtime',
    type: 'symlink',
    mode: 0o777,
    uid: 0,
    gid: 0,
    size: 0,
    linkname: '/usr/share/zoneinfo/Etc/UTC',
  });
  _file(byPath, 'etc/timezone', Buffer.from('Etc/UTC\n'));
}

/** /etc/passwd, /etc/group (and each user's home) from `accounts`, with root and nobody/nogroup always present. */
export function accountMembers(loaded: LoadedSpec, accounts: Accounts | undefined): Member[] {
  const groups = [{ name: 'root', gid: 0 }, ...(accounts?.groups ?? []), { name: 'nogroup', gid: 65534 }];
  const users = [
    { name: 'root', uid: 0, gid: 0, gecos: 'root', home: '/root', shell: '/bin/sh' },
    ...(accounts?.users ?? []),
    { name: 'nobody', uid: 65534, gid: 65534, gecos: 'nobody', home: '/nonexistent', shell: '/usr/sbin/nologin' },
  ];
  // A user's name or id twice is a login that depends on file order: refuse it, naming the entry.
  const check = (
    kind: 'groups' | 'users',
    list: { name: string; id: number }[],
    fixed: { name: string; id: number }[],
  ) =>
    list.forEach((x, i) => {
      const clash = [...fixed, ...list.slice(0, i)].find((y) => y.name === x.name || y.id === x.id);
      if (clash) {
        const what = clash.name === x.name ? `name "${x.name}"` : `id ${x.id}`;
        throw loaded.error(['accounts', kind, i], `${what} is already taken (by ${clash.name}); choose another`);
      }
    });
  check(
    'groups',
    (accounts?.groups ?? []).map((g) => ({ name: g.name, id: g.gid })),
    [groups[0], groups[groups.length - 1]].map((g) => ({ name: g.name, id: g.gid })),
  );
  check(
    'users',
    (accounts?.users ?? []).map((u) => ({ name: u.name, id: u.uid })),
    [users[0], users[users.length - 1]].map((u) => ({ name: u.name, id: u.uid })),
  );
  const out: Member[] = [];
  const file = (path: string, text: string, mode = 0o644) => {
    const data = Buffer.from(text);
    out.push({ path, type: 'file', mode, uid: 0, gid: 0, size: data.length, source: { data } });
  };
  file('etc/group', groups.map((g) => `${g.name}:x:${g.gid}:\n`).join(''));
  file(
    'etc/passwd',
    users
      .map(
        (u) =>
          `${u.name}:x:${u.uid}:${u.gid}:${u.gecos ?? ''}:${u.home ?? '/nonexistent'}:${u.shell ?? '/usr/sbin/nologin'}\n`,
      )
      .join(''),
  );
  for (const u of accounts?.users ?? []) {
    if (!u.home || u.home === '/nonexistent') continue;
    const path = posix.normalize(u.home).replace(/^\/+|\/+$/g, '');
    if (path && !path.split('/').includes('..'))
      out.push({ path, type: 'directory', mode: 0o750, uid: u.uid, gid: u.gid, size: 0 });
  }
  return out;
}
