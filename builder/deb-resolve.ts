// Which Debian packages an include list means, pure: the closure of Pre-Depends and Depends over the candidates
// of the Packages indexes (one architecture plus `all`), deterministic so the same indexes give the same set.
//
// Rules (apt's defaults where they matter for a base image, documented in the README):
// - A name's candidate is its highest version across all sources (every source has the same priority).
// - A dependency group `a | b (>= 2)` is satisfied by a package already chosen when one is (by name or by Provides,
//   with the version rule); else by its first alternative that has a satisfying candidate: a real package before
//   a virtual one; among providers of a virtual package, the one chosen already, else the lowest name.
// - `exclude` names count as satisfied and are never installed (e.g. debconf, which only maintainer scripts use).
// - Recommends, Suggests, Conflicts and Breaks are not followed (Essential packages are not added implicitly:
//   list what the image needs). Architecture qualifiers (`:any`, `:native`) resolve in the one architecture.
import { compareVersions, type DepAtom, formatAtom, parseDepends, satisfies } from './deb-control.js';

/** One binary package of an index (only the fields resolution and download need). */
export interface DebCandidate {
  name: string;
  version: string;
  architecture: string;
  /** Path from the archive root (`pool/main/…`). */
  filename: string;
  size: number;
  sha256: string;
  depends?: string;
  preDepends?: string;
  provides?: string;
  /** The archive it comes from (base URL) and its Release's description, for the lock and the SBOM. */
  source: { url: string; distro?: string; index?: number };
}

export class ResolveError extends Error {}

export interface Universe {
  byName: Map<string, DebCandidate[]>;
  providers: Map<string, { pkg: DebCandidate; version?: string }[]>;
}

/** Candidates by name (highest version first) and by what they provide. */
export function universe(candidates: DebCandidate[]): Universe {
  const byName = new Map<string, DebCandidate[]>();
  for (const c of candidates) {
    const list = byName.get(c.name) ?? [];
    list.push(c);
    byName.set(c.name, list);
  }
  for (const list of byName.values()) list.sort((a, b) => compareVersions(b.version, a.version));
  const providers = new Map<string, { pkg: DebCandidate; version?: string }[]>();
  for (const [, list] of byName) {
    const best = list[0];
    for (const group of parseDepends(best.provides)) {
      for (const p of group) {
        const l = providers.get(p.name) ?? [];
        l.push({ pkg: best, version: p.relation === '=' ? p.version : undefined });
        providers.set(p.name, l);
      }
    }
  }
  for (const l of providers.values())
    l.sort((a, b) => (a.pkg.name < b.pkg.name ? -1 : a.pkg.name > b.pkg.name ? 1 : 0));
  return { byName, providers };
}

/** The install set for `include`, sorted by name. Throws ResolveError naming the chain that failed. */
export function resolve(u: Universe, include: string[], exclude: string[] = []): DebCandidate[] {
  const chosen = new Map<string, DebCandidate>();
  const excluded = new Set(exclude);
  const why = new Map<string, string>();
  const queue: DebCandidate[] = [];
  const choose = (c: DebCandidate, reason: string) => {
    if (chosen.has(c.name)) return;
    chosen.set(c.name, c);
    why.set(c.name, reason);
    queue.push(c);
  };
  for (const name of include) {
    if (excluded.has(name)) throw new ResolveError(`"${name}" is both in include and in exclude`);
    const best = u.byName.get(name)?.[0];
    if (!best) {
      const via = u.providers.get(name);
      if (via?.length)
        throw new ResolveError(
          `"${name}" is a virtual package; include one of its providers: ${via.map((p) => p.pkg.name).join(', ')}`,
        );
      throw new ResolveError(`no package "${name}" in the sources (for this architecture)`);
    }
    choose(best, 'included');
  }
  while (queue.length) {
    const pkg = queue.shift()!;
    for (const group of [...parseDepends(pkg.preDepends), ...parseDepends(pkg.depends)]) {
      if (group.some((a) => excluded.has(a.name) || _satisfiedBy(chosen, a, u))) continue;
      const pick = _pick(u, chosen, group);
      if (!pick) {
        throw new ResolveError(
          `${pkg.name} ${pkg.version} depends on "${group.map(formatAtom).join(' | ')}", which no package in the sources satisfies${_chain(why, pkg.name)}${_have(u, group)}`,
        );
      }
      choose(pick, `${pkg.name}`);
    }
  }
  return [...chosen.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function _satisfiedBy(chosen: Map<string, DebCandidate>, a: DepAtom, u: Universe): boolean {
  const real = chosen.get(a.name);
  if (real && satisfies(real.version, a.relation, a.version)) return true;
  return (u.providers.get(a.name) ?? []).some((p) => chosen.get(p.pkg.name) === p.pkg && _providesOk(p.version, a));
}

function _providesOk(provided: string | undefined, a: DepAtom): boolean {
  // An unversioned Provides satisfies only unversioned dependencies (policy §7.5).
  if (!a.relation) return true;
  return provided !== undefined && satisfies(provided, a.relation, a.version);
}

function _pick(u: Universe, chosen: Map<string, DebCandidate>, group: DepAtom[]): DebCandidate | undefined {
  for (const a of group) {
    const real = (u.byName.get(a.name) ?? []).find((c) => satisfies(c.version, a.relation, a.version));
    if (real) return real;
    const providers = (u.providers.get(a.name) ?? []).filter((p) => _providesOk(p.version, a));
    const hit = providers.find((p) => chosen.get(p.pkg.name) === p.pkg) ?? providers[0];
    if (hit) return hit.pkg;
  }
  return undefined;
}

function _chain(why: Map<string, string>, name: string): string {
  const chain: string[] = [];
  for (let n: string | undefined = name; n && n !== 'included' && chain.length < 20; n = why.get(n)) chain.push(n);
  return chain.length > 1 ? ` (pulled in by ${chain.slice(1).join(' ← ')})` : '';
}

function _have(u: Universe, group: DepAtom[]): string {
  const seen = group
    .map((a) => u.byName.get(a.name)?.[0])
    .filter((c): c is DebCandidate => !!c)
    .map((c) => `${c.name} ${c.version}`);
  return seen.length ? `; the sources have ${seen.join(', ')}` : '';
}
