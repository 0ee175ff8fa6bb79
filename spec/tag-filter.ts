// Which tags a sync rule or a bundle takes: globs, a regular expression, a semver range and "newest N", applied in
// that order (each narrows the previous). Pure: the caller lists the tags and, for "newest by push time", supplies
// the times. Semver here is what registries tag with: `1.2.3`, `v1.2`, `1` (missing parts count as 0) and
// pre-releases `1.2.3-rc.1`; a tag that is not a version never matches a range.
import picomatch from 'picomatch';

export interface TagFilter {
  /** Globs (picomatch) a tag must match one of; default: every tag. */
  include?: string[];
  /** Globs that drop a tag even when included. */
  exclude?: string[];
  /** A regular expression (JavaScript syntax, unanchored unless it says so) a tag must match. */
  regex?: string;
  /** A semver range (`>=1.2 <2`, `^1.4`, `~2.1`, `1.x`, `1.2.3 || >=2`); non-version tags are dropped. */
  semver?: string;
  /** Keep only the newest N of what is left. */
  newest?: number;
  /**
   * How "newest" is decided: by version (default; non-version tags drop out) or by the image's `created` time (the
   * only time the Distribution API exposes; the caller supplies it).
   */
  newestBy?: 'semver' | 'created';
}

export class TagFilterError extends Error {}

interface Version {
  major: number;
  minor: number;
  patch: number;
  pre: string[];
}

const VERSION = /^v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?(?:-([0-9A-Za-z.-]+))?$/;

/** A tag read as a version, or undefined when it is not one. */
export function parseVersion(tag: string): Version | undefined {
  const m = VERSION.exec(tag);
  if (!m) return undefined;
  return { major: +m[1], minor: +(m[2] ?? 0), patch: +(m[3] ?? 0), pre: m[4] ? m[4].split('.') : [] };
}

