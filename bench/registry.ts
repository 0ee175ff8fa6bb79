// Registry speed (issue 2, "Speed"): berth vs Debian's distribution 2.8.2, side by side in one run, same disk
// (both roots under /tmp), same client (bench/client.ts). Timed transfers are repeated `rounds` times, alternating
// which server goes first, with a `sync` before each one so write-back of the previous one does not leak in; the
// median is reported. Also: the client alone against a sink server (the client's upper bound), one core's SHA-256
// rate (the bound for a push, which must hash every byte), berth's fsync and request-log costs, and berth's peak RSS
// during a 4 GiB push.
//
// berth runs from dist/ (the runner builds it first), as `node bin/berth.js serve` with BERTH_LOG_LEVEL=warn.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDistribution, type Distribution } from '../test/support/distribution.js';
import { findExecutable, freePort, run, stopProcess, waitForHttp } from '../test/support/peers.js';
import {
  MiB,
  OCI_MANIFEST,
  SINK_SERVER,
  blob,
  call,
  pull,
  pushChunked,
  pushImage,
  pushMonolithic,
  type BlobSpec,
} from './client.js';
import { median, type Bench, type BenchContext, type Row } from './types.js';

// BERTH_BENCH_BIN points at another checkout's bin/berth.js, to compare a change against a baseline.
const BERTH = process.env.BERTH_BENCH_BIN ?? fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const DIST = 'distribution 2.8.2';

export interface Server {
  name: string;
  url: string;
  pid: number;
  root: string;
  stop(): Promise<void>;
  /** Where a blob's bytes live in this server's storage (for _drop). */
  blobFile?(hex: string): string;
}

