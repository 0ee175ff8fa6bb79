// Reused I/O buffers for relaying blob bytes to clients (storage/http-relay.ts, the fs driver's file bodies).
//
// Streaming a GiB through fresh per-chunk Buffers costs far more than the copying itself: node's stream plumbing
// allocates a buffer per read and V8 ends up in repeated full mark-compacts (see http-relay.ts for figures). A buffer
// taken here is returned once the write that carried it completed, so a long transfer cycles a handful of them.

// 1 MiB: a 1 GiB curl pull from the fs driver, one worker, same run: 0.47–0.50 s vs 0.49–0.66 s with 256 KiB.
const POOL_BUFFER_SIZE = 1024 * 1024;
/** Free buffers kept for reuse (16 MiB); beyond that a returned buffer is left to the GC. */
const MAX_FREE = 16;

const free: Buffer[] = [];

export function takeBuffer(): Buffer {
  return free.pop() ?? Buffer.allocUnsafeSlow(POOL_BUFFER_SIZE);
}

/** Returns `buf` for reuse: only once nothing (a pending socket write, a reader) still holds it. */
export function giveBuffer(buf: Buffer): void {
  if (free.length < MAX_FREE && buf.length === POOL_BUFFER_SIZE) free.push(buf);
}
