// Durations and sizes as people write them, one parser for the config file, BERTH_* variables and CLI flags.
// Durations follow Go's time.ParseDuration (https://pkg.go.dev/time#ParseDuration: `90s`, `1h30m`, `1.5h`,
// `500ms`), plus `d` for days (`30d`) since retention and token lifetimes are counted in days. Sizes are bytes, or
// a number with a decimal (kB, MB, GB, TB: powers of 1000) or binary (KiB, MiB, GiB, TiB: powers of 1024) unit,
// as IEC 80000-13 defines them; `B` is optional. Pure: no I/O, no project imports.

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  pb: 1e15,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  pib: 2 ** 50,
};

/** What a duration looks like, for error messages and help texts. */
export const DURATION_FORM = 'a duration such as 90s, 10m, 1h30m, 24h or 30d (units ns, us, ms, s, m, h, d)';
/** What a size looks like, for error messages and help texts. */
export const SIZE_FORM = 'a size such as 512MB, 10GiB or 1048576 (bytes; units kB, MB, GB, TB or KiB, MiB, GiB, TiB)';

/** JSON Schema `pattern` of a duration string (the config schema uses it, so ajv and parseDuration agree). */
export const DURATION_PATTERN = '^(0|([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h|d))+)$';
/** JSON Schema `pattern` of a size written as a string; a plain integer in YAML is a byte count. */
export const SIZE_PATTERN = '^[0-9]+(\\.[0-9]+)? ?([kKMGTP]i?B|B)?$';

export class UnitError extends Error {}

/** Milliseconds in a Go-style duration: `90s` → 90000, `1h30m` → 5400000, `0` → 0. Throws UnitError naming the form. */
export function parseDuration(value: string): number {
  const text = String(value).trim();
  if (text === '0') return 0;
  if (!new RegExp(DURATION_PATTERN).test(text))
    throw new UnitError(`invalid duration "${value}": use ${DURATION_FORM}`);
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h|d)/g))
    ms += Number(n) * DURATION_UNITS[unit];
  return Math.round(ms);
}

/** Bytes in a size: `512MB` → 512000000, `10GiB` → 10737418240, `4096` or 4096 → 4096. Throws UnitError naming the form. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value;
    throw new UnitError(`invalid size ${value}: use ${SIZE_FORM}`);
  }
  const m = new RegExp(SIZE_PATTERN).exec(String(value).trim());
  if (!m) throw new UnitError(`invalid size "${value}": use ${SIZE_FORM}`);
  const number = Number.parseFloat(value);
  const unit = (m[2] ?? 'B').toLowerCase();
  const exact = number * SIZE_UNITS[unit];
  const bytes = Math.round(exact);
  if (Math.abs(exact - bytes) > 1e-6) throw new UnitError(`invalid size "${value}": not a whole number of bytes`);
  if (!Number.isSafeInteger(bytes)) throw new UnitError(`invalid size "${value}": too large`);
  return bytes;
}

/** The exact Go-style form of a whole number of milliseconds: 5400000 → `1h30m`, 1500 → `1s500ms`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = ms;
  let out = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms'] as const) {
    const size = DURATION_UNITS[unit];
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}

/** A byte count the way people read it: 5242880 → `5MiB`, 1500 → `1500B` (exact: binary units only when whole). */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const)
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  return `${bytes}B`;
}

/** Bytes in binary units with one decimal, for people watching a transfer: `1.5 MiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** Elapsed time, short and rounded, for progress lines: `850ms`, `12.3s`, `4m05s` (formatDuration is exact). */
export function formatElapsed(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}
