// Registry speed on S3 (issue 6, "Speed"; `npm run bench -- --s3`): berth vs Debian's distribution 2.8.2, both on
// the same real S3 server (SeaweedFS, started as the tests do: test/support/s3-server.ts), side by side in one run, same
// client (bench/client.ts). Timed: a 1 GiB monolithic push (POST + PUT), a chunked push (16 MiB PATCHes) and pulls
// with blob GETs proxied through the registry and redirected (307 to a presigned URL, followed by the client).
// Medians of `rounds`, alternating which server goes first. Untimed: S3 requests per pushed blob, counted by a
// loopback proxy between a second instance of each registry and the bucket (kept out of the timed runs: on two cores
// a proxy in the bench process would slow both registries down).
//
// Each registry keeps its own prefix in the one bucket; a registry's proxy- and redirect-mode instances share it
// (both are stateless over S3), so a blob pushed through one is pulled through the other.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage } from 'node:http';
import { startDistribution } from '../test/support/distribution.js';
import { freePort, run, stopProcess, waitForHttp } from '../test/support/peers.js';
import { startS3Server, type S3Server } from '../test/support/s3-server.js';
import { faultProxy } from '../test/support/s3-fault-proxy.js';
import { MiB, blob, call, pull, pushChunked, pushMonolithic, pushSmall, type BlobSpec } from './client.js';
import { median, type Bench, type BenchContext, type Row } from './types.js';

const BERTH = process.env.BERTH_BENCH_BIN ?? fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const DIST = 'distribution 2.8.2';
type BlobGet = 'proxy' | 'redirect';

interface Server {
  name: string;
  url: string;
  stop(): Promise<void>;
}

