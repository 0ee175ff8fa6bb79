// `http.workers` (registry/cluster.ts): one `berth serve`, several processes on one port. Every request here opens
// a new connection (agent: false), so the primary's round robin spreads consecutive requests over the workers; the
// request logs (each line names its worker) show that they did.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { hash } from './support/auth-fixtures.js';
import { startBerth, waitForLog, type Berth } from './support/berth.js';
import { startCountingProxy } from './support/counting-proxy.js';

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request on its own connection. */
function fresh(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Buffer,
  timeoutMs = 60_000,
) {
  const url = new URL(path, base);
  return new Promise<Res>((resolve, reject) => {
    const req = request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.end(body);
  });
}

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The worker slot of each request log line, by method and path. */
function servedBy(berth: Berth, match: (method: string, path: string) => boolean): Set<number> {
  const slots = new Set<number>();
  for (const line of berth.logs().split('\n')) {
    if (!line.includes('"msg":"request"')) continue;
    const l = JSON.parse(line) as { worker: number; method: string; path: string };
    if (match(l.method, l.path)) slots.add(l.worker);
  }
  return slots;
}

/** How many request lines matching `match` the server has logged so far. */
function countRequests(berth: Berth, match: (method: string, path: string) => boolean): number {
  return berth
    .logs()
    .split('\n')
    .filter((line) => line.includes('"msg":"request"'))
    .map((line) => JSON.parse(line) as { method: string; path: string })
    .filter((l) => match(l.method, l.path)).length;
}

/** The process ids of `pid`'s children (the cluster's workers). */
function children(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** `berth serve` with two workers, once both listen. */
async function start2(t: TestContext, env: Record<string, string> = {}, config?: string): Promise<Berth> {
  const berth = await startBerth(t, { env: { ...WORKERS2, ...env }, config });
  await waitForLog(berth.logs, /all workers listening/);
  return berth;
}

const WORKERS2 = { BERTH_HTTP_WORKERS: '2', BERTH_LOG_LEVEL: 'info', BERTH_LOG_REQUESTS: 'true' };
const QUIET = { BERTH_LOG_REQUESTS: 'false' };

test('workers=2: an upload started on one connection continues and completes on others (both workers)', async (t) => {
  const berth = await start2(t);
  assert.equal(children(berth.pid).length, 2, 'the primary runs two workers');
  const parts = [Buffer.alloc(300_000, 1), Buffer.alloc(200_000, 2), Buffer.alloc(100_000, 3)];
  const all = Buffer.concat(parts);
  const digest = digestOf(all);
  const post = await fresh(berth.url, 'POST', '/v2/w/upload/blobs/uploads/');
  assert.equal(post.status, 202);
  let location = String(post.headers.location);
  let offset = 0;
  for (const part of parts.slice(0, 2)) {
    const res = await fresh(
      berth.url,
      'PATCH',
      location,
      {
        'Content-Type': 'application/octet-stream',
        'Content-Range': `${offset}-${offset + part.length - 1}`,
        'Content-Length': String(part.length),
      },
      part,
    );
    assert.equal(res.status, 202, res.body.toString());
    offset += part.length;
    assert.equal(res.headers.range, `0-${offset - 1}`);
    location = String(res.headers.location);
  }
  const status = await fresh(berth.url, 'GET', location);
  assert.equal(status.status, 204);
  assert.equal(status.headers.range, `0-${offset - 1}`, 'every worker sees the same session state');
  const put = await fresh(
    berth.url,
    'PUT',
    `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`,
    { 'Content-Type': 'application/octet-stream', 'Content-Length': String(parts[2].length) },
    parts[2],
  );
  assert.equal(put.status, 201, put.body.toString());
  const got = await fresh(berth.url, 'GET', `/v2/w/upload/blobs/${digest}`);
  assert.equal(got.status, 200);
  assert.equal(digestOf(got.body), digest);
  const slots = servedBy(berth, (_, path) => path.startsWith('/v2/w/upload/blobs/uploads'));
  assert.deepEqual([...slots].sort(), [0, 1], 'the session requests were served by both workers');
});

/** One raw HTTP/1.1 request on its own connection, written in `pieces` (a request line split across packets). */
function rawRequest(base: string, pieces: Buffer[], gapMs = 30): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, async () => {
      for (const p of pieces) {
        socket.write(p);
        await new Promise((r) => setTimeout(r, gapMs));
      }
    });
    const got: Buffer[] = [];
    socket.on('data', (c) => {
      got.push(c);
      // The whole answer (no body: 202/201 answers of the upload routes are empty), then the connection goes.
      if (Buffer.concat(got).includes('\r\n\r\n')) socket.end();
    });
    socket.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    socket.on('error', reject);
  });
}

