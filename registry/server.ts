// The node HTTP server around the hono app: timeouts suited to multi-GiB uploads (a body that stops arriving times
// out; a slow one does not), request logs, graceful close.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createSecureServer, Http2ServerRequest, type Http2SecureServer, type Http2Session } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { getRequestListener, RequestError } from '@hono/node-server';
import type { Hono } from 'hono';
import type { Env } from './context.js';
import type { Logger } from './log.js';
import { routeUploads, type Affinity } from './upload-affinity.js';
import { BODY_TIMEOUT, bodyTimeoutError } from './body.js';
import { parseDuration } from '../spec/units.js';
import type { Config } from './config.js';
import { loadTls, watchTls } from './tls.js';
import { resolveClient, trustedProxies, unmapped, type TrustedProxies } from './forwarded.js';

function remote(req: IncomingMessage, trusted: TrustedProxies): { remote?: string; peer?: string } {
  const peer = unmapped(req.socket?.remoteAddress);
  const client = resolveClient(req, trusted).address;
  return client === peer ? { remote: peer } : { remote: client, peer };
}

export interface RunningServer {
  /** HTTP/1.1 without `http.tls`; with it, HTTPS serving HTTP/2 to clients that offer it (ALPN) and HTTP/1.1. */
  server: Server | Http2SecureServer;
  url: string;
  port: number;
  /** Stops accepting, lets in-flight requests finish up to `timeoutMs`, then closes the rest. */
  close(timeoutMs?: number): Promise<void>;
}

export function parseAddr(addr: string): { host?: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]*))?:(\d{1,5})$/.exec(addr);
  if (!m) throw new Error(`invalid listen address "${addr}": use HOST:PORT, [IPv6]:PORT or :PORT`);
  const host = m[1] ?? (m[2] || undefined);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`invalid listen address "${addr}": the port must be 0–65535`);
  return { host, port };
}

const DEFAULT_BODY_IDLE = '60s';
const HEADERS_TIMEOUT_MS = 60_000;

/**
 * Watches request bodies: one that gets no byte for `idleMs` while berth wants one (nothing of it waits unread,
 * so the stall is the client's, not backpressure from storage) is timed out — a guarded body (registry/body.ts)
 * fails with REQUEST_TIMEOUT, which the handler answers with 408; any other request is closed. One timer for all.
 */
function _bodyWatch(idleMs: number, log?: Logger): (req: IncomingMessage, res: ServerResponse) => void {
  interface Watched {
    req: IncomingMessage & { [BODY_TIMEOUT]?: (e: Error) => void };
    res: ServerResponse;
    bytes: number;
    since: number;
  }
  const watched = new Set<Watched>();
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    const now = Date.now();
    for (const w of watched) {
      const { req, res } = w;
      if (req.complete || req.destroyed || res.writableFinished) {
        watched.delete(w);
      } else if (req.socket.bytesRead !== w.bytes || req.readableLength > 0) {
        w.bytes = req.socket.bytesRead;
        w.since = now;
      } else if (now - w.since >= idleMs) {
        watched.delete(w);
        log?.warn('request body timed out', {
          method: req.method,
          path: req.url?.split('?')[0],
          idleMs,
          remote: req.socket.remoteAddress,
        });
        const err = bodyTimeoutError(idleMs);
        if (req[BODY_TIMEOUT]) req[BODY_TIMEOUT](err);
        else req.destroy(err);
      }
    }
    if (!watched.size) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  return (req, res) => {
    watched.add({ req, res, bytes: req.socket.bytesRead, since: Date.now() });
    timer ??= setInterval(tick, Math.min(1000, Math.max(50, idleMs / 4)));
    timer.unref();
  };
}

/** Observes every request as it starts (metrics); it subscribes to the response's events itself. */
export type RequestObserver = (req: IncomingMessage, res: ServerResponse) => void;

/** Timeouts (config `http`): durations such as 60s; 0s turns one off. `tls`: serve HTTPS (registry/tls.ts). */
export type ServerTimeouts = Partial<
  Pick<Config['http'], 'bodyIdleTimeout' | 'requestTimeout' | 'headersTimeout' | 'tls' | 'trustedProxies'>
>;

