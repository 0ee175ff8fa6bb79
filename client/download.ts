// Blob downloads: one Readable per blob that resumes a dropped connection with `Range: bytes=<received>-`.
// Repository.openBlob (remote.ts) adds the digest and size check (VerifyStream) on top.
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Descriptor } from '../spec/manifest.js';
import { isResumable } from './registry.js';

const DOWNLOAD_RESUMES = 5;

/**
 * A blob download as one Readable: the response body's chunks are pushed straight through (no per-chunk promise),
 * and a dropped connection reopens the GET with `Range: bytes=<received>-` (up to DOWNLOAD_RESUMES times).
 */
export class BlobReader extends Readable {
  private body?: Readable;
  private failures = 0;
  private skip = 0;

  constructor(
    private readonly desc: Pick<Descriptor, 'digest' | 'size'>,
    private at: number,
    private readonly get: (at: number) => Promise<{ status: number; body: Readable }>,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _construct(cb: (e?: Error | null) => void): void {
    this._open().then(() => cb(), cb);
  }

  override _read(): void {
    this.body?.resume();
  }

  override _destroy(e: Error | null, cb: (e?: Error | null) => void): void {
    this.body?.destroy();
    cb(e);
  }

  private async _open(): Promise<void> {
    const res = await this.get(this.at);
    // A server that ignores Range answers 200 with the whole blob: skip what we already have.
    this.skip = this.at > 0 && res.status === 200 ? this.at : 0;
    const body = (this.body = res.body);
    body.on('data', (chunk: Buffer) => {
      let c = chunk;
      if (this.skip) {
        if (c.length <= this.skip) {
          this.skip -= c.length;
          return;
        }
        c = c.subarray(this.skip);
        this.skip = 0;
      }
      this.at += c.length;
      if (!this.push(c)) body.pause();
    });
    body.on('end', () => {
      if (this.at >= this.desc.size) this.push(null);
      else this._failed(body, Object.assign(new Error('connection closed early'), { code: 'ECONNRESET' }));
    });
    body.on('error', (e) => this._failed(body, e));
  }

  private _failed(body: Readable, e: unknown): void {
    if (body !== this.body || this.destroyed) return;
    body.removeAllListeners('data');
    body.destroy();
    this.body = undefined;
    if (++this.failures > DOWNLOAD_RESUMES || !isResumable(e)) {
      this.destroy(e as Error);
      return;
    }
    sleep(100 * 2 ** this.failures)
      .then(() => this._open())
      .catch((err) => this.destroy(err));
  }
}
