// storage/http-relay.ts against real node HTTP(S) servers: exact bytes both ways (sendTo into a real HTTP response,
// and as a Readable), ranges, connection reuse, every "not the happy path" answer turned into RelayUnavailable before
// anything was sent, bodies cut mid-way, clients that leave, slow clients, TLS with certificate checks.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { RelayUnavailable, relayGet, type RelayBody } from './http-relay.js';
import { isSendable } from './driver.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** An upstream "object store": GET /obj[?n=bytes] with Range support, plus routes that misbehave on purpose. */
class Upstream {
  server!: Server;
  url!: string;
  connections = 0;
  closed = 0;
  sockets = new Set<Socket>();
  constructor(readonly data: Buffer) {}

  async start(handler?: (req: IncomingMessage, res: ServerResponse) => boolean): Promise<this> {
    this.server = createServer((req, res) => {
      if (handler?.(req, res)) return;
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (m) {
        const start = Number(m[1]);
        const end = m[2] ? Number(m[2]) : this.data.length - 1;
        res.writeHead(206, {
          'Content-Length': end - start + 1,
          'Content-Range': `bytes ${start}-${end}/${this.data.length}`,
        });
        return res.end(this.data.subarray(start, end + 1));
      }
      res.writeHead(200, { 'Content-Length': this.data.length });
      res.end(this.data);
    });
    this.server.on('connection', (s: Socket) => {
      this.connections++;
      this.sockets.add(s);
      s.on('close', () => {
        this.closed++;
        this.sockets.delete(s);
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

/** A front server that answers every GET by relaying `target()` with sendTo, as the registry's blob route does. */
async function front(
  target: () => string,
  opts: { range?: string } = {},
): Promise<{ url: string; results: Array<Promise<unknown>>; stop(): Promise<void> }> {
  const results: Array<Promise<unknown>> = [];
  const server = createServer(async (_req, res) => {
    let body: RelayBody;
    try {
      body = await relayGet(new URL(target()), opts);
    } catch (e) {
      res.writeHead(502).end(String(e));
      return;
    }
    res.writeHead(200, { 'Content-Length': body.length });
    const sent = body.sendTo(res);
    results.push(sent.catch((e: Error) => e));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    results,
    stop: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** GETs `url`; `onChunk` may pause the response. Resolves with the status, the bytes, and whether it ended cleanly. */
function fetchAll(
  url: string,
  onChunk?: (res: IncomingMessage, received: number) => void,
): Promise<{ status: number; body: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let received = 0;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        received += c.length;
        onChunk?.(res, received);
      });
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: res.complete }));
      res.on('error', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: false }));
      res.on('aborted', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: false }));
    }).on('error', reject);
  });
}