/** `berth serve` on S3 from a config file; its log goes next to it. */
async function _startBerth(
  work: string,
  s3: S3Server,
  endpoint: string,
  blobGet: BlobGet,
  label: string,
): Promise<Server> {
  const port = await freePort();
  const config = join(work, `berth-${label}.yaml`);
  await writeFile(
    config,
    JSON.stringify({
      http: { addr: `127.0.0.1:${port}` },
      storage: {
        s3: {
          bucket: s3.bucket,
          endpoint,
          region: s3.region,
          forcePathStyle: true,
          prefix: 'berth',
          accessKeyId: s3.accessKeyId,
          secretAccessKey: s3.secretAccessKey,
          blobGet,
        },
      },
      log: { level: 'warn', requests: false },
    }),
  );
  const fd = openSync(join(work, `berth-${label}.log`), 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [BERTH, 'serve', '--config', config], {
      env: { ...process.env, BERTH_LOG_LEVEL: 'warn' },
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/v2/`, { process: child, timeoutMs: 20_000 });
  return { name: `berth (${label})`, url, stop: () => stopProcess(child) };
}

/** distribution with its s3 driver (2.8: `regionendpoint` implies path-style; `secure: false` for plain HTTP). */
async function _startDistribution(s3: S3Server, endpoint: string, blobGet: BlobGet, label: string): Promise<Server> {
  const d = await startDistribution({
    storage: {
      s3: {
        accesskey: s3.accessKeyId,
        secretkey: s3.secretAccessKey,
        region: s3.region,
        regionendpoint: endpoint,
        bucket: s3.bucket,
        secure: false,
        v4auth: true,
        rootdirectory: '/distribution',
      },
      // As Debian's default config: descriptors cached in memory.
      cache: { blobdescriptor: 'inmemory' },
      redirect: { disable: blobGet === 'proxy' },
    },
  });
  return { name: `${DIST} (${label})`, url: d.url, stop: d.stop };
}

/** GET of a blob that follows one redirect (to the bucket), as docker and containerd do. Seconds. */
async function _pullFollow(base: string, repo: string, spec: BlobSpec): Promise<number> {
  const t0 = performance.now();
  const first = await call('GET', `${base}/v2/${repo}/blobs/${spec.digest}`);
  if (first.status !== 307 || !first.headers.location)
    throw new Error(`expected a 307 to the bucket, got HTTP ${first.status}`);
  const res = await call('GET', new URL(first.headers.location, base).href);
  if (res.status !== 200 || res.bytes !== spec.size)
    throw new Error(`pull from the bucket: HTTP ${res.status}, ${res.bytes} of ${spec.size} bytes`);
  return (performance.now() - t0) / 1000;
}

/** Runs `measure` on each server `rounds` times, alternating the order, `sync` before each; median seconds each. */
async function _rounds(
  ctx: BenchContext,
  servers: Server[],
  what: string,
  measure: (s: Server, round: number) => Promise<number>,
): Promise<number[]> {
  const samples = servers.map(() => [] as number[]);
  for (let round = 0; round < ctx.rounds; round++) {
    const order = round % 2 ? [...servers.keys()].reverse() : [...servers.keys()];
    for (const i of order) {
      await run('sync', [], { timeoutMs: 300_000 });
      const seconds = await measure(servers[i], round);
      samples[i].push(seconds);
      ctx.log(`  ${what} ${servers[i].name} round ${round + 1}: ${seconds.toFixed(2)} s`);
    }
  }
  return samples.map(median);
}

// ---------------------------------------------------------------------------------------------------------------
// Counting S3 requests

/** The S3 operation an HTTP request to the bucket is (path-style, SigV4). */
export function s3Operation(req: IncomingMessage): string {
  const q = new URL(req.url ?? '/', 'http://x').searchParams;
  const copy = req.headers['x-amz-copy-source'] !== undefined;
  switch (req.method) {
    case 'HEAD':
      return 'HeadObject';
    case 'GET':
      return q.has('list-type')
        ? 'ListObjectsV2'
        : q.has('uploads')
          ? 'ListMultipartUploads'
          : q.has('uploadId')
            ? 'ListParts'
            : q.has('prefix')
              ? 'ListObjects'
              : 'GetObject';
    case 'PUT':
      if (q.has('partNumber')) return copy ? 'UploadPartCopy' : 'UploadPart';
      return copy ? 'CopyObject' : 'PutObject';
    case 'POST':
      return q.has('uploads')
        ? 'CreateMultipartUpload'
        : q.has('uploadId')
          ? 'CompleteMultipartUpload'
          : q.has('delete')
            ? 'DeleteObjects'
            : 'POST';
    case 'DELETE':
      return q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
    default:
      return req.method ?? '?';
  }
}

class OpCounter {
  counts = new Map<string, number>();
  note(op: string): void {
    this.counts.set(op, (this.counts.get(op) ?? 0) + 1);
  }
  reset(): void {
    this.counts.clear();
  }
  total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }
  /** "64 UploadPart, 3 HeadObject, …", most frequent first. */
  describe(): string {
    return [...this.counts]
      .sort((a, b) => b[1] - a[1])
      .map(([op, n]) => `${n} ${op}`)
      .join(', ');
  }
}

/** Pushes once through `s` (whose S3 traffic `counter` sees) and returns the requests it made. */
async function _count(counter: OpCounter, push: () => Promise<unknown>): Promise<{ total: number; ops: string }> {
  counter.reset();
  await push();
  // Clean-up after the 201 (deleting the session) may still be under way; let it land in the count.
  await new Promise((r) => setTimeout(r, 1000));
  return { total: counter.total(), ops: counter.describe() };
}

// ---------------------------------------------------------------------------------------------------------------

const rate = (bytes: number, seconds: number) => bytes / 1e6 / seconds;

export const s3Bench: Bench = {
  name: 's3',
  async run(ctx) {
    const size = (ctx.quick ? 256 : 1024) * MiB;
    const label = ctx.quick ? '256 MiB' : '1 GiB';
    const work = await mkdtemp('/tmp/berth-bench-s3-');
    const rows: Row[] = [];
    const started: Array<{ stop(): Promise<void> }> = [];
    const start = async <T extends { stop(): Promise<void> }>(p: Promise<T>) => {
      const s = await p;
      started.push(s);
      return s;
    };
    try {
      ctx.log('starting SeaweedFS (weed mini)…');
      const s3 = await start(startS3Server({ bucket: 'bench' }));
      const counter = new OpCounter();
      const proxy = await start(
        faultProxy(s3.endpoint, (_n, req) => void counter.note(s3Operation(req))).then((p) => ({
          ...p,
          stop: p.close,
        })),
      );

      const berth = await start(_startBerth(work, s3, s3.endpoint, 'proxy', 'proxy'));
      const berthRedirect = await start(_startBerth(work, s3, s3.endpoint, 'redirect', 'redirect'));
      const dist = await start(_startDistribution(s3, s3.endpoint, 'proxy', 'proxy'));
      const distRedirect = await start(_startDistribution(s3, s3.endpoint, 'redirect', 'redirect'));
      const vs = (name: string, unit: string, b: number, d: number, target: string, note?: string): Row => {
        const row: Row = { name, unit, berth: b, peer: d, peerName: DIST, better: 'higher', target, note };
        row.met = b / d >= Number(/([\d.]+)×/.exec(target)![1]);
        return row;
      };

      ctx.log('preparing blobs (digests computed untimed)…');
      const mono = Array.from({ length: ctx.rounds }, (_, r) => blob(500 + r, size));
      const chunked = Array.from({ length: ctx.rounds }, (_, r) => blob(600 + r, size));

      ctx.log(`monolithic push ${label}…`);
      const [bMono, dMono] = await _rounds(ctx, [berth, dist], 'push', (s, r) =>
        pushMonolithic(s.url, 'bench/push', mono[r]),
      );
      rows.push(
        vs(
          `push ${label} monolithic (POST + PUT), median of ${ctx.rounds}`,
          'MB/s',
          rate(size, bMono),
          rate(size, dMono),
          '≥ 1.5×',
        ),
      );

      ctx.log(`chunked push ${label}…`);
      const [bChunk, dChunk] = await _rounds(ctx, [berth, dist], 'chunked push', (s, r) =>
        pushChunked(s.url, 'bench/push', chunked[r]),
      );
      rows.push(
        vs(
          `push ${label} in 16 MiB chunks (PATCH), median of ${ctx.rounds}`,
          'MB/s',
          rate(size, bChunk),
          rate(size, dChunk),
          '≥ 1.5×',
        ),
      );

      ctx.log(`pull ${label} (proxy, redirect)…`);
      const pulled = blob(700, size);
      for (const s of [berth, dist]) await pushMonolithic(s.url, 'bench/pull', pulled);
      const [bPull, dPull] = await _rounds(ctx, [berth, dist], 'pull (proxy)', (s) =>
        pull(s.url, 'bench/pull', pulled),
      );
      rows.push(
        vs(
          `pull ${label}, blob GET proxied, median of ${ctx.rounds}`,
          'MB/s',
          rate(size, bPull),
          rate(size, dPull),
          '≥ 1×',
        ),
      );
      const [bRed, dRed] = await _rounds(ctx, [berthRedirect, distRedirect], 'pull (redirect)', (s) =>
        _pullFollow(s.url, 'bench/pull', pulled),
      );
      rows.push(
        vs(
          `pull ${label}, blob GET redirected (307 + GET from the bucket), median of ${ctx.rounds}`,
          'MB/s',
          rate(size, bRed),
          rate(size, dRed),
          '≥ 1×',
        ),
      );

      // Requests per pushed blob, through the counting proxy (one push each, untimed).
      ctx.log('S3 requests per pushed blob…');
      const berthCounted = await start(_startBerth(work, s3, proxy.endpoint, 'proxy', 'counted'));
      const distCounted = await start(_startDistribution(s3, proxy.endpoint, 'proxy', 'counted'));
      const small = Buffer.from(`small blob ${Date.now()}\n`.repeat(100));
      const kinds: Array<{ what: string; push: (s: Server) => Promise<unknown> }> = [
        {
          what: `${label} monolithic (POST + PUT)`,
          push: (s) => pushMonolithic(s.url, 'bench/count', blob(800, size)),
        },
        { what: `${label} in 16 MiB chunks`, push: (s) => pushChunked(s.url, 'bench/count', blob(801, size)) },
        { what: `${small.length} B (POST + PUT)`, push: (s) => pushSmall(s.url, 'bench/count', small) },
      ];
      for (const k of kinds) {
        const b = await _count(counter, () => k.push(berthCounted));
        const d = await _count(counter, () => k.push(distCounted));
        ctx.log(`  ${k.what}: berth ${b.total} (${b.ops}); ${DIST} ${d.total} (${d.ops})`);
        rows.push({
          name: `S3 requests to push one blob, ${k.what}`,
          unit: 'requests',
          berth: b.total,
          peer: d.total,
          peerName: DIST,
          better: 'lower',
          note: `berth: ${b.ops}; distribution: ${d.ops}`,
        });
      }
      return rows;
    } finally {
      for (const s of started.reverse()) await s.stop().catch(() => {});
      await rm(work, { recursive: true, force: true });
    }
  },
};