/** semver.org §11 precedence: numbers, then a pre-release sorts before its release. */
export function compareVersions(a: Version, b: Version): number {
  for (const k of ['major', 'minor', 'patch'] as const) if (a[k] !== b[k]) return a[k] - b[k];
  if (!a.pre.length || !b.pre.length) return b.pre.length - a.pre.length;
  for (let i = 0; i < Math.max(a.pre.length, b.pre.length); i++) {
    const x = a.pre[i];
    const y = b.pre[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x);
    const ny = /^\d+$/.test(y);
    if (nx && ny && +x !== +y) return +x - +y;
    if (nx !== ny) return nx ? -1 : 1;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

interface Comparator {
  test: (v: Version) => boolean;
  /** The version it names when that is a pre-release (lets pre-releases of exactly that version match). */
  pre?: Version;
}

const PARTIAL = /^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?$/;

/** Compiles a range into a predicate; throws TagFilterError naming what it could not read. */
export function semverRange(range: string): (tag: string) => boolean {
  const alternatives = range.split('||').map((alt) => {
    const parts = alt.trim().split(/\s+/).filter(Boolean);
    if (!parts.length) return [{ test: () => true }] as Comparator[];
    return parts.map((p) => _comparator(p, range));
  });
  // As npm semver: a pre-release matches only a set that names a pre-release of the same major.minor.patch.
  const preOk = (v: Version, cs: Comparator[]) =>
    !v.pre.length ||
    cs.some((c) => c.pre && c.pre.major === v.major && c.pre.minor === v.minor && c.pre.patch === v.patch);
  return (tag) => {
    const v = parseVersion(tag);
    if (!v) return false;
    return alternatives.some((cs) => preOk(v, cs) && cs.every((c) => c.test(v)));
  };
}

function _comparator(text: string, range: string): Comparator {
  const test = _ordering(text, range);
  const v = parseVersion(text.replace(/^(>=|<=|>|<|=|\^|~)/, ''));
  return { test: test, pre: v?.pre.length ? v : undefined };
}

function _ordering(text: string, range: string): (v: Version) => boolean {
  const m = /^(>=|<=|>|<|=|\^|~)?(.*)$/.exec(text)!;
  const op = m[1] ?? '';
  const p = PARTIAL.exec(m[2]);
  if (!p) throw new TagFilterError(`semver range "${range}": cannot read "${text}" (write e.g. ">=1.2 <2", "^1.4")`);
  const wild = (s?: string) => s === undefined || /^[xX*]$/.test(s);
  const n = [p[1], p[2], p[3]].map((s) => (wild(s) ? undefined : +s!));
  const pre = p[4] ? p[4].split('.') : [];
  const at = (major: number, minor: number, patch: number, pr: string[] = []): Version => ({
    major,
    minor,
    patch,
    pre: pr,
  });
  const lo = at(n[0] ?? 0, n[1] ?? 0, n[2] ?? 0, pre);
  const cmp = (v: Version, w: Version) => compareVersions(v, w);
  // The exclusive upper bound of a partial version (`1.2` → `<1.3.0-0`), undefined for `*`.
  const upper = (): Version | undefined => {
    if (n[0] === undefined) return undefined;
    if (n[1] === undefined) return at(n[0] + 1, 0, 0, ['0']);
    if (n[2] === undefined) return at(n[0], n[1] + 1, 0, ['0']);
    return undefined;
  };
  const below = (v: Version, hi?: Version) => !hi || cmp(v, hi) < 0;
  switch (op) {
    case '':
    case '=': {
      const hi = upper();
      if (n[0] === undefined) return () => true;
      if (n[2] !== undefined) return (v) => cmp(v, lo) === 0;
      return (v) => cmp(v, lo) >= 0 && below(v, hi);
    }
    case '>=':
      return (v) => cmp(v, lo) >= 0;
    case '>': {
      const hi = upper();
      return (v) => (hi ? cmp(v, hi) >= 0 : cmp(v, lo) > 0);
    }
    case '<':
      return (v) => cmp(v, lo) < 0;
    case '<=': {
      const hi = upper();
      return (v) => (hi ? cmp(v, hi) < 0 : cmp(v, lo) <= 0);
    }
    case '~': {
      const hi = n[1] === undefined ? at(lo.major + 1, 0, 0, ['0']) : at(lo.major, lo.minor + 1, 0, ['0']);
      return (v) => cmp(v, lo) >= 0 && cmp(v, hi) < 0;
    }
    default: {
      // ^: the left-most non-zero part stays fixed.
      const hi =
        lo.major > 0 || n[1] === undefined
          ? at(lo.major + 1, 0, 0, ['0'])
          : lo.minor > 0 || n[2] === undefined
            ? at(0, lo.minor + 1, 0, ['0'])
            : at(0, 0, lo.patch + 1, ['0']);
      return (v) => cmp(v, lo) >= 0 && cmp(v, hi) < 0;
    }
  }
}

/** Checks a filter once (config load), so a bad regex or range is reported before any run. */
export function checkTagFilter(f: TagFilter): void {
  if (f.regex !== undefined) {
    try {
      new RegExp(f.regex);
    } catch (e) {
      throw new TagFilterError(`tag regex "${f.regex}": ${(e as Error).message}`);
    }
  }
  if (f.semver !== undefined) semverRange(f.semver);
  if (f.newest !== undefined && (!Number.isInteger(f.newest) || f.newest < 1))
    throw new TagFilterError(`newest: ${f.newest} is not a positive whole number`);
  if (f.newestBy === 'created' && f.newest === undefined) throw new TagFilterError('newestBy: created needs newest: N');
}

/**
 * The tags `f` keeps, in the order given (for "newest", newest first). `created` gives each tag's image creation
 * time (ms) when `newestBy: created` (tags without one count as oldest).
 */
export function filterTags(tags: string[], f: TagFilter, created?: Map<string, number>): string[] {
  let out = tags;
  if (f.include?.length) {
    const inc = picomatch(f.include, { dot: true });
    out = out.filter((t) => inc(t));
  }
  if (f.exclude?.length) {
    const exc = picomatch(f.exclude, { dot: true });
    out = out.filter((t) => !exc(t));
  }
  if (f.regex !== undefined) {
    const re = new RegExp(f.regex);
    out = out.filter((t) => re.test(t));
  }
  if (f.semver !== undefined) {
    const inRange = semverRange(f.semver);
    out = out.filter(inRange);
  }
  if (f.newest !== undefined) {
    if ((f.newestBy ?? 'semver') === 'created') {
      const time = (t: string) => created?.get(t) ?? Number.NEGATIVE_INFINITY;
      out = [...out].sort((a, b) => time(b) - time(a) || (a < b ? -1 : 1));
    } else {
      out = out
        .map((t) => ({ t, v: parseVersion(t) }))
        .filter((x): x is { t: string; v: Version } => x.v !== undefined)
        .sort((a, b) => compareVersions(b.v, a.v) || (a.t < b.t ? -1 : 1))
        .map((x) => x.t);
    }
    out = out.slice(0, f.newest);
  }
  return out;
}

/** Whether `f` needs creation times (the caller then fetches them). */
export function needsCreated(f: TagFilter): boolean {
  return f.newest !== undefined && f.newestBy === 'created';
}
