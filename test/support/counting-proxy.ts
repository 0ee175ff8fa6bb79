// A tiny HTTP forward proxy on loopback that counts the requests it passes to a registry (`GET /v2/…/blobs/…`),
// so tests can assert how often the pull-through cache really went to its upstream. It can also be told to fail
// (answer 503/429, or refuse connections by closing) to simulate an upstream outage. It also counts the response
// body bytes it passed (what a client really downloaded) and can throttle them (to interrupt a transfer midway).
// Requests carrying a Range header are counted apart (with how many the registry answered 206), and the proxy can
// drop that header to play a registry that ignores Range (answers 200 with the whole blob).
// startSlowProxy is its plainer sibling for the CLI's progress display: a reverse proxy that paces every request and
// response body to `bytesPerSecond` per connection, so a transfer takes long enough for progress to be seen.
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export interface CountingProxy {
  url: string;
  host: string;
  /** `METHOD path` (without query) → count. */
  counts: Map<string, number>;
  count(method: string, pathPart: string): number;
  /** `METHOD path` → response body bytes passed to the client. */
  bytes: Map<string, number>;
  /** Response body bytes of requests whose `METHOD path` contains `pathPart`. */
  bytesOut(method: string, pathPart: string): number;
  /** `METHOD path` → request body bytes passed to the registry (what a client really uploaded). */
  bytesUp: Map<string, number>;
  /** Request body bytes of requests whose `METHOD path` contains `pathPart`. */
  bytesIn(method: string, pathPart: string): number;
  /** When set, response bodies are passed at no more than this many bytes per second (each connection). */
  rate?: number;
  /** When set, every request is answered with this status (e.g. 429, 503) instead of being forwarded. */
  failWith?: number;
  /** Changes where requests go (e.g. after the upstream restarted on another port). */
  target: string;
  /** `METHOD path` → requests that carried a Range header, and how many of those were answered 206. */
  ranges: Map<string, { asked: number; partial: number }>;
  /** Range requests whose `METHOD path` contains `pathPart`: asked, and answered 206. */
  rangeCount(method: string, pathPart: string): { asked: number; partial: number };
  /** When set, the Range header is dropped before forwarding: the registry answers as if it ignored Range. */
  ignoreRange?: boolean;
  stop(): Promise<void>;
}

export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const counts = new Map<string, number>();
  const bytes = new Map<string, number>();
  const bytesUp = new Map<string, number>();
  const ranges = new Map<string, { asked: number; partial: number }>();
  let server: Server;
  const proxy: CountingProxy = {
    url: '',
    host: '',
    counts,
    target,
    count: (method, part) =>
      [...counts].filter(([k]) => k.startsWith(`${method} `) && k.includes(part)).reduce((n, [, v]) => n + v, 0),
    bytes,
    bytesOut: (method, part) =>
      [...bytes].filter(([k]) => k.startsWith(`${method} `) && k.includes(part)).reduce((n, [, v]) => n + v, 0),
    bytesUp,
    ranges,
    rangeCount: (method, part) =>
      [...ranges]
        .filter(([k]) => k.startsWith(`${method} `) && k.includes(part))
        .reduce((n, [, v]) => ({ asked: n.asked + v.asked, partial: n.partial + v.partial }), { asked: 0, partial: 0 }),
    bytesIn: (method, part) =>
      [...bytesUp].filter(([k]) => k.startsWith(`${method} `) && k.includes(part)).reduce((n, [, v]) => n + v, 0),
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server = createServer((req: IncomingMessage, res) => {
    const key = `${req.method} ${(req.url ?? '').split('?')[0]}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    if (proxy.failWith) {
      req.resume();
      res.writeHead(proxy.failWith, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(
        JSON.stringify({
          errors: [{ code: proxy.failWith === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE', message: 'test' }],
        }),
      );
      return;
    }
    const to = new URL(proxy.target);
    const headers = { ...req.headers, host: to.host };
    const ranged = req.headers.range !== undefined ? (ranges.get(key) ?? { asked: 0, partial: 0 }) : undefined;
    if (ranged) ranges.set(key, { ...ranged, asked: ranged.asked + 1 });
    if (ranged && proxy.ignoreRange) delete headers.range;
    const out = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers }, (up) => {
      if (ranged && up.statusCode === 206) ranges.get(key)!.partial++;
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(_meter(key, bytes, proxy.rate)).pipe(res);
    });
    out.on('error', () => res.destroy());
    res.on('close', () => out.destroy());
    req.pipe(_meter(key, bytesUp)).pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  proxy.url = `http://127.0.0.1:${port}`;
  proxy.host = `127.0.0.1:${port}`;
  return proxy;
}

/** Counts bytes under `key` and, with a rate, delays each chunk so the stream averages at most `rate` bytes/s. */
function _meter(key: string, bytes: Map<string, number>, rate?: number): Transform {
  const started = Date.now();
  let passed = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      passed += chunk.length;
      bytes.set(key, (bytes.get(key) ?? 0) + chunk.length);
      const due = rate ? started + (passed / rate) * 1000 - Date.now() : 0;
      if (due > 0) setTimeout(() => cb(null, chunk), due);
      else cb(null, chunk);
    },
  });
}

/** Passes bytes on at no more than `bytesPerSecond`, in slices of ~1/20 s. */
export function throttle(bytesPerSecond: number): Transform {
  const slice = Math.max(1024, Math.floor(bytesPerSecond / 20));
  return new Transform({
    async transform(chunk: Buffer, _enc, cb: TransformCallback) {
      for (let i = 0; i < chunk.length; i += slice) {
        this.push(chunk.subarray(i, i + slice));
        await sleep((Math.min(slice, chunk.length - i) / bytesPerSecond) * 1000);
      }
      cb();
    },
  });
}

export interface SlowProxy {
  /** `127.0.0.1:PORT`, for image references. */
  host: string;
  stop(): Promise<void>;
}

/** A reverse proxy to `target` (`http://127.0.0.1:PORT`) pacing each body to `bytesPerSecond`. */
export async function startSlowProxy(target: string, bytesPerSecond: number): Promise<SlowProxy> {
  const up = new URL(target);
  let self = '';
  const server: Server = createServer((req, res) => {
    const out = request(
      {
        host: up.hostname,
        port: up.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: up.host },
      },
      (r) => {
        const headers = { ...r.headers };
        // Keep the client on the slow path when the registry answers with absolute URLs.
        if (typeof headers.location === 'string') headers.location = headers.location.replace(up.origin, self);
        res.writeHead(r.statusCode ?? 502, headers);
        pipeline(r, throttle(bytesPerSecond), res).catch(() => res.destroy());
      },
    );
    out.on('error', () => res.destroy());
    pipeline(req, throttle(bytesPerSecond), out).catch(() => out.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  self = `http://127.0.0.1:${port}`;
  return {
    host: `127.0.0.1:${port}`,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
