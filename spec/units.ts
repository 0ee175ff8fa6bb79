// Durations and sizes as people write them in flags and config files. Pure: no I/O.
// Durations follow Go's time.ParseDuration (https://pkg.go.dev/time#ParseDuration: "300ms", "1.5h", "2h45m"), the
// form registry operators know from distribution's config, plus `d` for days (retention and token lifetimes are
// measured in days). Sizes accept binary (KiB, MiB, GiB, TiB; K/M/G/T alone are binary too, like docker's
// --shm-size) and decimal (KB, MB, GB, TB) units, or a bare number of bytes.

export class UnitError extends Error {}

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

/** `500ms`, `30s`, `10m`, `1h30m`, `1.5h`, `7d`, `0` → milliseconds. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (let m = part.exec(s); m; m = part.exec(s)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    end = part.lastIndex;
  }
  if (!s || end !== s.length) throw new UnitError(`invalid duration "${text}": use e.g. 500ms, 30s, 10m, 1h30m, 7d`);
  return total;
}

/** `500MiB`, `8GiB`, `8G` (binary), `1.5GB` (decimal), `1000000` (bytes) → bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)$/i.exec(text.trim());
  if (!m || (m[3] && !m[2])) throw new UnitError(`invalid size "${text}": use e.g. 500MiB, 8GiB or a number of bytes`);
  const power = ' kmgt'.indexOf(m[2].toLowerCase() || ' ');
  const decimal = m[4] !== '' && m[3] === '' && m[2] !== '';
  return Math.floor(Number(m[1]) * (decimal ? 1000 : 1024) ** power);
}

/** Bytes in binary units with one decimal: `1.5 MiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** Milliseconds as a short duration: `850ms`, `12.3s`, `4m05s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}