export async function listen(
  app: Hono<Env>,
  addr: string,
  log?: Logger,
  observe?: RequestObserver,
  timeouts: ServerTimeouts = {},
  /** In a cluster worker: route upload chunks to their session's worker (plain HTTP; registry/upload-affinity.ts). */
  affinity?: Affinity,
): Promise<RunningServer> {
  const { host, port } = parseAddr(addr);
  const idleMs = parseDuration(timeouts.bodyIdleTimeout ?? DEFAULT_BODY_IDLE);
  // Off by default: a multi-GiB push over a slow link may take hours; bodyIdleTimeout catches bodies that stall.
  const requestTimeout = parseDuration(timeouts.requestTimeout ?? '0s');
  const watch = idleMs > 0 ? _bodyWatch(idleMs, log) : undefined;
  const listener = getRequestListener(app.fetch, {
    // Must answer: returning nothing leaves the connection open forever. A RequestError is the client's (a Host
    // header that is no host, e.g. `a:1@b`, or a bad request target) → 400; anything else → 500.
    errorHandler: (e) => {
      const client = e instanceof RequestError;
      if (!client) log?.error('unhandled error', { err: String(e) });
      const code = client ? 'BAD_REQUEST' : 'UNKNOWN';
      const message = client ? `bad request: ${(e as Error).message}` : 'internal error';
      return new Response(JSON.stringify({ errors: [{ code, message, detail: null }] }), {
        status: client ? 400 : 500,
        headers: { 'Content-Type': 'application/json', 'Docker-Distribution-API-Version': 'registry/2.0' },
      });
    },
  });
  const trusted = trustedProxies(timeouts.trustedProxies);
  const headersMs = timeouts.headersTimeout ? parseDuration(timeouts.headersTimeout) : HEADERS_TIMEOUT_MS;
  const headersTimeout = requestTimeout > 0 ? Math.min(headersMs, requestTimeout) : headersMs;
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    observe?.(req, res);
    watch?.(req, res);
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
          // The client a trusted proxy names (http.trustedProxies), else the socket's peer; `peer` when they differ.
          ...remote(req, trusted),
        });
      });
    }
    void listener(req, res);
  };
  const tls = timeouts.tls;
  if (tls)
    return _listenTls(
      requestTimeout > 0 ? _withRequestTimeout(handle, requestTimeout, log) : handle,
      tls,
      host,
      port,
      headersTimeout,
      log,
    );
  const server = createServer({ requestTimeout, headersTimeout, keepAliveTimeout: 65_000 }, handle);
  if (affinity) routeUploads(server, affinity);
  const bound = await _bind(server, host, port);
  return {
    server,
    port: bound.port,
    url: `http://${bound.shownHost}:${bound.port}`,
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

/**
 * HTTPS: node's HTTP/2 server with `allowHTTP1`, so one port serves HTTP/2 to clients that offer `h2` by ALPN
 * (containerd, Go clients, curl) and HTTP/1.1 to the rest. The request handler gets node's compatibility
 * request/response objects, which @hono/node-server and the direct writes (blob GETs, registry/routes/blobs.ts)
 * both accept. node's HTTP/2 server has no headersTimeout or requestTimeout: the idle-connection watch below stands
 * in for headersTimeout, requestTimeout is _withRequestTimeout, and bodyIdleTimeout applies to each request.
 */
async function _listenTls(
  handle: (req: IncomingMessage, res: ServerResponse) => void,
  tls: NonNullable<ServerTimeouts['tls']>,
  host: string | undefined,
  port: number,
  headersTimeoutMs: number,
  log?: Logger,
): Promise<RunningServer> {
  const mtls = tls.clientCAs ? { requestCert: true, rejectUnauthorized: true } : {};
  const server = createSecureServer({ ...loadTls(tls), ...mtls, allowHTTP1: true, ALPNProtocols: ['h2', 'http/1.1'] });
  // Connections and what they are doing, for a graceful close: HTTP/2 sessions close themselves once their
  // streams end (GOAWAY); an HTTP/1.1 socket is ended as soon as it has no request in flight.
  const sockets = new Map<Socket, number>();
  const sessions = new Set<Http2Session>();
  let closing = false;
  server.setTimeout(65_000);
  // node's HTTP/2 server (and the HTTP/1.1 it serves with allowHTTP1) has no headersTimeout, and its idle timeout
  // is reset by every byte, so a client trickling a request's headers (slowloris), or HTTP/2 PINGs with no stream,
  // would hold a connection forever. The equivalent here: a connection with no request in flight must start one
  // within http.headersTimeout (60s) of being accepted or of its last request finishing, else it is closed.
  const idle = new Map<Socket | Http2Session, NodeJS.Timeout>();
  const arm = (conn: Socket | Http2Session, end: () => void) => {
    clearTimeout(idle.get(conn));
    const timer = setTimeout(() => {
      idle.delete(conn);
      end();
    }, headersTimeoutMs);
    timer.unref();
    idle.set(conn, timer);
  };
  const disarm = (conn: Socket | Http2Session) => {
    clearTimeout(idle.get(conn));
    idle.delete(conn);
  };
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.set(socket, 0);
    socket.once('close', () => {
      sockets.delete(socket);
      disarm(socket);
    });
    // HTTP/2 connections are watched per session (below); HTTP/1.1 ones per socket.
    if (socket.alpnProtocol !== 'h2') arm(socket, () => socket.destroy());
  });
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    const end = () => session.close();
    arm(session, end);
    let open = 0;
    session.on('stream', (stream) => {
      open++;
      disarm(session);
      stream.once('close', () => {
        if (--open === 0 && !session.closed && !session.destroyed) arm(session, end);
      });
    });
    session.once('close', () => {
      sessions.delete(session);
      disarm(session);
    });
    if (closing) session.close();
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!(req instanceof Http2ServerRequest)) {
      const socket = req.socket;
      disarm(socket);
      sockets.set(socket, (sockets.get(socket) ?? 0) + 1);
      if (closing) res.setHeader('Connection', 'close');
      res.once('close', () => {
        const n = (sockets.get(socket) ?? 1) - 1;
        if (sockets.has(socket)) sockets.set(socket, n);
        if (closing && n === 0) socket.end();
        else if (n === 0 && !socket.destroyed) arm(socket, () => socket.destroy());
      });
    }
    handle(req, res);
  });
  // A client that fails the handshake (an unknown CA, no client certificate under mTLS) is not a server fault.
  server.on('tlsClientError', (e) => log?.debug('TLS handshake failed', { err: e.message }));
  const bound = await _bind(server, host, port);
  const unwatch = watchTls(server, tls, log);
  return {
    server,
    port: bound.port,
    url: `https://${bound.shownHost}:${bound.port}`,
    close: (timeoutMs = 30_000) =>
      new Promise<void>((resolve) => {
        closing = true;
        unwatch();
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
          for (const s of sockets.keys()) s.destroy();
        }, timeoutMs);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        for (const s of sessions) s.close();
        for (const [s, n] of sockets) if (n === 0 && (s as TLSSocket).alpnProtocol !== 'h2') s.end();
      }),
  };
}