test('workers=2: every chunk of a session goes to one worker, however many connections: nothing is hashed twice', async (t) => {
  const berth = await start2(t);
  const scrapeRehashed = async () => {
    const metrics = (await fresh(berth.url, 'GET', '/metrics')).body.toString();
    const line = metrics.split('\n').find((l) => l.startsWith('berth_upload_rehashed_bytes_total '));
    assert.ok(line, 'the metric is exported');
    return Number(line.split(' ')[1]);
  };
  // Bodies sent right behind their headers: the first bytes a worker reads hold part of the body too, which must
  // reach the session's worker intact (the digest check below).
  const parts = Array.from({ length: 6 }, (_, i) => Buffer.alloc(700_000 + i * 1000, i + 1));
  for (let i = 0; i < parts.length; i++) parts[i]!.write(`chunk ${i}`, 0);
  const all = Buffer.concat(parts);
  const digest = digestOf(all);
  const post = await fresh(berth.url, 'POST', '/v2/w/affinity/blobs/uploads/');
  assert.equal(post.status, 202);
  let location = String(post.headers.location);
  let offset = 0;
  for (const [i, part] of parts.entries()) {
    const headers = {
      'Content-Type': 'application/octet-stream',
      'Content-Range': `${offset}-${offset + part.length - 1}`,
      'Content-Length': String(part.length),
    };
    if (i === 3) {
      // The request line arrives in two packets: no route can be read from the first; served wherever it landed.
      const head = `PATCH ${location} HTTP/1.1\r\nHost: x\r\n${Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}Connection: close\r\n\r\n`;
      const answer = await rawRequest(berth.url, [Buffer.from(head.slice(0, 4)), Buffer.from(head.slice(4)), part]);
      assert.match(answer, /^HTTP\/1\.1 202 /, answer);
      location = /^location: (\S+)/im.exec(answer)![1]!;
    } else {
      const res = await fresh(berth.url, 'PATCH', location, headers, part);
      assert.equal(res.status, 202, res.body.toString());
      location = String(res.headers.location);
    }
    offset += part.length;
  }
  const put = await fresh(berth.url, 'PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`);
  assert.equal(put.status, 201, put.body.toString());
  const got = await fresh(berth.url, 'GET', `/v2/w/affinity/blobs/${digest}`);
  assert.equal(digestOf(got.body), digest, 'every byte arrived, in order');
  const id = location.split('/').pop()!.split('?')[0];
  const chunkWorkers = servedBy(berth, (m, p) => (m === 'PATCH' || m === 'PUT') && p.endsWith(id!));
  // The split request line may have landed on the other worker; every other chunk and the PUT went to one.
  assert.ok(chunkWorkers.size <= 2);
  const lines = berth
    .logs()
    .split('\n')
    .filter((l) => l.includes('"msg":"request"') && l.includes(id!) && /"method":"(PATCH|PUT)"/.test(l))
    .map((l) => JSON.parse(l) as { worker: number });
  assert.equal(lines.length, parts.length + 1);
  const routed = lines.filter((_, i) => i !== 3).map((l) => l.worker);
  assert.equal(new Set(routed).size, 1, `chunks and PUT on one worker: ${routed.join(',')}`);
  // Only the split chunk (if it landed elsewhere) can have been hashed from storage: never the others.
  const rehashed = await scrapeRehashed();
  const splitElsewhere = lines[3]!.worker !== routed[0];
  assert.ok(
    splitElsewhere ? rehashed <= all.length - parts[0]!.length : rehashed === 0,
    `rehashed ${rehashed} bytes (split chunk on worker ${lines[3]!.worker}, the others on ${routed[0]})`,
  );
  if (!splitElsewhere) assert.equal(rehashed, 0);
});

test('workers=2: /metrics on any worker shows the sum over the workers', async (t) => {
  const berth = await start2(t);
  const scrape = async () => {
    const metrics = (await fresh(berth.url, 'GET', '/metrics')).body.toString();
    const line = metrics
      .split('\n')
      .find((l) => l.startsWith('berth_http_requests_total{route="base",method="GET",status="200"}'));
    assert.ok(line, metrics.slice(0, 2000));
    const cpu = metrics.split('\n').find((l) => l.startsWith('berth_process_cpu_seconds_total '));
    assert.ok(cpu && Number(cpu.split(' ')[1]) > 0, 'default metrics are aggregated too');
    return Number(line.split(' ').pop());
  };
  const before = await scrape();
  const n = 10;
  for (let i = 0; i < n; i++) assert.equal((await fresh(berth.url, 'GET', '/v2/')).status, 200);
  const after = await scrape();
  assert.equal(after - before, n, 'every request counted, whichever worker served it or the scrape');
  await waitForLog(berth.logs, /"path":"\/metrics"[\s\S]*"path":"\/metrics"/);
  assert.deepEqual([...servedBy(berth, (m, p) => m === 'GET' && p === '/v2/')].sort(), [0, 1]);
  assert.deepEqual([...servedBy(berth, (m, p) => m === 'GET' && p === '/metrics')].sort(), [0, 1]);
});

test('workers=2: failed logins count on every worker; the limit holds across them', async (t) => {
  const berth = await start2(
    t,
    {},
    `auth:
  mode: htpasswd
  users: [ { name: alice, passwordHash: "${hash('right-pw')}" } ]
  acl: [ { repositories: ["**"], subjects: ["user:alice"], actions: [pull, push] } ]
  rateLimit: { maxFailures: 4 }
`,
  );
  const basic = (pw: string) => ({ Authorization: `Basic ${Buffer.from(`alice:${pw}`).toString('base64')}` });
  assert.equal((await fresh(berth.url, 'GET', '/v2/', basic('right-pw'))).status, 200);
  for (let i = 0; i < 4; i++) assert.equal((await fresh(berth.url, 'GET', '/v2/', basic(`guess-${i}`))).status, 401);
  assert.deepEqual(
    [...servedBy(berth, (m, p) => m === 'GET' && p === '/v2/')].sort(),
    [0, 1],
    'the guesses went to both workers (each saw two: below the limit on its own)',
  );
  for (let i = 0; i < 2; i++) {
    const blocked = await fresh(berth.url, 'GET', '/v2/', basic('right-pw'));
    assert.equal(blocked.status, 429, `attempt ${i + 1} after 4 failures is throttled on whichever worker`);
    assert.ok(Number(blocked.headers['retry-after']) > 0);
  }
});

test('workers=2: kill -9 of a worker: the primary restarts it and the server keeps serving', async (t) => {
  const berth = await start2(t, QUIET);
  const before = children(berth.pid);
  assert.equal(before.length, 2);
  const blob = Buffer.from('survives a worker crash');
  const digest = digestOf(blob);
  const push = await fresh(
    berth.url,
    'POST',
    `/v2/w/crash/blobs/uploads/?digest=${digest}`,
    { 'Content-Type': 'application/octet-stream', 'Content-Length': String(blob.length) },
    blob,
  );
  assert.equal(push.status, 201);
  process.kill(before[0], 'SIGKILL');
  // Requests racing the kill may be lost with the dead worker's connections (a client retries them); within a few
  // seconds the surviving worker answers everything.
  let answered = 0;
  for (let i = 0; i < 40 && answered < 10; i++) {
    const res = await fresh(berth.url, 'GET', `/v2/w/crash/blobs/${digest}`, {}, undefined, 5_000).catch(
      () => undefined,
    );
    if (res?.status === 200 && res.body.toString() === blob.toString()) answered++;
    else if (i >= 20) assert.fail(`request ${i + 1} after the kill failed: ${res?.status ?? 'no answer'}`);
  }
  assert.equal(answered, 10);
  const deadline = Date.now() + 20_000;
  let now = children(berth.pid);
  while ((now.length < 2 || now.includes(before[0])) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    now = children(berth.pid);
  }
  assert.equal(now.length, 2, 'a replacement worker was started');
  assert.ok(!now.includes(before[0]) && now.includes(before[1]));
  assert.match(berth.logs(), /worker exited; restarting it/);
  await waitForLog(berth.logs, /worker restarted and listening/);
  // The replacement takes its turn in the round robin once it listens: every request still succeeds.
  for (let i = 0; i < 10; i++) assert.equal((await fresh(berth.url, 'GET', `/v2/w/crash/blobs/${digest}`)).status, 200);
  // SIGTERM to the primary stops it and its workers.
  const workers = children(berth.pid);
  await berth.stop();
  for (const p of workers) assert.throws(() => process.kill(p, 0), 'no worker outlives the primary');
});

test('workers=2: concurrent pulls through the pull-through cache, spread over both workers, fetch a blob once', async (t) => {
  const upstream = await startBerth(t, { env: { BERTH_HTTP_WORKERS: '1' } });
  const counting = await startCountingProxy(upstream.url);
  t.after(() => counting.stop());
  const data = Buffer.alloc(24 << 20);
  for (let i = 0; i < data.length; i += 4096) data.writeUInt32BE(i, i);
  const digest = digestOf(data);
  const push = await fresh(
    upstream.url,
    'POST',
    `/v2/team/big/blobs/uploads/?digest=${digest}`,
    { 'Content-Type': 'application/octet-stream', 'Content-Length': String(data.length) },
    data,
  );
  assert.equal(push.status, 201);
  const mirror = await start2(
    t,
    {},
    JSON.stringify({
      proxy: {
        upstreams: [{ name: 'up', url: counting.url, prefix: 'up', timeout: '10s', allowPrivateNetworks: true }],
      },
    }),
  );
  const got = await Promise.all(
    Array.from({ length: 8 }, () => fresh(mirror.url, 'GET', `/v2/up/team/big/blobs/${digest}`)),
  );
  for (const r of got) {
    assert.equal(r.status, 200);
    assert.equal(digestOf(r.body), digest, 'every client got the whole, right blob');
  }
  // Request lines are logged asynchronously by each worker: wait (briefly) until all eight are in.
  const blobGets = (m: string, p: string) => m === 'GET' && p.includes('/blobs/');
  for (let i = 0; i < 100 && countRequests(mirror, blobGets) < 8; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual([...servedBy(mirror, blobGets)].sort(), [0, 1]);
  assert.equal(counting.count('GET', '/blobs/sha256:'), 1, 'the upstream was asked for the blob once');
});

test('workers=2: a push or delete on one worker shows at once in the UI of the other (ui.listingTtl: 1h)', async (t) => {
  const berth = await start2(t, QUIET, 'ui: { listingTtl: 1h }\n');
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  const push = async (tag: string) => {
    const blob = await fresh(berth.url, 'POST', `/v2/team/app/blobs/uploads/?digest=${digestOf(config)}`, {}, config);
    assert.equal(blob.status, 201);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: digestOf(config),
          size: config.length,
        },
        layers: [],
        annotations: { tag },
      }),
    );
    const put = await fresh(
      berth.url,
      'PUT',
      `/v2/team/app/manifests/${tag}`,
      { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      manifest,
    );
    assert.equal(put.status, 201, put.body.toString());
  };
  const tags = async () => {
    const res = await fresh(berth.url, 'GET', '/v2/_berth/api/v1/repositories/team/app/tags?sort=name');
    assert.equal(res.status, 200, res.body.toString());
    return (JSON.parse(res.body.toString()).items as Array<{ tag: string }>).map((i) => i.tag);
  };
  /** Both workers (consecutive connections alternate) show `want`, within a moment for the message to arrive. */
  const everywhere = async (want: string[]) => {
    const deadline = Date.now() + 2_000;
    for (let seen = 0; seen < 4; ) {
      const got = await tags();
      if (JSON.stringify(got) === JSON.stringify(want)) seen++;
      else if (Date.now() > deadline) assert.deepEqual(got, want, 'a worker kept its listing');
      else seen = 0;
    }
  };
  await push('v1');
  await everywhere(['v1']); // both workers now hold the listing, for an hour
  await push('v2');
  await everywhere(['v1', 'v2']);
  assert.equal((await fresh(berth.url, 'DELETE', '/v2/team/app/manifests/v1')).status, 202);
  await everywhere(['v2']);
});
