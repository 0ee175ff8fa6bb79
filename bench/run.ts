// `npm run bench [-- --quick] [--only registry,copy] [--rounds N] [--s3]`: builds dist/ (berth runs as `node bin/berth.js`),
// runs the benches of bench/index.ts in turn, prints one plain table on stdout (progress goes to stderr) and writes
// every row to bench/results.json. Benchmarks talk to loopback only and stop what they start by pid. `--s3` runs
// only the S3 bench (bench/s3.ts: berth vs distribution on SeaweedFS) instead of the default set.
import { cpus } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { run } from '../test/support/peers.js';
import { benches, s3Bench } from './index.js';
import { ratio, type BenchContext, type Row } from './types.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    s3: { type: 'boolean', default: false },
  },
});

// The S3 run keeps its own file, so it never overwrites the default run's results.
const RESULTS = fileURLToPath(new URL(values.s3 ? './results-s3.json' : './results.json', import.meta.url));
const log = (msg: string) => process.stderr.write(`${msg}\n`);
const ctx: BenchContext = { quick: values.quick!, rounds: Number(values.rounds ?? 3), log };
const only = values.only?.split(',').map((s) => s.trim());
const selected = values.s3 ? [s3Bench] : only ? benches.filter((b) => only.includes(b.name)) : benches;
if (only && !values.s3 && selected.length !== only.length) {
  log(`unknown bench in --only ${values.only}; known: ${benches.map((b) => b.name).join(', ')}`);
  process.exit(2);
}

if (!values['no-build']) {
  log('building dist/ (npx tsc -p tsconfig.build.json)…');
  const r = await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, timeoutMs: 300_000 });
  // Another engineer's unfinished file may fail the type-check; tsc still emits, and that is what runs.
  if (r.code !== 0) log(`tsc reported errors (output still emitted):\n${r.stdout.split('\n').slice(0, 5).join('\n')}`);
}

const results: Array<{ bench: string; rows: Row[]; error?: string }> = [];
for (const bench of selected) {
  log(`== ${bench.name}`);
  try {
    results.push({ bench: bench.name, rows: await bench.run(ctx) });
  } catch (e) {
    log(`${bench.name} failed: ${(e as Error).stack ?? e}`);
    results.push({ bench: bench.name, rows: [], error: String((e as Error).message ?? e) });
  }
}

function fmt(v: number | undefined): string {
  if (v === undefined) return '';
  if (!Number.isFinite(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v.toFixed(2);
}

const header = ['bench', 'measurement', 'unit', 'berth', 'other', 'other is', 'ratio', 'target', 'note'];
const lines: string[][] = [];
for (const r of results) {
  if (r.error) lines.push([r.bench, `FAILED: ${r.error.split('\n')[0]}`, '', '', '', '', '', '', '']);
  for (const row of r.rows) {
    const x = ratio(row);
    const target = row.target ? `${row.target} ${row.met === undefined ? '' : row.met ? 'met' : 'NOT MET'}`.trim() : '';
    lines.push([
      r.bench,
      row.name,
      row.unit,
      fmt(row.berth),
      fmt(row.peer),
      row.peerName ?? '',
      x === undefined ? '' : `${x.toFixed(2)}×`,
      target,
      row.note ?? '',
    ]);
  }
}
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
const numeric = new Set([3, 4, 6]);
const show = (cells: string[]) =>
  cells
    .map((c, i) => (numeric.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
    .join('  ')
    .trimEnd();
console.log(
  `\nberth bench ${ctx.quick ? '(quick) ' : ''}— ${new Date().toISOString()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, node ${process.version}`,
);
console.log('ratio > 1 means berth is better; timed transfers are medians of', ctx.rounds, 'rounds');
console.log(show(header));
console.log(show(widths.map((w) => '-'.repeat(w))));
for (const l of lines) console.log(show(l));

await writeFile(
  RESULTS,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      quick: ctx.quick,
      rounds: ctx.rounds,
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      node: process.version,
      results,
    },
    null,
    2,
  )}\n`,
);
log(`\nwrote ${RESULTS}`);
