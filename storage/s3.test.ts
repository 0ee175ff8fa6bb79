// The S3 driver against a real S3 server (SeaweedFS, test/support/s3-server.ts): the shared driver suite, plus what only a
// shared bucket can show — an upload continued by another replica, server-side assembly, presigned GETs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { runDriverSuite } from './driver-suite.js';
import { NotFoundError, OffsetMismatchError, isSendable } from './driver.js';
import { S3Driver, S3StorageError, type S3DriverOptions } from './s3.js';
import { startS3Server, S3_PEER, type S3Server } from '../test/support/s3-server.js';
import { findExecutable } from '../test/support/peers.js';
import { faultProxy, type Fault } from '../test/support/s3-fault-proxy.js';

const MiB = 1024 * 1024;
const haveServer = findExecutable(S3_PEER) !== undefined;
if (!haveServer && process.env.CI === 'true')
  throw new Error('missing peer: weed (SeaweedFS); install it with `bash .ci/install-s3.sh`');
const skip = haveServer ? false : 'missing peer: weed (SeaweedFS); install it with `bash .ci/install-s3.sh`';

let server: S3Server | undefined;
let starting: Promise<S3Server> | undefined;
/** One server for the whole file, started on first use. */
function s3(): Promise<S3Server> {
  return (starting ??= startS3Server().then((s) => (server = s)));
}
after(async () => server?.stop());

function options(s: S3Server, extra: Partial<S3DriverOptions> = {}): S3DriverOptions {
  return {
    bucket: s.bucket,
    endpoint: s.endpoint,
    region: s.region,
    accessKeyId: s.accessKeyId,
    secretAccessKey: s.secretAccessKey,
    forcePathStyle: true,
    ...extra,
  };
}

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

if (haveServer) {
  runDriverSuite('s3', async () => {
    const driver = new S3Driver(options(await s3(), { prefix: 'suite-root' }));
    return { driver };
  });
  // As `berth serve` builds it: told which paths are appendable (the suite appends only to `…/data`).
  runDriverSuite('s3-hinted', async () => {
    const driver = new S3Driver(options(await s3(), { prefix: 'suite-root' }), {
      appendable: (p) => p.endsWith('/data'),
    });
    return { driver };
  });
}

