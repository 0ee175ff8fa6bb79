// A loopback HTTP proxy between berth (or the S3 driver) and the S3 server that injects faults.
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback HTTP proxy in front of the S3 server that injects the faults the driver must ride out: 503 SlowDown,
 * a connection reset before forwarding, a slow response, a response lost after S3 applied the request, and `cut`: a
 * connection dropped after 1 MiB of the request body arrived; `forbidden`: 403 AccessDenied (a bucket policy refusing
 * that kind of request). As S3 does, SlowDown and resets answer a request that asks `Expect: 100-continue` before its
 * body is sent; the other faults (and no fault) let the body come.
 */
export type Fault = 'slowdown' | 'reset' | 'slow' | 'lost' | 'cut' | 'forbidden' | undefined;
export async function faultProxy(
  target: string,
  plan: (n: number, req: IncomingMessage) => Fault,
): Promise<{ endpoint: string; faults: Fault[]; close(): Promise<void> }> {
  const to = new URL(target);
  const faults: Fault[] = [];
  let n = 0;
  const planned = new WeakMap<IncomingMessage, Fault>();
  const server = createServer((req, res) => {
    const fault = planned.has(req) ? planned.get(req) : plan(++n, req);
    if (!planned.has(req)) faults.push(fault);
    if (fault === 'cut') {
      let received = 0;
      req.on('data', (b: Buffer) => {
        received += b.length;
        if (received >= 1024 * 1024) req.socket.destroy();
      });
      req.on('end', () => req.socket.destroy());
      return;
    }
    if (fault === 'slowdown') {
      req.resume();
      res.writeHead(503, { 'content-type': 'application/xml' });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
      );
      return;
    }
    if (fault === 'forbidden') {
      req.resume();
      res.writeHead(403, { 'content-type': 'application/xml' });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>',
      );
      return;
    }
    if (fault === 'reset') {
      req.socket.destroy();
      return;
    }
    const up = httpRequest(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        if (fault === 'lost') {
          upRes.resume();
          upRes.on('end', () => req.socket.destroy());
          return;
        }
        const send = () => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        };
        if (fault === 'slow') setTimeout(send, 1500);
        else send();
      },
    );
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  server.on('checkContinue', (req, res) => {
    const fault = plan(++n, req);
    faults.push(fault);
    planned.set(req, fault);
    if (fault !== 'slowdown' && fault !== 'reset') res.writeContinue();
    server.emit('request', req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    faults,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
