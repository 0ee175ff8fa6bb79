// A tiny HTTP forward proxy on loopback that counts the requests it passes to a registry (`GET /v2/…/blobs/…`),
// so tests can assert how often the pull-through cache really went to its upstream. It can also be told to fail
// (answer 503/429, or refuse connections by closing) to simulate an upstream outage.
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CountingProxy {
  url: string;
  host: string;
  /** `METHOD path` (without query) → count. */
  counts: Map<string, number>;
  count(method: string, pathPart: string): number;
  /** When set, every request is answered with this status (e.g. 429, 503) instead of being forwarded. */
  failWith?: number;
  /** Changes where requests go (e.g. after the upstream restarted on another port). */
  target: string;
  stop(): Promise<void>;
}

export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const counts = new Map<string, number>();
  let server: Server;
  const proxy: CountingProxy = {
    url: '',
    host: '',
    counts,
    target,
    count: (method, part) =>
      [...counts].filter(([k]) => k.startsWith(`${method} `) && k.includes(part)).reduce((n, [, v]) => n + v, 0),
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
    const out = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    res.on('close', () => out.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  proxy.url = `http://127.0.0.1:${port}`;
  proxy.host = `127.0.0.1:${port}`;
  return proxy;
}