async function collect(body: RelayBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const until = async (what: string, ok: () => boolean, ms = 5_000) => {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('http-relay', () => {
  const data = randomBytes(9 * MiB + 12345);
  let up: Upstream;
  before(async () => {
    const reply = (send: () => unknown) => (send(), true);
    up = await new Upstream(data).start((req, res) => {
      const path = req.url!.split('?')[0];
      if (path === '/small') return reply(() => res.writeHead(200, { 'Content-Length': 10 }).end('0123456789'));
      if (path === '/empty') return reply(() => res.writeHead(200, { 'Content-Length': 0 }).end());
      if (path === '/missing')
        return reply(() =>
          res.writeHead(404, { 'Content-Type': 'application/xml' }).end('<Error><Code>NoSuchKey</Code></Error>'),
        );
      if (path === '/chunked') {
        res.writeHead(200);
        res.write('abc');
        res.end('def');
        return true;
      }
      if (path === '/cut') {
        // Promises 1 MiB, sends 100 KiB, then the connection dies.
        res.writeHead(200, { 'Content-Length': MiB });
        res.write(data.subarray(0, 100 * 1024), () => setTimeout(() => res.socket!.destroy(), 50));
        return true;
      }
      if (path === '/ignores-range') return reply(() => res.writeHead(200, { 'Content-Length': 10 }).end('0123456789'));
      return false;
    });
  });
  after(() => up.stop());

  it('relays a body exactly into a real HTTP response with sendTo, reusing one upstream connection', async () => {
    const f = await front(() => `${up.url}/obj?X-Amz-Signature=abc`);
    try {
      const before = up.connections;
      for (let i = 0; i < 3; i++) {
        const got = await fetchAll(f.url);
        assert.equal(got.status, 200);
        assert.equal(got.complete, true);
        assert.equal(got.body.length, data.length);
        assert.equal(sha(got.body), sha(data));
      }
      assert.deepEqual(await Promise.all(f.results), [undefined, undefined, undefined]);
      assert.equal(up.connections - before, 1, 'the three GETs share one kept-alive upstream connection');
    } finally {
      await f.stop();
    }
  });

  it('is also a plain Readable (chunks copied out), for a large, a small (arrives with the head) and an empty body', async () => {
    const big = await relayGet(new URL(`${up.url}/obj`));
    assert.ok(isSendable(big));
    assert.equal(big.length, data.length);
    assert.equal(sha(await collect(big)), sha(data));
    assert.equal((await collect(await relayGet(new URL(`${up.url}/small`)))).toString(), '0123456789');
    assert.equal((await collect(await relayGet(new URL(`${up.url}/empty`)))).length, 0);
    // And the connection is still good after those.
    assert.equal(sha(await collect(await relayGet(new URL(`${up.url}/obj`)))), sha(data));
  });

  it('asks for a range and expects a 206', async () => {
    const body = await relayGet(new URL(`${up.url}/obj`), { range: 'bytes=1000-5242879' });
    assert.equal(body.length, 5242879 - 1000 + 1);
    assert.equal(sha(await collect(body)), sha(data.subarray(1000, 5242880)));
    const tail = await relayGet(new URL(`${up.url}/obj`), { range: `bytes=${data.length - 5}-` });
    assert.deepEqual(await collect(tail), data.subarray(data.length - 5));
    // A server that ignores Range answers 200 with the whole object: not what was asked for.
    await assert.rejects(relayGet(new URL(`${up.url}/ignores-range`), { range: 'bytes=2-3' }), RelayUnavailable);
  });

  it('turns anything but a plain 200/206 with a Content-Length into RelayUnavailable, and keeps working after', async () => {
    await assert.rejects(
      relayGet(new URL(`${up.url}/missing`)),
      (e: Error) => e instanceof RelayUnavailable && /HTTP 404/.test(e.message),
    );
    await assert.rejects(
      relayGet(new URL(`${up.url}/chunked`)),
      (e: Error) => e instanceof RelayUnavailable && /Transfer-Encoding/.test(e.message),
    );
    await assert.rejects(relayGet(new URL('ftp://127.0.0.1/x')), RelayUnavailable);
    // Nothing listens on a just-closed port.
    const gone = await new Upstream(data).start();
    const url = gone.url;
    await gone.stop();
    await assert.rejects(
      relayGet(new URL(`${url}/obj`)),
      (e: Error) => e instanceof RelayUnavailable && (e as RelayUnavailable).beforeResponse,
    );
    assert.equal(sha(await collect(await relayGet(new URL(`${up.url}/obj`)))), sha(data));
  });

  it('a body cut mid-way fails the relayed response (never a short 200) and the connection is not reused', async () => {
    const f = await front(() => `${up.url}/cut`);
    try {
      const got = await fetchAll(f.url);
      assert.equal(got.complete, false, 'the client sees a broken response, not a complete one');
      assert.ok(got.body.length < MiB);
      const [err] = await Promise.all(f.results);
      assert.match(String(err), /reading the object/);
    } finally {
      await f.stop();
    }
    const cut = await relayGet(new URL(`${up.url}/cut`));
    await assert.rejects(collect(cut), /reading the object/);
    assert.equal(sha(await collect(await relayGet(new URL(`${up.url}/obj`)))), sha(data));
  });

  it('a client that leaves mid-body closes the upstream connection (the rest is still on the wire); the next GET is exact', async () => {
    const f = await front(() => `${up.url}/obj`);
    try {
      const closedBefore = up.closed;
      await new Promise<void>((resolve, reject) => {
        get(f.url, { agent: false }, (res) => {
          res.once('data', () => {
            res.destroy();
            resolve();
          });
        }).on('error', reject);
      });
      await until('the upstream connection to close', () => up.closed > closedBefore);
      const [err] = await Promise.all(f.results);
      assert.ok(err instanceof Error);
      const got = await fetchAll(f.url);
      assert.equal(sha(got.body), sha(data));
    } finally {
      await f.stop();
    }
  });

  it('a slow client gets every byte (reads pause upstream instead of buffering)', async () => {
    const f = await front(() => `${up.url}/obj`);
    try {
      let pauses = 0;
      const got = await fetchAll(f.url, (res, received) => {
        if (received > (pauses + 1) * 2 * MiB && pauses < 4) {
          pauses++;
          res.pause();
          setTimeout(() => res.resume(), 150);
        }
      });
      assert.equal(pauses, 4);
      assert.equal(sha(got.body), sha(data));
    } finally {
      await f.stop();
    }
  });

  it('retries on a fresh connection when the server closed the pooled one meanwhile', async () => {
    const short = await new Upstream(data).start();
    short.server.keepAliveTimeout = 50;
    try {
      assert.equal(sha(await collect(await relayGet(new URL(`${short.url}/obj`)))), sha(data));
      await until('the server to close the idle connection', () => short.closed >= 1);
      assert.equal(sha(await collect(await relayGet(new URL(`${short.url}/obj`)))), sha(data));
      assert.equal(short.connections, 2);
    } finally {
      await short.stop();
    }
  });

  it('a pooled connection that dies as the request goes out: retried once on a fresh connection', async () => {
    // The race a kept-alive connection has with the server's idle timeout, made certain: the server answers the
    // first request on a connection and drops the connection on the second.
    const served = new WeakMap<Socket, number>();
    const racy = await new Upstream(data).start((req) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n === 1) return false;
      req.socket.destroy();
      return true;
    });
    try {
      assert.equal(sha(await collect(await relayGet(new URL(`${racy.url}/obj`)))), sha(data));
      assert.equal(sha(await collect(await relayGet(new URL(`${racy.url}/obj`)))), sha(data));
      assert.equal(racy.connections, 2);
    } finally {
      await racy.stop();
    }
  });

  describe('over TLS', () => {
    let dir: string;
    let cert: Buffer;
    let server: Server;
    let port: number;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'relay-tls-'));
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
          '-days',
          '2',
          '-subj',
          '/CN=localhost',
          '-addext',
          'subjectAltName=DNS:localhost,IP:127.0.0.1',
        ],
        { stdio: 'ignore' },
      );
      cert = readFileSync(join(dir, 'cert.pem'));
      server = createHttpsServer({ cert, key: readFileSync(join(dir, 'key.pem')) }, (_req, res) => {
        res.writeHead(200, { 'Content-Length': data.length });
        res.end(data);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      port = (server.address() as AddressInfo).port;
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    });

    it('relays exactly by name and by IP when the certificate is trusted', async () => {
      for (const host of ['localhost', '127.0.0.1']) {
        assert.equal(
          sha(await collect(await relayGet(new URL(`https://${host}:${port}/obj`), { ca: cert }))),
          sha(data),
        );
      }
    });

    it('refuses a certificate it does not trust (RelayUnavailable, nothing relayed)', async () => {
      await assert.rejects(
        relayGet(new URL(`https://localhost:${port}/obj`)),
        (e: Error) => e instanceof RelayUnavailable && /certificate/i.test(e.message),
      );
    });
  });
});
