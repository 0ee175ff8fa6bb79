// Debian's control-file data, pure: deb822 stanzas (Packages indexes, Release files, a .deb's control file),
// dpkg version ordering and dependency fields. No I/O.
// Sources: Debian Policy §5.1 (syntax of control files), §5.6.12 (Version), §7.1 (relationship syntax);
// dpkg's lib/dpkg/version.c (verrevcmp) for the ordering, including `~` sorting before everything.

/** One stanza: field names as written (case kept), values with continuation lines joined by '\n'. */
export type Stanza = Map<string, string>;

/** Splits deb822 text into stanzas. Field lookup is case-insensitive (policy §5.1): use `field()`. */
export function parseStanzas(text: string): Stanza[] {
  const out: Stanza[] = [];
  let cur: Stanza | undefined;
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (cur?.size) out.push(cur);
      cur = undefined;
      last = undefined;
      continue;
    }
    if (line.startsWith('#')) continue;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (!cur || last === undefined) throw new Error(`continuation line without a field: ${JSON.stringify(line)}`);
      cur.set(last, `${cur.get(last)}\n${line.slice(1)}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`not a "Field: value" line: ${JSON.stringify(line.slice(0, 80))}`);
    cur ??= new Map();
    last = line.slice(0, colon);
    cur.set(last, line.slice(colon + 1).trim());
  }
  if (cur?.size) out.push(cur);
  return out;
}

export function field(s: Stanza, name: string): string | undefined {
  const v = s.get(name);
  if (v !== undefined) return v;
  const lower = name.toLowerCase();
  for (const [k, val] of s) if (k.toLowerCase() === lower) return val;
  return undefined;
}

interface _Version {
  epoch: number;
  upstream: string;
  revision: string;
}

const VERSION = /^(?:(\d+):)?([0-9][A-Za-z0-9.+~:-]*?)(?:-([A-Za-z0-9.+~]+))?$/;

export function isDebVersion(v: string): boolean {
  return VERSION.test(v);
}

function _split(v: string): _Version {
  const m = VERSION.exec(v);
  if (!m) throw new Error(`"${v}" is not a Debian version`);
  return { epoch: Number(m[1] ?? 0), upstream: m[2], revision: m[3] ?? '0' };
}

/** dpkg's character order: `~` first, then the end of the part, then letters, then everything else. */
function _order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === '~') return -1;
  if (/[0-9]/.test(c)) return 0;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function _verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let diff = 0;
    while ((i < a.length && !/[0-9]/.test(a[i])) || (j < b.length && !/[0-9]/.test(b[j]))) {
      const ac = _order(a[i]);
      const bc = _order(b[j]);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === '0') i++;
    while (b[j] === '0') j++;
    while (/[0-9]/.test(a[i] ?? '') && /[0-9]/.test(b[j] ?? '')) {
      if (!diff) diff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (/[0-9]/.test(a[i] ?? '')) return 1;
    if (/[0-9]/.test(b[j] ?? '')) return -1;
    if (diff) return diff;
  }
  return 0;
}

/** <0, 0, >0 as dpkg --compare-versions orders a and b. */
export function compareVersions(a: string, b: string): number {
  const x = _split(a);
  const y = _split(b);
  if (x.epoch !== y.epoch) return x.epoch - y.epoch;
  return _verrevcmp(x.upstream, y.upstream) || _verrevcmp(x.revision, y.revision);
}

export type Relation = '<<' | '<=' | '=' | '>=' | '>>';

/** One alternative of a dependency: `libc6 (>= 2.36)`, `perl:any`. */
export interface DepAtom {
  name: string;
  relation?: Relation;
  version?: string;
  /** `:any`, `:native` or an architecture name. */
  archQualifier?: string;
}

/** `a (>= 1) | b, c` → [[a, b], [c]]. Build-profile `<…>` and architecture `[…]` restrictions are not in binary indexes. */
export function parseDepends(text: string | undefined): DepAtom[][] {
  if (!text?.trim()) return [];
  return text.split(',').map((group) =>
    group.split('|').map((alt) => {
      const m =
        /^\s*([a-z0-9][a-z0-9+.-]*)(?::([a-z0-9-]+))?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^)\s]+)\s*\))?\s*$/.exec(
          alt.replace(/\n/g, ' '),
        );
      if (!m) throw new Error(`cannot parse dependency "${alt.trim()}"`);
      // `<` and `>` are obsolete spellings of `<=` and `>=` (policy §7.1).
      const rel = m[3] === '<' ? '<=' : m[3] === '>' ? '>=' : (m[3] as Relation | undefined);
      return { name: m[1], archQualifier: m[2], relation: rel, version: m[4] };
    }),
  );
}

export function satisfies(version: string, relation: Relation | undefined, wanted: string | undefined): boolean {
  if (!relation || wanted === undefined) return true;
  const c = compareVersions(version, wanted);
  switch (relation) {
    case '<<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
      return c >= 0;
    case '>>':
      return c > 0;
  }
}

export function formatAtom(a: DepAtom): string {
  return `${a.name}${a.archQualifier ? `:${a.archQualifier}` : ''}${a.relation ? ` (${a.relation} ${a.version})` : ''}`;
}