describe('S3 driver on a shared bucket', { skip }, () => {
  let a: S3Driver;
  let b: S3Driver;
  before(async () => {
    const s = await s3();
    // Two "replicas": separate clients, no shared memory, same bucket and prefix.
    a = new S3Driver(options(s, { prefix: 'replicas', blobGet: 'redirect' }));
    b = new S3Driver(options(s, { prefix: 'replicas' }));
  });
  after(async () => {
    await a.delete('t');
    await a.close();
    await b.close();
  });

  it('an upload appended through two replicas in 1 MiB and 7 MiB chunks moves into one blob', async () => {
    const chunks = [1, 7, 1, 1, 7, 1, 7, 7, 1].map((n) => randomBytes(n * MiB));
    let offset = 0;
    for (const [i, chunk] of chunks.entries()) {
      const d = i % 2 ? b : a;
      offset = await d.append('t/up/data', offset, Readable.from([chunk]));
      assert.equal(
        (await (i % 2 ? a : b).stat('t/up/data'))?.size,
        offset,
        'the other replica sees the new size at once',
      );
    }
    const all = Buffer.concat(chunks);
    assert.equal(offset, all.length);
    await assert.rejects(a.append('t/up/data', offset - 1, Readable.from([Buffer.from('x')])), OffsetMismatchError);
    // Readable while in progress, from either replica, whole and in ranges that straddle segments.
    assert.deepEqual(await readAll(await b.read('t/up/data')), all);
    assert.deepEqual(
      await readAll(await a.read('t/up/data', { start: MiB - 3, end: 8 * MiB + 2 })),
      all.subarray(MiB - 3, 8 * MiB + 3),
    );
    await b.move('t/up/data', 't/blobs/final');
    assert.equal(await a.stat('t/up/data'), undefined);
    assert.equal((await a.stat('t/blobs/final'))?.size, all.length);
    const back = await readAll(await a.read('t/blobs/final'));
    assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(all).digest('hex'));
    assert.deepEqual(await a.list('t/up'), [], 'no staging state is left behind');
  });

  it('a 100 MiB blob pushed in 16 MiB chunks, then moved, costs a bounded number of S3 requests', async (t) => {
    const counts: Record<string, number> = {};
    a.s3.middlewareStack.add(
      (next, ctx) => async (args) => {
        const name = ctx.commandName ?? '?';
        counts[name] = (counts[name] ?? 0) + 1;
        return next(args);
      },
      { step: 'initialize', name: 'berthCountRequests' },
    );
    try {
      const blob = randomBytes(100 * MiB);
      let offset = 0;
      for (let i = 0; i < blob.length; i += 16 * MiB)
        offset = await a.append('t/req/data', offset, Readable.from([blob.subarray(i, i + 16 * MiB)]));
      await a.move('t/req/data', 't/req/blob');
      const total = Object.values(counts).reduce((x, y) => x + y, 0);
      t.diagnostic(`S3 requests for 7 appends + move: ${total} ${JSON.stringify(counts)}`);
      // Per append: read state, PUT segment, swap state; the move: read state, 7 ranged copies in one multipart
      // upload, delete state and segments. Nothing proportional to the bytes beyond one request per 16 MiB.
      assert.ok(total <= 36, `${total} requests`);
      assert.equal(counts.UploadPartCopyCommand, 7);
      assert.equal((await b.stat('t/req/blob'))?.size, blob.length);
    } finally {
      a.s3.middlewareStack.remove('berthCountRequests');
    }
  });

  it('with appendable hints, a lookup costs one request, in the namespace that can hold the object', async () => {
    const hinted = new S3Driver(options(await s3(), { prefix: 'replicas' }), {
      appendable: (p) => p.endsWith('/data'),
    });
    const counts: Record<string, number> = {};
    hinted.s3.middlewareStack.add(
      (next, ctx) => async (args) => {
        counts[ctx.commandName ?? '?'] = (counts[ctx.commandName ?? '?'] ?? 0) + 1;
        return next(args);
      },
      { step: 'initialize', name: 'berthCountRequests' },
    );
    const total = () => Object.values(counts).reduce((x, y) => x + y, 0);
    const reset = () => Object.keys(counts).forEach((k) => delete counts[k]);
    try {
      for (const missing of ['t/hint/blob', 't/hint/up/data']) {
        reset();
        assert.equal(await hinted.stat(missing), undefined);
        assert.equal(await hinted.get(missing), undefined);
        assert.equal(total(), 2, `${missing}: ${JSON.stringify(counts)}`);
      }
      await hinted.append('t/hint/up/data', 0, Readable.from([Buffer.from('abc')]));
      reset();
      assert.equal((await hinted.stat('t/hint/up/data'))?.size, 3);
      assert.deepEqual(counts, { GetObjectCommand: 1 }, 'an upload is found by its state alone');
      await assert.rejects(
        hinted.append('t/hint/blob', 0, Readable.from([Buffer.from('x')])),
        /not an appendable path/,
      );
      await assert.rejects(hinted.move('t/hint/missing/data', 't/hint/x'), NotFoundError);
      await hinted.move('t/hint/up/data', 't/hint/blob');
      assert.equal((await b.get('t/hint/blob'))?.toString(), 'abc', 'an unhinted replica reads it too');
    } finally {
      await hinted.close();
    }
  });

  it('list shows appendable objects beside plain ones', async () => {
    await a.append('t/ls/upload', 0, Readable.from([Buffer.from('abc')]));
    await a.put('t/ls/plain', 'x');
    assert.deepEqual(await b.list('t/ls'), ['plain', 'upload']);
    await b.delete('t/ls/upload');
    assert.equal(await a.stat('t/ls/upload'), undefined);
    assert.deepEqual(await a.list('t/ls'), ['plain']);
  });

  it('putStream verifies sha256 and size, and stores nothing on a mismatch', async () => {
    const data = randomBytes(20 * MiB + 5); // multipart
    const wrong = createHash('sha256').update('other').digest('hex');
    await assert.rejects(a.putStream('t/sha/big', Readable.from([data]), { sha256: wrong }), /sha256/);
    await assert.rejects(
      a.putStream('t/sha/small', Readable.from([data.subarray(0, 1000)]), { sha256: wrong }),
      /sha256/,
    );
    await assert.rejects(
      a.putStream('t/sha/size', Readable.from([data.subarray(0, 1000)]), { size: 999 }),
      /announced/,
    );
    for (const k of ['big', 'small', 'size']) assert.equal(await a.stat(`t/sha/${k}`), undefined);
    const sha256 = createHash('sha256').update(data).digest('hex');
    assert.equal(await a.putStream('t/sha/big', Readable.from([data]), { sha256, size: data.length }), data.length);
    assert.equal((await b.stat('t/sha/big'))?.size, data.length);
  });

  it('redirectUrl is a presigned GET a plain fetch can use (redirect mode only)', async () => {
    const data = randomBytes(100_000);
    await a.put('t/blobs/presigned', data);
    const url = await a.redirectUrl('t/blobs/presigned', { expiresIn: 60 });
    assert.ok(url);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), data);
    assert.equal(await b.redirectUrl('t/blobs/presigned', { expiresIn: 60 }), undefined, 'proxy mode streams instead');
  });

  it('a blob read for relaying goes through the pooled presigned GET (Sendable); relayReads: false keeps the SDK stream', async () => {
    const data = randomBytes(3 * MiB + 5);
    await a.put('t/blobs/relayed', data);
    const body = await b.read('t/blobs/relayed', { relay: true });
    assert.ok(isSendable(body), 'proxy mode relays blob GETs');
    assert.deepEqual(await readAll(body), data);
    const plain = new S3Driver(options(await s3(), { prefix: 'replicas', relayReads: false }));
    try {
      const sdk = await plain.read('t/blobs/relayed', { relay: true });
      assert.equal(isSendable(sdk), false);
      assert.deepEqual(await readAll(sdk), data);
    } finally {
      await plain.close();
    }
    // Only blob GETs ask for it: small reads (manifests, links, upload state) stay on the SDK.
    assert.equal(isSendable(await b.read('t/blobs/relayed')), false);
  });

  it('S3 errors are one clean line', async () => {
    const s = await s3();
    const wrong = new S3Driver(options(s, { secretAccessKey: 'not-the-secret', maxAttempts: 1 }));
    try {
      const e = await wrong.put('t/x', 'x').then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.ok(e instanceof S3StorageError, String(e));
      assert.doesNotMatch(e.message, /\n|<\?xml|<Error>/);
      assert.match(e.message, /check storage\.s3 credentials/);
    } finally {
      await wrong.close();
    }
    const nobucket = new S3Driver(options(s, { bucket: 'no-such-bucket-berth', maxAttempts: 1 }));
    try {
      await assert.rejects(nobucket.get('x/y'), /NoSuchBucket.*create the bucket/);
    } finally {
      await nobucket.close();
    }
    assert.throws(() => new S3Driver({ bucket: '' }), /bucket is required/);
    assert.throws(() => new S3Driver({ bucket: 'b', accessKeyId: 'x' }), /both accessKeyId and secretAccessKey/);
  });
});

