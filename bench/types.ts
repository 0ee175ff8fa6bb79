// The plug-in interface of `npm run bench`: each bench is a module exporting a `Bench`, listed in bench/index.ts.
// A bench returns rows; the runner prints them in one table and writes them all to bench/results.json.

export interface BenchContext {
  /** `--quick`: smaller transfers (256 MiB instead of 1 GiB) and shorter load runs, for a fast look. */
  quick: boolean;
  /** How many times each timed transfer is repeated (the median is reported). */
  rounds: number;
  /** Progress output (stderr), so the final table on stdout stays clean. */
  log(msg: string): void;
}

export interface Row {
  /** What is measured, e.g. "push 1 GiB monolithic". */
  name: string;
  unit: string;
  /** berth's figure (NaN when it could not be measured). */
  berth: number;
  /** The same figure for the reference tool, when there is one. */
  peer?: number;
  /** Who `peer` is, e.g. "distribution 2.8.2". */
  peerName?: string;
  /** Which way is better; sets the ratio's direction so that ratio > 1 always means berth is better. */
  better?: 'higher' | 'lower';
  /** The goal, as text ("≥ 2×", "< 150 MB"); checked by `met` when given. */
  target?: string;
  met?: boolean;
  note?: string;
}

export interface Bench {
  name: string;
  run(ctx: BenchContext): Promise<Row[]>;
}

/** ratio > 1 means berth is better, whichever direction `better` says. */
export function ratio(row: Row): number | undefined {
  if (
    row.peer === undefined ||
    !Number.isFinite(row.peer) ||
    !Number.isFinite(row.berth) ||
    row.berth === 0 ||
    row.peer === 0
  )
    return undefined;
  return row.better === 'lower' ? row.peer / row.berth : row.berth / row.peer;
}

export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
