// `npm run bench -- --only ui`: the web UI with 10,000 tags in one repository and 2,000 repositories, on the
// filesystem and on S3 (SeaweedFS): time to first render in headless Chromium (first contentful paint of the tags
// page and of the repository catalog, median of `rounds` fresh loads), page load times (median, and the first load
// alone: nothing cached yet, see ui.listingTtl) and JSON API latency p50/p95 (sequential requests for page 1, sorted
// by push time / name). `--quick`: 2,000 tags and 400 repositories.
import { mkdtemp, rm } from 'node:fs/promises';
import { startBerth, type Berth } from '../test/support/berth.js';
import { startS3Server, s3ServeConfig, type S3Server } from '../test/support/s3-server.js';
import { findExecutable } from '../test/support/peers.js';
import { CHROMIUM, fillBulk, launchChromium } from '../test/support/ui-fixtures.js';
import { median, type Bench, type BenchContext, type Row } from './types.js';

const API = '/v2/_berth/api/v1';

function _pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function _latency(url: string, n: number): Promise<{ p50: number; p95: number }> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await fetch(url);
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { p50: _pct(times, 50), p95: _pct(times, 95) };
}

async function _backend(ctx: BenchContext, label: string, reg: Berth, tags: number, repos: number): Promise<Row[]> {
  const t0 = Date.now();
  await fillBulk(reg.url, { tags, repos });
  ctx.log(`ui/${label}: filled ${tags} tags and ${repos} repositories in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  const rows: Row[] = [];
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 860 });
    for (const [what, path] of [
      [`tags page (${tags} tags)`, '/ui/repo/bulk/tags'],
      [`catalog page (${repos + 1} repositories)`, '/ui/'],
    ] as const) {
      const fcps: number[] = [];
      const loads: number[] = [];
      for (let i = 0; i < Math.max(3, ctx.rounds); i++) {
        await page.goto(`${reg.url}${path}`, { waitUntil: 'load' });
        // The paint entry may be recorded after the load event: wait for it (a buffered observer), up to 2 s.
        const m = await page.evaluate(async () => {
          const fcp = await new Promise<number>((resolve) => {
            const timer = setTimeout(() => resolve(Number.NaN), 2_000);
            new PerformanceObserver((list) => {
              const paint = list.getEntriesByName('first-contentful-paint')[0];
              if (!paint) return;
              clearTimeout(timer);
              resolve(paint.startTime);
            }).observe({ type: 'paint', buffered: true });
          });
          const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
          return { fcp, load: nav.loadEventEnd };
        });
        fcps.push(m.fcp);
        loads.push(m.load);
      }
      rows.push({
        name: `${label}: first render, ${what}`,
        unit: 'ms',
        berth: median(fcps.filter(Number.isFinite)),
        better: 'lower',
        note: 'Chromium FCP, median',
      });
      rows.push({ name: `${label}: page load, ${what}`, unit: 'ms', berth: median(loads), better: 'lower' });
      // The first load follows the fill, whose pushes dropped the listings: nothing is cached (storage/browse.ts).
      rows.push({
        name: `${label}: first page load, ${what}`,
        unit: 'ms',
        berth: loads[0],
        better: 'lower',
        note: 'listings not cached yet',
      });
    }
  } finally {
    await browser.close();
  }
  // S3 listings are slow (SeaweedFS: one LIST per 1,000 tags): fewer samples there keep the run in minutes.
  const n = ctx.quick || label === 's3' ? 20 : 100;
  for (const [what, path] of [
    ['tags, newest first, page 1', `/repositories/bulk/tags/tags?n=50`],
    ['tags, filtered', `/repositories/bulk/tags/tags?q=t-0099`],
    ['repositories, page 1', '/repositories?n=50'],
    ['image summary', '/repositories/bulk/tags/images/t-00001'],
  ] as const) {
    const l = await _latency(`${reg.url}${API}${path}`, n);
    rows.push({ name: `${label}: API ${what} p50`, unit: 'ms', berth: l.p50, better: 'lower' });
    rows.push({ name: `${label}: API ${what} p95`, unit: 'ms', berth: l.p95, better: 'lower', note: `${n} requests` });
  }
  // Printed as soon as a backend is done: the S3 half takes long, and an interrupted run keeps the fs figures.
  for (const r of rows) ctx.log(`  ${r.name}: ${r.berth.toFixed(1)} ${r.unit}`);
  return rows;
}

export const uiBench: Bench = {
  name: 'ui',
  async run(ctx) {
    if (!findExecutable(CHROMIUM)) throw new Error('chromium is not installed; run bash .ci/install-peers.sh');
    const tags = ctx.quick ? 2_000 : 10_000;
    const repos = ctx.quick ? 400 : 2_000;
    const rows: Row[] = [];
    // BERTH_BENCH_UI=fs (or s3) runs one backend only.
    const only = process.env.BERTH_BENCH_UI;
    const root = await mkdtemp('/tmp/berth-bench-ui-');
    const fs = await startBerth(undefined, { root, config: 'log: { requests: false }\n' });
    try {
      if (only !== 's3') rows.push(...(await _backend(ctx, 'fs', fs, tags, repos)));
    } finally {
      await fs.stop();
      await rm(root, { recursive: true, force: true });
      await rm(`${root}-config.yaml`, { force: true });
    }
    if (only === 'fs') return rows;
    let s3: S3Server | undefined;
    let reg: Berth | undefined;
    try {
      s3 = await startS3Server({ bucket: 'bench-ui' });
      reg = await startBerth(undefined, { config: s3ServeConfig(s3) });
      rows.push(...(await _backend(ctx, 's3', reg, tags, repos)));
    } finally {
      await reg?.stop();
      await s3?.stop();
      if (reg) for (const p of [reg.root, `${reg.root}-config.yaml`]) await rm(p, { recursive: true, force: true });
    }
    return rows;
  },
};