describe('S3 driver under faults', { skip }, () => {
  it('retries SlowDown, resets, timeouts and lost responses; data stays exact', async () => {
    const s = await s3();
    // Every 3rd request fails in turn with one of the faults; appends' state swaps also lose their response.
    const kinds: Fault[] = ['slowdown', 'reset', 'slow', 'lost'];
    let k = 0;
    const proxy = await faultProxy(s.endpoint, (n, req) => {
      if (n % 3 !== 0) return undefined;
      const f = kinds[k++ % kinds.length];
      // "lost" only for writes whose replay is harmless or detected (state swaps, part uploads), like a real network.
      return f === 'lost' && req.method !== 'PUT' ? 'slowdown' : f;
    });
    const d = new S3Driver(
      options(s, { endpoint: proxy.endpoint, prefix: 'faults', requestTimeoutMs: 1000, maxAttempts: 8 }),
    );
    try {
      const chunks = [randomBytes(3 * MiB), randomBytes(6 * MiB), randomBytes(100), randomBytes(2 * MiB)];
      let offset = 0;
      for (const c of chunks) offset = await d.append('up/data', offset, Readable.from([c]));
      const all = Buffer.concat(chunks);
      assert.deepEqual(await readAll(await d.read('up/data')), all);
      await d.move('up/data', 'blob');
      assert.deepEqual(await readAll(await d.read('blob')), all);
      const big = randomBytes(40 * MiB);
      await d.putStream('big', Readable.from([big]), { sha256: createHash('sha256').update(big).digest('hex') });
      assert.deepEqual(await d.get('big'), big);
      for (const f of kinds) assert.ok(proxy.faults.includes(f), `fault ${f} was injected`);
    } finally {
      await d.delete('x').catch(() => {});
      await d.close();
      await proxy.close();
    }
    const clean = new S3Driver(options(s, { prefix: 'faults' }));
    await clean.delete('up');
    await clean.delete('blob');
    await clean.delete('big');
    await clean.close();
  });

  it('a chunk of known length streams in one PutObject; refused before its body it is retried, cut mid-body the append changes nothing', async () => {
    const s = await s3();
    // Faults for the uploads of segments only, in turn: refused (before 100 Continue), passed, cut after 1 MiB.
    const plan: Fault[] = ['slowdown', undefined, 'cut'];
    const writes: string[] = [];
    const proxy = await faultProxy(s.endpoint, (_n, req) => {
      if (req.method !== 'PUT' && req.method !== 'POST') return undefined;
      writes.push(`${req.method} ${req.url}`);
      return req.method === 'PUT' && req.url?.includes('/.seg/') ? plan.shift() : undefined;
    });
    const d = new S3Driver(options(s, { endpoint: proxy.endpoint, prefix: 'streamed', maxAttempts: 3 }));
    try {
      const first = randomBytes(20 * MiB);
      writes.length = 0;
      assert.equal(await d.append('up/data', 0, Readable.from([first]), { size: first.length }), first.length);
      const bodyWrites = writes.filter((w) => w.includes('/.seg/'));
      assert.equal(bodyWrites.length, 2, `one PutObject, sent again after the refusal: ${bodyWrites.join(', ')}`);
      assert.ok(
        bodyWrites.every((w) => !/partNumber|uploads/.test(w)),
        'no multipart upload',
      );

      const second = randomBytes(6 * MiB);
      const e = await d.append('up/data', first.length, Readable.from([second]), { size: second.length }).then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.ok(e instanceof S3StorageError && e.retryable, `a clean, retryable error: ${e}`);
      assert.equal((await d.stat('up/data'))?.size, first.length, 'the failed append changed nothing');
      assert.equal(
        await d.append('up/data', first.length, Readable.from([second]), { size: second.length }),
        first.length + second.length,
      );

      // A body that is shorter or longer than announced stores nothing.
      const at = first.length + second.length;
      await assert.rejects(
        d.append('up/data', at, Readable.from([randomBytes(5 * MiB)]), { size: 6 * MiB }),
        /ended after 5242880 of 6291456 bytes/,
      );
      await assert.rejects(
        d.append('up/data', at, Readable.from([randomBytes(7 * MiB)]), { size: 6 * MiB }),
        /longer than the announced 6291456 bytes/,
      );
      assert.equal((await d.stat('up/data'))?.size, at);
      // A staged small chunk is rolled into the next streamed one.
      const small = randomBytes(1000);
      const third = randomBytes(5 * MiB);
      await d.append('up/data', at, Readable.from([small]), { size: small.length });
      await d.append('up/data', at + small.length, Readable.from([third]), { size: third.length });
      const all = Buffer.concat([first, second, small, third]);
      assert.deepEqual(await readAll(await d.read('up/data')), all);
      await d.move('up/data', 'blob');
      assert.deepEqual(await readAll(await d.read('blob')), all);
      assert.deepEqual(plan, [], 'every planned fault was injected');
    } finally {
      await d.delete('up').catch(() => {});
      await d.delete('blob').catch(() => {});
      await d.close();
      await proxy.close();
    }
  });

  /** `data` stored as `blob` under `prefix`; `run` gets a driver that reaches S3 through a fault proxy on `plan`. */
  async function behindFaults(
    prefix: string,
    data: Buffer,
    plan: Parameters<typeof faultProxy>[1],
    run: (d: S3Driver, proxy: Awaited<ReturnType<typeof faultProxy>>) => Promise<void>,
    extra: Partial<S3DriverOptions> = {},
  ): Promise<void> {
    const s = await s3();
    const setup = new S3Driver(options(s, { prefix }));
    await setup.put('blob', data);
    const proxy = await faultProxy(s.endpoint, plan);
    const d = new S3Driver(options(s, { endpoint: proxy.endpoint, prefix, ...extra }));
    try {
      await run(d, proxy);
    } finally {
      await d.close();
      await proxy.close();
      await setup.delete('blob');
      await setup.close();
    }
  }

  it('a relayed blob GET refused before its head (SlowDown, reset, slow) is answered through the SDK, exact', async () => {
    const data = randomBytes(5 * MiB);
    const kinds: Fault[] = ['slowdown', 'reset', 'lost'];
    let k = 0;
    // Every relayed GET (a presigned URL: X-Amz-Signature in the query) fails once; the SDK's GETs go through.
    const plan = (_n: number, req: IncomingMessage) =>
      req.url?.includes('X-Amz-Signature=') ? kinds[k++ % kinds.length] : undefined;
    await behindFaults(
      'faults-relay',
      data,
      plan,
      async (d, proxy) => {
        for (let i = 0; i < kinds.length; i++) {
          const body = await d.read('blob', { relay: true });
          assert.equal(isSendable(body), false, 'the relay gave way to the SDK');
          assert.deepEqual(await readAll(body), data);
        }
        assert.deepEqual(proxy.faults.filter(Boolean), kinds);
      },
      { requestTimeoutMs: 2000 },
    );
  });

  it('a bucket that refuses presigned GETs (403) gets SDK GETs only, not two requests per blob GET', async () => {
    const data = randomBytes(64 * 1024);
    let presigned = 0;
    const plan = (_n: number, req: IncomingMessage): Fault =>
      req.url?.includes('X-Amz-Signature=') ? (presigned++, 'forbidden') : undefined;
    await behindFaults('faults-refused', data, plan, async (d) => {
      for (let i = 0; i < 3; i++) assert.deepEqual(await readAll(await d.read('blob', { relay: true })), data);
      assert.equal(presigned, 1, 'after one refusal the relay pauses');
    });
  });

  it('gives up with a clean, retryable error when S3 keeps failing', async () => {
    const s = await s3();
    const proxy = await faultProxy(s.endpoint, () => 'slowdown');
    const d = new S3Driver(options(s, { endpoint: proxy.endpoint, maxAttempts: 2 }));
    try {
      const e = await d.get('x/y').then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.ok(e instanceof S3StorageError, String(e));
      assert.equal(e.retryable, true);
      assert.match(e.message, /^s3 GetObject .*SlowDown \(HTTP 503\): Please reduce your request rate\.$/);
      assert.equal(proxy.faults.length, 2, 'the SDK retried once (maxAttempts 2)');
    } finally {
      await d.close();
      await proxy.close();
    }
  });
});
