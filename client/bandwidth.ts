// A bandwidth cap shared by every stream of one job (a sync rule): a token bucket refilled at `bytesPerSecond`,
// holding at most one second's worth, so bursts stay short. Streams wait for tokens before passing a chunk on,
// which pushes back on the download through ordinary stream backpressure — nothing is buffered beyond a chunk.
import { Transform, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

export class Bandwidth {
  private tokens: number;
  private last = performance.now();
  private queue: Promise<void> = Promise.resolve();

  constructor(readonly bytesPerSecond: number) {
    this.tokens = bytesPerSecond;
  }

  /** Resolves when `n` bytes may pass (callers are served in order). */
  take(n: number): Promise<void> {
    const turn = this.queue.then(() => this._take(n));
    this.queue = turn.catch(() => {});
    return turn;
  }

  private async _take(n: number): Promise<void> {
    let need = n;
    while (need > 0) {
      const now = performance.now();
      this.tokens = Math.min(this.bytesPerSecond, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000);
      this.last = now;
      const grant = Math.min(need, Math.floor(this.tokens));
      if (grant > 0) {
        this.tokens -= grant;
        need -= grant;
        continue;
      }
      const missing = Math.min(need, this.bytesPerSecond) - this.tokens;
      await sleep(Math.max(5, Math.ceil((missing * 1000) / this.bytesPerSecond)));
    }
  }

  /** `body` passed through this cap. */
  wrap(body: Readable): Readable {
    const cap = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        this.take(chunk.length).then(
          () => cb(null, chunk),
          (e) => cb(e as Error),
        );
      },
    });
    body.on('error', (e) => cap.destroy(e));
    return body.pipe(cap);
  }
}
