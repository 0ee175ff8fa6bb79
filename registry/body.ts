// Request bodies as handlers see them: counted, capped and detachable.
//
// Handlers stream bodies into storage. Three things must hold whatever the client or the disk does:
// - the bytes are counted as they arrive, so a cap (a namespace's remaining quota) holds for chunked bodies too,
//   not only for a declared Content-Length;
// - when storage gives up mid-body (disk full, a quota, a timeout), the client still gets the error: the socket is
//   not torn down under the answer — the rest of the body is read and discarded for a bounded time, then closed;
// - a body that stops arriving is timed out (server.ts watches every request; a guarded body turns the timeout into
//   a 408 the handler answers, instead of a reset).
import { Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { OciError } from '../spec/index.js';

/** A cap on the bytes a body may carry (a namespace's quota, shared by the bodies streaming into it). */
export interface BodyLimit {
  /** Told of every chunk as it arrives (`received` in all); an error returned fails the body with it. */
  take(n: number, received: number): Error | undefined;
}

/** server.ts calls `req[BODY_TIMEOUT](err)` when the client stopped sending; set by a guarded body. */
export const BODY_TIMEOUT = Symbol('berth.bodyTimeout');
type Watched = IncomingMessage & { [BODY_TIMEOUT]?: (e: Error) => void };

/** How long the rest of an unwanted body is read and thrown away so the client can read our answer. */
const DRAIN_MS = 5_000;
const HIGH_WATER_MARK = 1024 * 1024;

export function bodyTimeoutError(idleMs: number): OciError {
  return new OciError(
    'REQUEST_TIMEOUT',
    `no request body bytes arrived for ${Math.round(idleMs / 1000)} s (http.bodyIdleTimeout); the request was abandoned and nothing was stored`,
    { detail: { idleMs } },
  );
}

/**
 * Wraps `src` (a node request, or any body stream): counts bytes against `limit`, and when the wrapper is destroyed
 * before `src` ended — the consumer failed — discards the rest of `src` instead of destroying it (see drain).
 */
export function guardBody(src: Readable, limit?: BodyLimit): Readable {
  let received = 0;
  // A failure before anyone reads (the client left while the handler awaited storage) is held until the consumer
  // starts reading and has its listeners on: it then fails its pipeline instead of being emitted to nobody.
  let reading = false;
  let held: Error | undefined;
  const fail = (e: Error) => {
    if (reading) out.destroy(e);
    else held ??= e;
  };
  const out = new Readable({
    highWaterMark: HIGH_WATER_MARK,
    read() {
      reading = true;
      if (held) return void out.destroy(held);
      src.resume();
    },
    destroy(err, cb) {
      detach();
      if (!src.readableEnded && !src.destroyed) drain(src);
      cb(err);
    },
  });
  const onData = (chunk: Buffer) => {
    received += chunk.length;
    const refused = limit?.take(chunk.length, received);
    if (refused) return out.destroy(refused);
    if (!out.push(chunk)) src.pause();
  };
  const onEnd = () => out.push(null);
  const onError = (e: Error) => fail(e);
  const onClose = () => {
    if (!src.readableEnded) fail(new Error('request body ended early (the client went away)'));
  };
  const onTimeout = (e: Error) => fail(e);
  const detach = () => {
    src.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    if ((src as Watched)[BODY_TIMEOUT] === onTimeout) delete (src as Watched)[BODY_TIMEOUT];
  };
  src.on('data', onData).once('end', onEnd).once('error', onError).once('close', onClose);
  // Already cut off (the client left while the handler awaited storage, before it asked for the body): its 'close'
  // was emitted to nobody, so fail now, or the reader waits forever.
  if (src.destroyed && !src.readableEnded)
    fail(src.errored ?? new Error('request body ended early (the client went away)'));
  (src as Watched)[BODY_TIMEOUT] = onTimeout;
  src.pause();
  // Consumers see errors through their own listeners (pipeline, for await); this one only keeps an error that
  // nobody listens for from taking the process down.
  out.on('error', () => {});
  return out;
}

/**
 * Reads and discards what is left of `src` so the response can reach the client (closing a socket with unread
 * input makes the kernel send RST, and clients then often lose the answer), for DRAIN_MS at most; then destroys it.
 */
function drain(src: Readable): void {
  src.on('error', () => {}); // late errors of a body nobody wants any more are of no interest
  const timer = setTimeout(() => src.destroy(), DRAIN_MS);
  timer.unref();
  src.once('close', () => clearTimeout(timer)).once('end', () => clearTimeout(timer));
  src.resume();
}
