// Pull-through cache benchmark (issue 7), against distribution 2.8.2 as the upstream:
//  - time to first byte of an uncached 1 GiB layer through berth vs straight from the upstream (target: ≤ +100 ms);
//  - a cached pull through the mirror vs a pull of the same bytes from a hosted repository (target: ≥ 0.9×).
// Each uncached round uses a fresh mirror (empty storage). Run alone: `node --import tsx bench/proxy.ts [--mib 1024]
// [--rounds 3]`; or import benchProxy from the runner. Run `npx tsc -p tsconfig.build.json` first (berth runs dist/).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startDistribution, type Distribution } from '../test/support/distribution.js';
import { startBerth, type Berth } from '../test/support/berth.js';

export interface ProxyBenchResult {
  name: string;
  /** Milliseconds (ttfb) or seconds (full pulls), per `unit`. */
  value: number;
  unit: 'ms' | 's' | 'MiB/s' | 'x';
  note?: string;
}

interface Timing {
  ttfbMs: number;
  seconds: number;
  bytes: number;
}

/** GETs `url`, draining the body (or aborting after the first byte when `firstByteOnly`). */
function timedGet(url: string, firstByteOnly = false): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
    let ttfbMs = NaN;
    let bytes = 0;
    const req = request(url, (res) => {
      if (res.statusCode !== 200) reject(new Error(`GET ${url}: ${res.statusCode}`));
      res.on('data', (c: Buffer) => {
        if (bytes === 0) ttfbMs = ms();
        bytes += c.length;
        if (firstByteOnly) {
          req.destroy();
          resolve({ ttfbMs, seconds: ms() / 1000, bytes });
        }
      });
      res.on('end', () => resolve({ ttfbMs, seconds: ms() / 1000, bytes }));
      res.on('error', (e) => (firstByteOnly ? undefined : reject(e)));
    });
    req.on('error', (e) => (firstByteOnly && bytes > 0 ? undefined : reject(e)));
    req.end();
  });
}

async function pushFile(base: string, name: string, file: string, digest: string, size: number): Promise<void> {
  const start = await fetch(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`POST upload: ${start.status}`);
  const location = new URL(start.headers.get('location')!, base);
  location.searchParams.set('digest', digest);
  await new Promise<void>((resolve, reject) => {
    const req = request(
      location,
      { method: 'PUT', headers: { 'content-length': String(size), 'content-type': 'application/octet-stream' } },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`PUT blob: ${res.statusCode}`))));
      },
    );
    req.on('error', reject);
    createReadStream(file).pipe(req);
  });
}