/** `berth serve` on a free port with its own root; its log goes to a file (as a deployment's would). */
export async function startBerthServer(
  work: string,
  label: string,
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<Server> {
  const root = await mkdtemp(join(work, `berth-${label}-`));
  const port = await freePort();
  const log = `${root}.log`;
  const fd = openSync(log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [...nodeArgs, BERTH, 'serve', '--addr', `127.0.0.1:${port}`, '--root', root], {
      env: { ...process.env, BERTH_LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/v2/`, { process: child, timeoutMs: 60_000 });
  return {
    name: `berth${label === 'main' ? '' : ` (${label})`}`,
    url,
    pid: child.pid!,
    root,
    stop: () => stopProcess(child),
    blobFile: (hex) => join(root, 'blobs/sha256', hex.slice(0, 2), hex, 'data'),
  };
}

async function _startSink(): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', SINK_SERVER, String(port)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`sink server exited (${code})`)));
  });
  child.disconnect();
  return { name: 'sink', url: `http://127.0.0.1:${port}`, pid: child.pid!, root: '', stop: () => stopProcess(child) };
}

function _fromDistribution(d: Distribution): Server {
  return {
    name: DIST,
    url: d.url,
    pid: d.pid,
    root: d.root,
    stop: d.stop,
    blobFile: (hex) => join(d.root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data'),
  };
}

/**
 * Removes a pushed blob's bytes behind the server's back (the bench never reads it again), so that every round
 * starts with the same disk use and page cache: without this, rounds got steadily slower as GiBs piled up.
 */
async function _drop(s: Server, spec: BlobSpec): Promise<void> {
  if (s.blobFile) await rm(s.blobFile(spec.digest.slice(7)), { force: true });
}

async function _sync(): Promise<void> {
  await run('sync', [], { timeoutMs: 300_000 });
}

/** MB/s (decimal, to compare with openssl's figures). */
function _rate(bytes: number, seconds: number): number {
  return bytes / 1e6 / seconds;
}

// ---------------------------------------------------------------------------------------------------------------
// Bounds

/** One core's SHA-256 rate: `openssl speed -evp sha256` on 1 MiB blocks, and node's crypto on the same. MB/s. */
async function sha256Rates(ctx: BenchContext): Promise<{ openssl: number; node: number }> {
  const r = await run(
    'openssl',
    ['speed', '-seconds', ctx.quick ? '1' : '3', '-bytes', String(MiB), '-evp', 'sha256'],
    { timeoutMs: 60_000 },
  );
  const line = r.stdout.split('\n').find((l) => /^sha256\s/.test(l));
  const openssl = line ? Number(line.trim().split(/\s+/)[1].replace(/k$/, '')) / 1000 : NaN;
  const buf = Buffer.alloc(MiB, 7);
  const n = ctx.quick ? 256 : 1024;
  const h = createHash('sha256');
  const t0 = performance.now();
  for (let i = 0; i < n; i++) h.update(buf);
  h.digest();
  const node = _rate(n * MiB, (performance.now() - t0) / 1000);
  return { openssl, node };
}

// ---------------------------------------------------------------------------------------------------------------
// Load (wrk) and memory

export interface WrkResult {
  rps: number;
  errors: number;
  latency: string;
}

/**
 * GET load with wrk. HEAD load with hey: Debian's wrk 4.1.0 waits for a body after a HEAD response that carries
 * Content-Length (as a blob HEAD must), so it measures nothing (fixed in wrk 4.2).
 */
export async function load(
  url: string,
  opts: { seconds: number; connections?: number; head?: boolean; headers?: string[] },
): Promise<WrkResult> {
  const c = opts.connections ?? 64;
  if (opts.head) return _hey(url, { ...opts, connections: c });
  const args = ['-t2', `-c${c}`, `-d${opts.seconds}s`];
  for (const h of opts.headers ?? []) args.push('-H', h);
  const r = await run('wrk', [...args, url], { timeoutMs: (opts.seconds + 30) * 1000 });
  if (r.code !== 0) throw new Error(`wrk failed: ${r.stderr}${r.stdout}`);
  const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const errors =
    Number(/Non-2xx or 3xx responses:\s*(\d+)/.exec(r.stdout)?.[1] ?? 0) +
    Number(/Socket errors:.*?(\d+)/.exec(r.stdout)?.[1] ?? 0);
  const latency = /Latency\s+(\S+)/.exec(r.stdout)?.[1] ?? '?';
  return { rps, errors, latency };
}

export const HEY_INSTALL = 'go install github.com/rakyll/hey@v0.1.4';

async function _hey(
  url: string,
  opts: { seconds: number; connections: number; headers?: string[] },
): Promise<WrkResult> {
  const hey = findExecutable('hey');
  if (!hey) throw new Error(`hey is not installed (${HEY_INSTALL})`);
  const args = ['-m', 'HEAD', '-c', String(opts.connections), '-z', `${opts.seconds}s`];
  for (const h of opts.headers ?? []) args.push('-H', h);
  const r = await run(hey, [...args, url], { timeoutMs: (opts.seconds + 30) * 1000 });
  if (r.code !== 0) throw new Error(`hey failed: ${r.stderr}${r.stdout}`);
  const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const statuses = [...r.stdout.matchAll(/\[(\d{3})\]\s+(\d+) responses/g)];
  const errors =
    statuses.filter((m) => !m[1].startsWith('2')).reduce((n, m) => n + Number(m[2]), 0) +
    (/Error distribution/.test(r.stdout) ? 1 : 0);
  const latency = `${(Number(/Average:\s*([\d.]+) secs/.exec(r.stdout)?.[1] ?? NaN) * 1000).toFixed(2)}ms`;
  return { rps, errors, latency };
}

function _status(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s*(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Samples a process's RSS every 20 ms; `stop()` returns the peak seen (bytes). */
function _sampleRss(pid: number): { stop(): number } {
  let peak = _status(pid, 'VmRSS');
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, _status(pid, 'VmRSS'));
    } catch {
      // exited
    }
  }, 20);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------

/** Runs `measure` on each server `rounds` times, alternating the order; returns the median seconds per server. */
async function _rounds(
  ctx: BenchContext,
  servers: Server[],
  what: string,
  measure: (s: Server, round: number) => Promise<number>,
): Promise<number[]> {
  const samples = servers.map(() => [] as number[]);
  for (let round = 0; round < ctx.rounds; round++) {
    const order = servers.map((_, i) => i);
    if (round % 2) order.reverse();
    for (const i of order) {
      await _sync();
      const s = await measure(servers[i], round);
      samples[i].push(s);
      ctx.log(`  ${what} ${servers[i].name} round ${round + 1}: ${s.toFixed(2)} s`);
    }
  }
  return samples.map(median);
}

async function _pushThenDrop(
  s: Server,
  spec: BlobSpec,
  push: (base: string, repo: string, spec: BlobSpec) => Promise<number>,
): Promise<number> {
  const seconds = await push(s.url, 'bench/push', spec);
  await _drop(s, spec);
  return seconds;
}

export const registryBench: Bench = {
  name: 'registry',
  async run(ctx) {
    const size = (ctx.quick ? 256 : 1024) * MiB;
    const big = (ctx.quick ? 1024 : 4096) * MiB;
    const label = ctx.quick ? '256 MiB' : '1 GiB';
    const wrkSeconds = ctx.quick ? 3 : 10;
    const work = await mkdtemp('/tmp/berth-bench-registry-');
    const rows: Row[] = [];
    const started: Server[] = [];
    const start = async <T extends Server>(p: Promise<T>) => {
      const s = await p;
      started.push(s);
      return s;
    };
    try {
      ctx.log('sha256 bound…');
      const sha = await sha256Rates(ctx);
      rows.push({
        name: 'SHA-256, one core (openssl speed -evp sha256, 1 MiB blocks)',
        unit: 'MB/s',
        berth: sha.openssl,
        note: 'bound for push (every byte is hashed)',
      });
      rows.push({ name: 'SHA-256, one core (node crypto, 1 MiB updates)', unit: 'MB/s', berth: sha.node });

      ctx.log('preparing blobs (digests computed untimed)…');
      const mono = Array.from({ length: ctx.rounds }, (_, r) => blob(100 + r, size));
      const chunked = Array.from({ length: ctx.rounds }, (_, r) => blob(200 + r, size));

      // The client alone, against a server that drops what it gets and makes up what it sends.
      const sink = await start(_startSink());
      const sinkPush = await _rounds(ctx, [sink], 'client→sink push', (s, r) => pushMonolithic(s.url, 'sink', mono[r]));
      const sinkPull = await _rounds(ctx, [sink], 'sink→client pull', async (s) => {
        const t0 = performance.now();
        const res = await call('GET', `${s.url}/v2/sink/blobs/x?size=${size}`);
        if (res.bytes !== size) throw new Error('sink pull short');
        return (performance.now() - t0) / 1000;
      });
      rows.push({
        name: `client alone: push ${label} to a sink server`,
        unit: 'MB/s',
        berth: _rate(size, sinkPush[0]),
        note: 'upper bound this client can measure',
      });
      rows.push({
        name: `client alone: pull ${label} from a sink server`,
        unit: 'MB/s',
        berth: _rate(size, sinkPull[0]),
      });
      await sink.stop();

      const berth = await start(startBerthServer(work, 'main'));
      const dist = await start(startDistribution().then(_fromDistribution));
      const pair = [berth, dist];
      const vs = (name: string, unit: string, b: number, d: number, extra: Partial<Row> = {}): Row => ({
        name,
        unit,
        berth: b,
        peer: d,
        peerName: DIST,
        better: 'higher',
        ...extra,
      });

      ctx.log(`monolithic push ${label}…`);
      const [bMono, dMono] = await _rounds(ctx, pair, 'push', (s, r) => _pushThenDrop(s, mono[r], pushMonolithic));
      rows.push(
        vs(
          `push ${label} monolithic (POST + PUT), median of ${ctx.rounds}`,
          'MB/s',
          _rate(size, bMono),
          _rate(size, dMono),
          { target: '≥ 2×' },
        ),
      );

      ctx.log(`pull ${label}…`);
      const pulled = blob(300, size);
      for (const s of pair) await pushMonolithic(s.url, 'bench/pull', pulled);
      const [bPull, dPull] = await _rounds(ctx, pair, 'pull', (s) => pull(s.url, 'bench/pull', pulled));
      rows.push(
        vs(`pull ${label}, median of ${ctx.rounds}`, 'MB/s', _rate(size, bPull), _rate(size, dPull), {
          target: '≥ 1×',
        }),
      );

      ctx.log(`chunked push ${label}…`);
      const [bChunk, dChunk] = await _rounds(ctx, pair, 'chunked push', (s, r) =>
        _pushThenDrop(s, chunked[r], pushChunked),
      );
      rows.push(
        vs(
          `push ${label} in 16 MiB chunks (PATCH), median of ${ctx.rounds}`,
          'MB/s',
          _rate(size, bChunk),
          _rate(size, dChunk),
          { target: '≥ 2×' },
        ),
      );

      ctx.log('manifest GET / HEAD blob under wrk…');
      const layers = new Map<Server, string>();
      for (const s of pair) layers.set(s, await pushImage(s.url, 'bench/small', 'v1'));
      // Load runs alternate between the servers like the transfers; the median rate of the rounds is reported.
      const loadRounds = async (servers: Server[], head: boolean): Promise<number[]> => {
        const rates = servers.map(() => [] as number[]);
        for (let round = 0; round < ctx.rounds; round++) {
          for (const i of round % 2 ? [...servers.keys()].reverse() : [...servers.keys()]) {
            const s = servers[i];
            const url = head
              ? `${s.url}/v2/bench/small/blobs/${layers.get(s)}`
              : `${s.url}/v2/bench/small/manifests/v1`;
            const o = { connections: 64, head, headers: head ? [] : [`Accept: ${OCI_MANIFEST}`] };
            if (round === 0) await load(url, { ...o, seconds: 1 }); // warm-up (JIT, connection set-up)
            const r = await load(url, { ...o, seconds: wrkSeconds });
            ctx.log(
              `  ${head ? 'HEAD blob' : 'manifest GET'} ${s.name} round ${round + 1}: ${r.rps.toFixed(0)} req/s, avg latency ${r.latency}`,
            );
            if (r.errors) throw new Error(`${s.name}: ${r.errors} failed requests under load`);
            rates[i].push(r.rps);
          }
        }
        return rates.map(median);
      };
      const [bMan, dMan] = await loadRounds(pair, false);
      rows.push(
        vs(`manifest GET by tag, 64 connections (wrk ${wrkSeconds} s), median of ${ctx.rounds}`, 'req/s', bMan, dMan, {
          target: '≥ 1.5×',
        }),
      );
      if (findExecutable('hey')) {
        const [bHead, dHead] = await loadRounds(pair, true);
        rows.push(
          vs(`HEAD blob, 64 connections (hey ${wrkSeconds} s), median of ${ctx.rounds}`, 'req/s', bHead, dHead, {
            note: 'hey: wrk 4.1 hangs on HEAD',
          }),
        );
      } else {
        rows.push({
          name: 'HEAD blob, 64 connections',
          unit: 'req/s',
          berth: NaN,
          note: `skipped: needs hey (${HEY_INSTALL}); wrk 4.1 hangs on HEAD`,
        });
      }

      // What fsync and the request log cost berth (both stay on by default).
      ctx.log('berth variants: fsync off, request log on…');
      const noSync = await start(startBerthServer(work, 'fsync off', { BERTH_STORAGE_FILESYSTEM_FSYNC: 'false' }));
      const [nsMono] = await _rounds(ctx, [noSync], 'push', (s, r) => _pushThenDrop(s, mono[r], pushMonolithic));
      rows.push({
        name: `berth push ${label}: fsync on (default) vs off`,
        unit: 'MB/s',
        berth: _rate(size, bMono),
        peer: _rate(size, nsMono),
        peerName: 'berth, fsync off',
        better: 'higher',
        note: `fsync costs ${((bMono - nsMono) * 1000).toFixed(0)} ms per ${label}`,
      });
      await noSync.stop();
      const logged = await start(
        startBerthServer(work, 'request log', { BERTH_LOG_LEVEL: 'info', BERTH_LOG_REQUESTS: 'true' }),
      );
      layers.set(logged, await pushImage(logged.url, 'bench/small', 'v1'));
      const [bMan2, lMan] = await loadRounds([berth, logged], false);
      rows.push({
        name: 'berth manifest GET: request log off (warn) vs on (info, to a file)',
        unit: 'req/s',
        berth: bMan2,
        peer: lMan,
        peerName: 'berth, request log on',
        better: 'higher',
      });
      await logged.stop();

      // Peak RSS while pushing a big blob: a fresh berth, so nothing earlier counts.
      ctx.log(`peak RSS during a ${big / MiB} MiB push…`);
      const bigBlob = blob(400, big);
      const fresh = await start(startBerthServer(work, 'rss'));
      const rss: number[] = [];
      for (const s of [fresh, dist]) {
        await _sync();
        const sampler = _sampleRss(s.pid);
        const seconds = await _pushThenDrop(s, bigBlob, pushMonolithic);
        rss.push(sampler.stop());
        ctx.log(
          `  ${s.name}: ${big / MiB} MiB in ${seconds.toFixed(2)} s, peak RSS ${(rss.at(-1)! / 1e6).toFixed(0)} MB`,
        );
      }
      const hwm = _status(fresh.pid, 'VmHWM');
      rows.push({
        name: `peak RSS during a ${big / MiB} MiB push (sampled every 20 ms)`,
        unit: 'MB',
        berth: rss[0] / 1e6,
        peer: rss[1] / 1e6,
        peerName: DIST,
        better: 'lower',
        target: '< 150 MB',
        met: rss[0] / 1e6 < 150,
        note: `berth VmHWM ${(hwm / 1e6).toFixed(0)} MB (whole process life)`,
      });

      for (const row of rows) {
        if (row.met !== undefined || !row.target || row.peer === undefined) continue;
        const want = Number(/([\d.]+)×/.exec(row.target)?.[1]);
        row.met = row.berth / row.peer >= want;
      }
      return rows;
    } finally {
      for (const s of started.reverse()) await s.stop().catch(() => {});
      await rm(work, { recursive: true, force: true });
    }
  },
};
