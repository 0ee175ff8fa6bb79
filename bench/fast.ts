// Registry speed with the clients people use (issue 18): curl (C; streaming `-T` uploads, chunked PATCHes), crane
// and hey (Go), against berth (http.workers default: every core) and distribution 2.8.2 side by side in one run,
// medians of `rounds`, alternating which server goes first. Besides wall-clock rates it reports the CPU each server
// spent (utime+stime of its whole process tree from /proc/PID/stat, before and after) per GiB moved and per 10,000
// manifest GETs — the figure that predicts a bigger machine — and the clients' own CPU (reaped children of this
// process: /proc/self/stat cutime+cstime), so a figure limited by the client on this 2-core machine shows as such.
// Both servers log at warn (no line per request). Then berth with 1 vs 2 workers (the scaling), and node's zlib zstd
// vs zstd-napi (only measured: builder/ owns compression).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { link, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { startDistribution } from '../test/support/distribution.js';
import { findExecutable, run } from '../test/support/peers.js';
import { MiB, OCI_MANIFEST, blob, pushImage, writeBlobFile, type BlobSpec } from './client.js';
import { startBerthServer, type Server } from './registry.js';
import { median, type Bench, type BenchContext, type Row } from './types.js';

const DIST = 'distribution 2.8.2';
const GiB = 1 << 30;
const TICK = 100; // USER_HZ: /proc/PID/stat counts CPU time in 1/100 s on Linux

/** Seconds of CPU (user+system) of a process: its own, and `children` adds what its reaped children used. */
function _cpu(pid: number | 'self', children = false): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the ")": [0] state (field 3), so field N is f[N - 3]: utime 14, stime 15, cutime 16, cstime 17.
  const own = Number(f[11]) + Number(f[12]);
  const reaped = Number(f[13]) + Number(f[14]);
  return (children ? reaped : own + reaped) / TICK;
}

/** CPU of a server's whole process tree (a cluster primary and its workers, alive or restarted). */
function serverCpu(pid: number): number {
  let total = _cpu(pid);
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) total += _cpu(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** What the clients this process ran (and waited for) used. */
const clientCpu = () => _cpu('self', true);

interface Sample {
  seconds: number;
  server: number;
  client: number;
}

async function measure(s: Server, fn: () => Promise<void>): Promise<Sample> {
  const s0 = serverCpu(s.pid);
  const c0 = clientCpu();
  const t0 = performance.now();
  await fn();
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, server: serverCpu(s.pid) - s0, client: clientCpu() - c0 };
}