async function randomFile(path: string, size: number): Promise<string> {
  const out = createWriteStream(path);
  const h = createHash('sha256');
  for (let left = size; left > 0; left -= 8 << 20) {
    const chunk = randomBytes(Math.min(left, 8 << 20));
    h.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return `sha256:${h.digest('hex')}`;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function mirrorConfig(upstream: string): string {
  return JSON.stringify({
    log: { level: 'warn', requests: false },
    proxy: { upstreams: [{ name: 'dist', url: upstream, prefix: 'dist', tagTtl: '1m' }] },
  });
}

export async function benchProxy(opts: { mib?: number; rounds?: number } = {}): Promise<ProxyBenchResult[]> {
  const size = (opts.mib ?? 1024) << 20;
  const rounds = opts.rounds ?? 3;
  const work = await mkdtemp('/tmp/berth-bench-proxy-');
  let dist: Distribution | undefined;
  const mirrors: Berth[] = [];
  const results: ProxyBenchResult[] = [];
  try {
    dist = await startDistribution();
    const file = join(work, 'layer.bin');
    const digest = await randomFile(file, size);
    await pushFile(dist.url, 'bench/big', file, digest, size);
    await rm(file);
    const direct = `${dist.url}/v2/bench/big/blobs/${digest}`;
    await timedGet(direct); // warm distribution's page cache like a busy upstream would have it

    const directTtfb: number[] = [];
    const mirrorTtfb: number[] = [];
    const fillSeconds: number[] = [];
    let last: Berth | undefined;
    for (let i = 0; i < rounds; i++) {
      directTtfb.push((await timedGet(direct, true)).ttfbMs);
      const root = join(work, `mirror-${i}`);
      // The storage root comes from --root (startBerth); the config's root is overridden.
      const mirror = await startBerth(undefined, { root, config: mirrorConfig(dist.url) });
      mirrors.push(mirror);
      await fetch(`${mirror.url}/v2/`); // a warm connection to the mirror, as a client pulling several layers has
      const t = await timedGet(`${mirror.url}/v2/dist/bench/big/blobs/${digest}`);
      if (t.bytes !== size) throw new Error(`mirror served ${t.bytes} of ${size} bytes`);
      mirrorTtfb.push(t.ttfbMs);
      fillSeconds.push(t.seconds);
      last = mirror;
    }
    results.push({
      name: `ttfb, uncached ${opts.mib ?? 1024} MiB layer, direct from distribution (median of ${rounds})`,
      value: median(directTtfb),
      unit: 'ms',
    });
    results.push({
      name: `ttfb, uncached ${opts.mib ?? 1024} MiB layer, through berth (median of ${rounds})`,
      value: median(mirrorTtfb),
      unit: 'ms',
    });
    results.push({
      name: 'ttfb overhead (through berth − direct)',
      value: median(mirrorTtfb) - median(directTtfb),
      unit: 'ms',
      note: 'target ≤ 100 ms',
    });
    results.push({
      name: 'first pull through berth, whole layer (streams while caching)',
      value: median(fillSeconds),
      unit: 's',
    });

    // Cached vs hosted: the same bytes (same digest, so the same stored file) via the mirror and via a hosted repo.
    const mirror = last!;
    await new Promise((r) => setTimeout(r, 500)); // let the fill publish
    const hostedFile = join(work, 'again.bin');
    const again = await fetch(direct);
    await pushStream(mirror.url, 'local/big', again, digest, size, hostedFile);
    const cached: number[] = [];
    const local: number[] = [];
    for (let i = 0; i < rounds; i++) {
      cached.push((await timedGet(`${mirror.url}/v2/dist/bench/big/blobs/${digest}`)).seconds);
      local.push((await timedGet(`${mirror.url}/v2/local/big/blobs/${digest}`)).seconds);
    }
    const mib = size / (1 << 20);
    results.push({
      name: `cached pull through the mirror (median of ${rounds})`,
      value: mib / median(cached),
      unit: 'MiB/s',
    });
    results.push({
      name: `pull of the same bytes from a hosted repository (median of ${rounds})`,
      value: mib / median(local),
      unit: 'MiB/s',
    });
    results.push({ name: 'cached / local', value: median(local) / median(cached), unit: 'x', note: 'target ≥ 0.9' });
  } finally {
    for (const m of mirrors) await m.stop().catch(() => {});
    await dist?.stop();
    await rm(work, { recursive: true, force: true });
  }
  return results;
}

/** Saves a fetched body to `file`, then pushes it to `name` (a hosted repository on the mirror). */
async function pushStream(
  base: string,
  name: string,
  res: Response,
  digest: string,
  size: number,
  file: string,
): Promise<void> {
  const out = createWriteStream(file);
  for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) if (!out.write(c)) await once(out, 'drain');
  out.end();
  await once(out, 'finish');
  await pushFile(base, name, file, digest, size);
  await rm(file);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const results = await benchProxy({ mib: arg('--mib'), rounds: arg('--rounds') });
  for (const r of results)
    console.log(
      `${r.name.padEnd(80)} ${r.value.toFixed(r.unit === 'x' ? 2 : 1).padStart(9)} ${r.unit}${r.note ? `   (${r.note})` : ''}`,
    );
}