/** Listens; resolves to the bound port and the host to show in a URL (a wildcard address as loopback). */
async function _bind(
  server: Server | Http2SecureServer,
  host: string | undefined,
  port: number,
): Promise<{ port: number; shownHost: string }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  // Bound to every interface: `localhost`, as the banner says — a name certificates carry and clients resolve to
  // whichever loopback family answers ([::1] or 127.0.0.1 alone would fail a TLS name check or an IPv4-only bind).
  const wildcard = bound.address === '::' || bound.address === '0.0.0.0';
  const shownHost = wildcard ? 'localhost' : bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return { port: bound.port, shownHost };
}

/**
 * http.requestTimeout for the TLS server, which (being node's HTTP/2 server) has none of its own: a request whose
 * body has not fully arrived this long after its headers is abandoned (the stream reset or, on HTTP/1.1, the
 * connection closed); a guarded body then fails, so nothing partial is stored.
 */
function _withRequestTimeout(handle: (req: IncomingMessage, res: ServerResponse) => void, ms: number, log?: Logger) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const timer = setTimeout(() => {
      if (req.complete || res.writableEnded) return;
      log?.warn('request timed out', {
        method: req.method,
        path: req.url?.split('?')[0],
        ms,
        remote: req.socket?.remoteAddress,
      });
      req.destroy(new Error(`the request did not arrive within ${ms} ms (http.requestTimeout)`));
    }, ms);
    timer.unref();
    res.once('close', () => clearTimeout(timer));
    handle(req, res);
  };
}