async function sh(cmd: string, args: string[], timeoutMs = 600_000): Promise<string> {
  const r = await run(cmd, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${r.command}: exit ${r.code}\n${r.stderr}${r.stdout}`.slice(0, 2000));
  return r.stdout;
}

const CURL = ['-sS', '-H', 'Expect:'];

function _withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

async function curlLocation(base: string, args: string[]): Promise<string> {
  const out = await sh('curl', [...CURL, '-D', '-', '-o', '/dev/null', ...args]);
  const status = /^HTTP\/[\d.]+ (\d+)/.exec(out)?.[1];
  const loc = /^location:\s*(\S+)/im.exec(out)?.[1];
  if (status !== '202' || !loc) throw new Error(`expected 202 + Location: ${out.slice(0, 300)}`);
  return new URL(loc, base).href;
}

async function curlStatus(args: string[], want: string): Promise<void> {
  const code = await sh('curl', [...CURL, '-o', '/dev/null', '-w', '%{http_code}', ...args]);
  if (code !== want) throw new Error(`curl ${args.slice(0, 3).join(' ')}: HTTP ${code}, expected ${want}`);
}

/** curl: POST, then one PUT streaming the file (-T). */
async function curlPush(base: string, repo: string, file: string, digest: string): Promise<void> {
  const loc = await curlLocation(base, ['-X', 'POST', `${base}/v2/${repo}/blobs/uploads/`]);
  await curlStatus(
    ['-X', 'PUT', '-T', file, '-H', 'Content-Type: application/octet-stream', _withDigest(loc, digest)],
    '201',
  );
}

/** curl: POST, one PATCH per chunk file (Content-Range), then an empty PUT ?digest=. */
async function curlChunked(base: string, repo: string, chunks: string[], digest: string): Promise<void> {
  let loc = await curlLocation(base, ['-X', 'POST', `${base}/v2/${repo}/blobs/uploads/`]);
  let offset = 0;
  for (const file of chunks) {
    const size = (await stat(file)).size;
    loc = await curlLocation(base, [
      '-X',
      'PATCH',
      '-T',
      file,
      '-H',
      'Content-Type: application/octet-stream',
      '-H',
      `Content-Range: ${offset}-${offset + size - 1}`,
      loc,
    ]);
    offset += size;
  }
  await curlStatus(['-X', 'PUT', '-H', 'Content-Length: 0', _withDigest(loc, digest)], '201');
}

async function curlPull(base: string, repo: string, spec: BlobSpec): Promise<void> {
  const got = await sh('curl', [
    ...CURL,
    '-o',
    '/dev/null',
    '-w',
    '%{size_download}',
    `${base}/v2/${repo}/blobs/${spec.digest}`,
  ]);
  if (Number(got) !== spec.size) throw new Error(`curl pull: ${got} of ${spec.size} bytes`);
}

/** A one-layer OCI layout whose layer is `file` (hard-linked), for `crane push`. */
async function layout(dir: string, file: string, spec: BlobSpec): Promise<void> {
  const blobs = join(dir, 'blobs/sha256');
  await mkdir(blobs, { recursive: true });
  await link(file, join(blobs, spec.digest.slice(7)));
  const put = async (data: Buffer) => {
    const d = createHash('sha256').update(data).digest('hex');
    await writeFile(join(blobs, d), data);
    return { digest: `sha256:${d}`, size: data.length };
  };
  const config = await put(
    Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [spec.digest] } }),
    ),
  );
  const manifest = await put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: spec.digest, size: spec.size }],
      }),
    ),
  );
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: OCI_MANIFEST, ...manifest }] }),
  );
}

interface HeyResult {
  rps: number;
  ok: number;
  errors: number;
  total: number;
  p50: number;
  p99: number;
}

async function hey(args: string[], url: string, timeoutMs = 300_000): Promise<HeyResult> {
  const bin = findExecutable('hey');
  if (!bin) throw new Error('hey is not installed (.ci/install-peers.sh)');
  const out = await sh(bin, [...args, url], timeoutMs);
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const statuses = [...out.matchAll(/\[(\d{3})\]\s+(\d+) responses/g)];
  const ok = statuses.filter((m) => m[1].startsWith('2')).reduce((n, m) => n + Number(m[2]), 0);
  const errors =
    statuses.filter((m) => !m[1].startsWith('2')).reduce((n, m) => n + Number(m[2]), 0) +
    (/Error distribution/.test(out) ? 1 : 0);
  return {
    rps: num(/Requests\/sec:\s*([\d.]+)/),
    total: num(/Total:\s*([\d.]+) secs/),
    p50: num(/50%+ in ([\d.]+) secs/) * 1000,
    p99: num(/99%+ in ([\d.]+) secs/) * 1000,
    ok,
    errors,
  };
}

/** Waits until a clustered berth says every worker listens (its log file), so the load sees all of them. */
async function allListening(s: Server): Promise<void> {
  const log = `${s.root}.log`;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (existsSync(log) && /all workers listening|"msg":"berth registry listening"/.test(readFileSync(log, 'utf8')))
      return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${s.name}: workers not listening within 60 s`);
}

async function berth(work: string, label: string, workers?: number): Promise<Server> {
  const env: Record<string, string> = { BERTH_LOG_LEVEL: 'info', BERTH_LOG_REQUESTS: 'false' };
  if (workers) env.BERTH_HTTP_WORKERS = String(workers);
  const s = await startBerthServer(work, label, env);
  await allListening(s);
  return s;
}

// ---------------------------------------------------------------------------------------------------------------

