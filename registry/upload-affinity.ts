// Upload affinity between cluster workers (issue 18): every chunk of one upload session is served by one worker.
//
// Why: node's Hash objects can't be serialised, so the running sha256 of a session lives in the memory of the
// worker that received its chunks (storage/uploads.ts). A client that opens a new connection per PATCH (curl in a
// loop, some CI scripts) lands on the workers in turn; only the first chunk was then hashed as it arrived and the
// final PUT re-read and hashed the whole session — 1 GiB in 16 MiB PATCHes took 5.7 s on two workers vs 3.9 s on one.
//
// How: the HTTP server of a worker (plain HTTP only; a TLS stream can't be read before the handshake) looks at the
// first bytes of each new connection before node's HTTP parser does. A request line `PATCH|PUT …/blobs/uploads/ID`
// belongs to worker `hash(ID) % workers`; any other request, or one that already is on its worker, is served here.
// A connection for another worker goes there with the bytes already read, through the primary (node's IPC handle
// passing, as sticky-session balancers do); the socket is never read from again in between, so no byte is lost or
// reordered. Only the first request of a connection is routed: a kept-alive connection stays where it is, which is
// what a client that reuses one connection needs anyway. Routing is an optimisation only — whichever worker gets a
// chunk stores it correctly (the session and its bytes live in storage).
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** The request line of a chunk or the final PUT of an upload session; group 1 is the session id. */
const UPLOAD_REQUEST = /^(?:PATCH|PUT) \/v2\/[^ ?]*?\/blobs\/uploads\/([A-Za-z0-9_-]{1,256})[? ]/;
/** Only this much of the first read is searched for a request line. */
const HEAD_SCAN = 8 * 1024;
/** A new connection that sends nothing this long is given to the HTTP server as is (headersTimeout applies there). */
const PEEK_MS = 2_000;

export interface Affinity {
  /** This worker's slot and the number of slots. */
  slot: number;
  workers: number;
  /**
   * Sends the connection (not read from since `head`) to the worker in `slot`, through the primary; the socket object
   * left here is destroyed once it went (it no longer holds the connection).
   */
  handOff(socket: Socket, head: Buffer, slot: number): void;
  /** Connections other workers handed to this one. */
  onHandedIn(fn: (socket: Socket, head: Buffer) => void): void;
}

/** The slot whose worker serves the upload request starting `head`, or undefined for any other request. */
export function uploadSlot(head: Buffer, workers: number): number | undefined {
  const m = UPLOAD_REQUEST.exec(head.subarray(0, HEAD_SCAN).toString('latin1'));
  if (!m) return undefined;
  // FNV-1a: stable across processes and restarts (slots are too), cheap, spreads base64url ids evenly.
  let h = 0x811c9dc5;
  for (let i = 0; i < m[1]!.length; i++) h = Math.imul(h ^ m[1]!.charCodeAt(i), 0x01000193) >>> 0;
  return h % workers;
}

/**
 * Puts the routing in front of `server`'s own connection handling. A no-op with one worker, or when node's HTTP
 * server is not built the way this relies on (its connection listener is the only one) — then nothing is routed.
 */
export function routeUploads(server: Server, affinity: Affinity): void {
  const listeners = server.listeners('connection') as Array<(socket: Socket) => void>;
  if (affinity.workers < 2 || listeners.length !== 1) return;
  const accept = listeners[0]!;
  server.removeListener('connection', accept);
  // net.Server reads this when it wraps each accepted connection: the socket starts paused, nothing is read yet.
  (server as unknown as { pauseOnConnect: boolean }).pauseOnConnect = true;

  /** Hands the socket to node's HTTP server here, replaying the bytes read so far. */
  const serve = (socket: Socket, head?: Buffer) => {
    accept.call(server, socket);
    if (head?.length) socket.emit('data', head);
    socket.resume();
  };

  server.on('connection', (socket: Socket) => {
    const onError = () => {}; // a reset before the first byte: the socket closes, nothing to answer
    const done = () => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
    };
    const onData = (chunk: Buffer) => {
      done();
      stopReading(socket);
      // Flowing with our listener, every byte read so far was handed to us; anything buffered means node changed
      // how sockets deliver data — serve it here rather than risk a byte.
      if (socket.readableLength > 0) return serve(socket, chunk);
      const slot = uploadSlot(chunk, affinity.workers);
      if (slot === undefined || slot === affinity.slot) return serve(socket, chunk);
      // Detached from this server's bookkeeping: with `server` set, node's handle passing would count the connection
      // across processes and make this server's close() wait for word about it that never comes.
      (socket as unknown as { server: unknown }).server = null;
      affinity.handOff(socket, chunk, slot);
    };
    const timer = setTimeout(() => {
      done();
      stopReading(socket);
      serve(socket);
    }, PEEK_MS);
    timer.unref();
    socket.on('error', onError);
    socket.once('close', () => clearTimeout(timer));
    socket.on('data', onData);
    socket.resume(); // accepted paused (pauseOnConnect): a 'data' listener alone does not start the reads
  });

  affinity.onHandedIn((socket, head) => {
    // A socket made from a passed handle starts reading at once: stop before the first read can happen.
    stopReading(socket);
    // node's HTTP server reports client errors through `socket.server`.
    (socket as unknown as { server: Server }).server = server;
    serve(socket, head);
  });
}

/** Stops reading from the socket now (node's pause() alone lets reads already asked for fill its buffer). */
export function stopReading(socket: Socket): void {
  socket.pause();
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?(): number } })._handle;
  if (handle?.readStop) {
    handle.reading = false;
    handle.readStop();
  }
}
