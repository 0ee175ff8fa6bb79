// The node HTTP server around the hono app: timeouts suited to multi-GiB uploads, request logs, graceful close.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type { Hono } from 'hono';
import type { Env } from './context.js';
import type { Logger } from './log.js';

export interface RunningServer {
  server: Server;
  url: string;
  port: number;
  /** Stops accepting, lets in-flight requests finish up to `timeoutMs`, then closes the rest. */
  close(timeoutMs?: number): Promise<void>;
}

export function parseAddr(addr: string): { host?: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]*))?:(\d{1,5})$/.exec(addr);
  if (!m) throw new Error(`invalid listen address "${addr}": use HOST:PORT, [IPv6]:PORT or :PORT`);
  const host = m[1] ?? (m[2] || undefined);
  return { host, port: Number(m[3]) };
}

/** Observes every request as it starts (metrics); it subscribes to the response's events itself. */
export type RequestObserver = (req: IncomingMessage, res: ServerResponse) => void;

export async function listen(app: Hono<Env>, addr: string, log?: Logger, observe?: RequestObserver): Promise<RunningServer> {
  const { host, port } = parseAddr(addr);
  const listener = getRequestListener(app.fetch as never, {
    errorHandler: (e) => {
      log?.error('unhandled error', { err: String(e) });
    },
  });
  const server = createServer({ requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 65_000 }, (req, res) => {
    observe?.(req, res);
    // A request id for correlating logs: the caller's X-Request-Id when it is sane, else a fresh one; echoed back.
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
    res.setHeader('X-Request-Id', id);
    if (log?.requests) {
      const started = process.hrtime.bigint();
      res.once('finish', () => {
        log.info('request', {
          id,
          method: req.method,
          path: req.url?.split('?')[0],
          status: res.statusCode,
          ms: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
          remote: req.socket.remoteAddress,
        });
      });
    }
    void listener(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const shownHost = bound.family === 'IPv6' ? `[${bound.address === '::' ? '::1' : bound.address}]` : bound.address === '0.0.0.0' ? '127.0.0.1' : bound.address;
  return {
    server,
    port: bound.port,
    url: `http://${shownHost}:${bound.port}`,
    close: (timeoutMs = 30_000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), timeoutMs);
        // Keep-alive connections become idle as their last request finishes: close them as they do.
        const sweep = setInterval(() => server.closeIdleConnections(), 100);
        server.close(() => {
          clearTimeout(timer);
          clearInterval(sweep);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