/** Node's own zstd (zlib, node ≥ 22.15) vs zstd-napi, level 3, one thread, on 64 MiB of ⅓ random ⅔ text. MB/s. */
function zstdRates(): { node?: number; napi: number } {
  const parts: Buffer[] = [];
  const text = Buffer.from('berth bench: some compressible text for zstd, line after line\n'.repeat(16_384));
  for (let i = 0; i < 21; i++) parts.push(i % 3 === 0 ? randomBytes(text.length) : text);
  const data = Buffer.concat(parts);
  const napi = createRequire(import.meta.url)('zstd-napi') as { compress(b: Buffer, p?: object): Buffer };
  const time = (fn: () => Buffer) => {
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) fn();
    return (3 * data.length) / 1e6 / ((performance.now() - t0) / 1000);
  };
  const z = zlib as unknown as {
    zstdCompressSync?: (b: Buffer, o: object) => Buffer;
    constants: Record<string, number>;
  };
  const node = z.zstdCompressSync
    ? time(() => z.zstdCompressSync!(data, { params: { [z.constants.ZSTD_c_compressionLevel]: 3 } }))
    : undefined;
  return { node, napi: time(() => napi.compress(data, { compressionLevel: 3 })) };
}

// ---------------------------------------------------------------------------------------------------------------

export const fastBench: Bench = {
  name: 'fast',
  async run(ctx: BenchContext) {
    const size = (ctx.quick ? 256 : 1024) * MiB;
    const label = ctx.quick ? '256 MiB' : '1 GiB';
    const loadSeconds = ctx.quick ? 3 : 8;
    const chunk = 16 * MiB;
    const work = await mkdtemp('/tmp/berth-bench-fast-');
    const started: Server[] = [];
    const rows: Row[] = [];
    try {
      const b = await berth(work, 'main');
      started.push(b);
      const dist = await startDistribution({ logLevel: 'warn' });
      const d: Server = { name: DIST, url: dist.url, pid: dist.pid, root: dist.root, stop: dist.stop };
      started.push(d);
      const pair = [b, d];
      const samples = new Map<string, Sample[]>();
      const add = (key: string, s: Sample) => samples.set(key, [...(samples.get(key) ?? []), s]);
      const med = (key: string, f: (s: Sample) => number) => median((samples.get(key) ?? []).map(f));
      const order = (round: number) => (round % 2 ? [...pair].reverse() : pair);
      const sync = () => sh('sync', []);

      // Transfers of one big blob, each round a fresh blob per server (so nothing is "already there").
      for (let round = 0; round < ctx.rounds; round++) {
        for (const s of order(round)) {
          const who = s === b ? 0 : 1;
          const seed = 1000 + round * 10 + who;
          const mono = blob(seed, size);
          const file = join(work, `mono-${seed}`);
          await writeBlobFile(mono, file);
          await sync();
          add(`push ${s.name}`, await measure(s, () => curlPush(s.url, 'fast/push', file, mono.digest)));
          await sync();
          add(`pull ${s.name}`, await measure(s, () => curlPull(s.url, 'fast/push', mono)));
          // crane: the same bytes as a layer of a one-layer image, pushed to another repository... of a fresh blob.
          const craneSpec = blob(seed + 5000, size);
          const craneFile = join(work, `crane-${seed}`);
          await writeBlobFile(craneSpec, craneFile);
          const dir = join(work, `layout-${seed}`);
          await layout(dir, craneFile, craneSpec);
          const crane = findExecutable('crane');
          if (crane) {
            const ref = `${new URL(s.url).host}/fast/crane:r${round}`;
            await sync();
            add(
              `crane push ${s.name}`,
              await measure(s, () => sh(crane, ['push', '--insecure', dir, ref]).then(() => {})),
            );
            add(
              `crane pull ${s.name}`,
              await measure(s, () =>
                sh('sh', [
                  '-c',
                  `"${crane}" blob --insecure "${ref.split(':r')[0]}@${craneSpec.digest}" > /dev/null`,
                ]).then(() => {}),
              ),
            );
          }
          await rm(dir, { recursive: true, force: true });
          await rm(craneFile, { force: true });
          // Chunked: split untimed, PATCH by PATCH.
          const chunkedSpec = blob(seed + 2000, size);
          await writeBlobFile(chunkedSpec, file);
          await sh('split', ['-b', String(chunk), '-d', '-a', '4', file, `${file}.part.`]);
          const parts = readdirSync(work)
            .filter((n) => n.startsWith(`mono-${seed}.part.`))
            .sort()
            .map((n) => join(work, n));
          await sync();
          add(
            `chunked ${s.name}`,
            await measure(s, () => curlChunked(s.url, 'fast/chunked', parts, chunkedSpec.digest)),
          );
          for (const p of [file, ...parts]) await rm(p, { force: true });
          ctx.log(
            `  round ${round + 1} ${s.name}: push ${samples.get(`push ${s.name}`)!.at(-1)!.seconds.toFixed(2)} s, pull ${samples.get(`pull ${s.name}`)!.at(-1)!.seconds.toFixed(2)} s, chunked ${samples.get(`chunked ${s.name}`)!.at(-1)!.seconds.toFixed(2)} s`,
          );
        }
      }
      const gib = size / GiB;
      const rate = (key: string) => size / 1e6 / med(key, (x) => x.seconds);
      const cpu = (key: string) => med(key, (x) => x.server) / gib;
      const ccpu = (key: string) => med(key, (x) => x.client) / gib;
      const pairRows = (what: string, key: string, target?: string, cpuTarget?: string) => {
        rows.push({
          name: `${what} ${label}, median of ${ctx.rounds}`,
          unit: 'MB/s',
          berth: rate(`${key} ${b.name}`),
          peer: rate(`${key} ${DIST}`),
          peerName: DIST,
          better: 'higher',
          target,
          note: `client CPU ${ccpu(`${key} ${b.name}`).toFixed(2)} / ${ccpu(`${key} ${DIST}`).toFixed(2)} s/GiB`,
        });
        rows.push({
          name: `  server CPU per GiB (${what})`,
          unit: 'CPU-s/GiB',
          berth: cpu(`${key} ${b.name}`),
          peer: cpu(`${key} ${DIST}`),
          peerName: DIST,
          better: 'lower',
          target: cpuTarget,
        });
      };
      pairRows('curl push (POST + PUT -T)', 'push', '≥ 2×');
      pairRows('curl chunked push (16 MiB PATCHes)', 'chunked', '≥ 2×');
      pairRows('curl pull', 'pull', '≥ 1×', '≥ 0.83× (within 1.2×)');
      if (samples.has(`crane push ${b.name}`)) {
        pairRows('crane push (one-layer image)', 'crane push');
        pairRows('crane blob (pull)', 'crane pull');
      }

      // Manifest GETs under hey, 64 connections.
      const layers = new Map<Server, string>();
      for (const s of pair) layers.set(s, await pushImage(s.url, 'fast/small', 'v1'));
      const manifestLoad = async (s: Server, seconds = loadSeconds) => {
        let r!: HeyResult;
        const m = await measure(s, async () => {
          r = await hey(
            ['-c', '64', '-z', `${seconds}s`, '-H', `Accept: ${OCI_MANIFEST}`],
            `${s.url}/v2/fast/small/manifests/v1`,
          );
        });
        if (r.errors) throw new Error(`${s.name}: failed manifest GETs under load`);
        return { rps: r.rps, per10k: (m.server / r.ok) * 10_000, client10k: (m.client / r.ok) * 10_000 };
      };
      const man = new Map<Server, Array<{ rps: number; per10k: number; client10k: number }>>();
      for (let round = 0; round < ctx.rounds; round++) {
        for (const s of order(round)) {
          if (round === 0) await manifestLoad(s, 1); // warm-up
          const r = await manifestLoad(s);
          man.set(s, [...(man.get(s) ?? []), r]);
          ctx.log(
            `  manifest GET ${s.name} round ${round + 1}: ${r.rps.toFixed(0)} req/s, ${r.per10k.toFixed(2)} CPU-s/10k`,
          );
        }
      }
      const mm = (s: Server, f: (x: { rps: number; per10k: number; client10k: number }) => number) =>
        median((man.get(s) ?? []).map(f));
      rows.push({
        name: `manifest GET by tag, hey 64 connections ${loadSeconds} s, median of ${ctx.rounds}`,
        unit: 'req/s',
        berth: mm(b, (x) => x.rps),
        peer: mm(d, (x) => x.rps),
        peerName: DIST,
        better: 'higher',
        target: '≥ 2.5×',
        note: `hey's CPU ${mm(b, (x) => x.client10k).toFixed(2)} / ${mm(d, (x) => x.client10k).toFixed(2)} s per 10k`,
      });
      rows.push({
        name: '  server CPU per 10,000 manifest GETs',
        unit: 'CPU-s',
        berth: mm(b, (x) => x.per10k),
        peer: mm(d, (x) => x.per10k),
        peerName: DIST,
        better: 'lower',
      });

      // Many concurrent pulls: 64 clients, 10 MiB blob.
      const ten = blob(9000, 10 * MiB);
      const tenFile = join(work, 'ten');
      await writeBlobFile(ten, tenFile);
      for (const s of pair) await curlPush(s.url, 'fast/ten', tenFile, ten.digest);
      const perClient = ctx.quick ? 4 : 10;
      const pulls = async (s: Server) => {
        let r!: HeyResult;
        const m = await measure(s, async () => {
          r = await hey(['-c', '64', '-n', String(64 * perClient)], `${s.url}/v2/fast/ten/blobs/${ten.digest}`);
        });
        if (r.errors || r.ok !== 64 * perClient) throw new Error(`${s.name}: failed concurrent pulls`);
        const bytes = r.ok * ten.size;
        return {
          mbs: bytes / 1e6 / r.total,
          p50: r.p50,
          p99: r.p99,
          cpu: m.server / (bytes / GiB),
          client: m.client / (bytes / GiB),
        };
      };
      type Pulls = Awaited<ReturnType<typeof pulls>>;
      const cp = new Map<Server, Pulls[]>();
      for (let round = 0; round < ctx.rounds; round++) {
        for (const s of order(round)) {
          const r = await pulls(s);
          cp.set(s, [...(cp.get(s) ?? []), r]);
          ctx.log(
            `  64 concurrent pulls ${s.name} round ${round + 1}: ${r.mbs.toFixed(0)} MB/s, p50 ${r.p50.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms`,
          );
        }
      }
      const cm = (s: Server, f: (x: Pulls) => number) => median((cp.get(s) ?? []).map(f));
      rows.push({
        name: `64 concurrent pulls × 10 MiB (hey, ${perClient} each), median of ${ctx.rounds}`,
        unit: 'MB/s',
        berth: cm(b, (x) => x.mbs),
        peer: cm(d, (x) => x.mbs),
        peerName: DIST,
        better: 'higher',
        target: '≥ 1×',
        note: `p50/p99 ms: berth ${cm(b, (x) => x.p50).toFixed(0)}/${cm(b, (x) => x.p99).toFixed(0)}, distribution ${cm(d, (x) => x.p50).toFixed(0)}/${cm(d, (x) => x.p99).toFixed(0)}`,
      });
      rows.push({
        name: '  server CPU per GiB (64 concurrent pulls)',
        unit: 'CPU-s/GiB',
        berth: cm(b, (x) => x.cpu),
        peer: cm(d, (x) => x.cpu),
        peerName: DIST,
        better: 'lower',
        note: `hey's CPU ${cm(b, (x) => x.client).toFixed(2)} / ${cm(d, (x) => x.client).toFixed(2)} s/GiB`,
      });

      // Many concurrent pushes: 32 curl processes, each POST + PUT -T of its own 10 MiB blob.
      const n = 32;
      const script = join(work, 'push-all.sh');
      await writeFile(
        script,
        `#!/bin/bash
# push-all.sh BASE REPO LIST: one background POST + PUT per "file digest" line, then wait for all.
set -u
push() {
  loc=$(curl -sS -X POST -D - -o /dev/null "$1/v2/$2/blobs/uploads/" | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p')
  case "$loc" in http*) ;; *) loc="$1$loc" ;; esac
  case "$loc" in *\\?*) sep='&' ;; *) sep='?' ;; esac
  code=$(curl -sS -H Expect: -X PUT -T "$3" -H 'Content-Type: application/octet-stream' -o /dev/null -w '%{http_code}' "$loc\${sep}digest=$4")
  [ "$code" = 201 ] || { echo "push $3: HTTP $code" >&2; return 1; }
}
pids=()
while read -r file digest; do push "$1" "$2" "$file" "$digest" & pids+=($!); done < "$3"
rc=0
for p in "\${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
`,
      );
      const cpush = new Map<Server, Sample[]>();
      for (let round = 0; round < ctx.rounds; round++) {
        for (const s of order(round)) {
          const list: string[] = [];
          for (let i = 0; i < n; i++) {
            const spec = blob(20_000 + round * 1000 + (s === b ? 0 : 500) + i, 10 * MiB);
            const f = join(work, `cp-${spec.seed}`);
            await writeBlobFile(spec, f);
            list.push(`${f} ${spec.digest}`);
          }
          const listFile = join(work, 'push-list');
          await writeFile(listFile, `${list.join('\n')}\n`);
          await sync();
          const m = await measure(s, () => sh('bash', [script, s.url, 'fast/many', listFile]).then(() => {}));
          cpush.set(s, [...(cpush.get(s) ?? []), m]);
          ctx.log(`  ${n} concurrent pushes ${s.name} round ${round + 1}: ${m.seconds.toFixed(2)} s`);
          for (const l of list) await rm(l.split(' ')[0], { force: true });
        }
      }
      const pushBytes = n * 10 * MiB;
      const pm = (s: Server, f: (x: Sample) => number) => median((cpush.get(s) ?? []).map(f));
      rows.push({
        name: `${n} concurrent pushes × 10 MiB (curl POST + PUT -T), median of ${ctx.rounds}`,
        unit: 'MB/s',
        berth: pushBytes / 1e6 / pm(b, (x) => x.seconds),
        peer: pushBytes / 1e6 / pm(d, (x) => x.seconds),
        peerName: DIST,
        better: 'higher',
        note: `server CPU-s/GiB ${(pm(b, (x) => x.server) / (pushBytes / GiB)).toFixed(2)} / ${(pm(d, (x) => x.server) / (pushBytes / GiB)).toFixed(2)}`,
      });

      // Scaling: berth with one worker vs two, same load; CPU of server and client per 10k requests / per GiB.
      ctx.log('scaling: berth http.workers 1 vs 2…');
      const one = await berth(work, 'workers-1', 1);
      started.push(one);
      const two = await berth(work, 'workers-2', 2);
      started.push(two);
      for (const s of [one, two]) {
        await pushImage(s.url, 'fast/small', 'v1');
        await curlPush(s.url, 'fast/ten', tenFile, ten.digest);
      }
      const scale = new Map<Server, { man: number[]; per10k: number[]; client10k: number[]; pull: number[] }>();
      for (let round = 0; round < ctx.rounds; round++) {
        for (const s of round % 2 ? [two, one] : [one, two]) {
          if (round === 0) await manifestLoad(s, 1);
          const m = await manifestLoad(s);
          const p = await pulls(s);
          const e = scale.get(s) ?? { man: [], per10k: [], client10k: [], pull: [] };
          e.man.push(m.rps);
          e.per10k.push(m.per10k);
          e.client10k.push(m.client10k);
          e.pull.push(p.mbs);
          scale.set(s, e);
        }
      }
      const sm = (s: Server, k: 'man' | 'per10k' | 'client10k' | 'pull') => median(scale.get(s)![k]);
      rows.push({
        name: 'scaling: manifest GET, http.workers 2 vs 1 (hey on the same 2 cores)',
        unit: 'req/s',
        berth: sm(two, 'man'),
        peer: sm(one, 'man'),
        peerName: 'berth, 1 worker',
        better: 'higher',
        note: `server CPU-s/10k ${sm(two, 'per10k').toFixed(2)} vs ${sm(one, 'per10k').toFixed(2)}; hey ${sm(two, 'client10k').toFixed(2)} vs ${sm(one, 'client10k').toFixed(2)}`,
      });
      rows.push({
        name: 'scaling: 64 concurrent pulls, http.workers 2 vs 1',
        unit: 'MB/s',
        berth: sm(two, 'pull'),
        peer: sm(one, 'pull'),
        peerName: 'berth, 1 worker',
        better: 'higher',
      });

      const z = zstdRates();
      rows.push({
        name: `zstd level 3, 64 MiB (⅓ random): node:zlib vs zstd-napi (${process.version})`,
        unit: 'MB/s',
        berth: z.node ?? NaN,
        peer: z.napi,
        peerName: 'zstd-napi',
        better: 'higher',
        note: z.node === undefined ? 'node:zlib has no zstd before 22.15' : 'measured only; builder/ picks',
      });

      for (const row of rows) {
        if (row.met !== undefined || !row.target || row.peer === undefined) continue;
        const want = Number(/([\d.]+)×/.exec(row.target)?.[1]);
        const x = row.better === 'lower' ? row.peer / row.berth : row.berth / row.peer;
        row.met = x >= want;
      }
      return rows;
    } finally {
      for (const s of started.reverse()) await s.stop().catch(() => {});
      await rm(work, { recursive: true, force: true });
    }
  },
};
