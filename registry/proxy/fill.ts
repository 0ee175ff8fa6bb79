// One upstream download of one blob, shared by every client that wants it while it runs (a "fill").
//
// The fill copies the upstream body into an upload session in segments (so storage sees ordinary appends, also on
// S3), and the upload store verifies the digest before publishing the blob — nothing unverified becomes visible.
// Clients never slow the fill down and the fill never waits for them: each client is an independent reader with
// its own position that takes bytes from storage (what is already appended), then from the in-memory segment being
// appended (at most SEGMENT bytes), then waits for more. So a late joiner first reads what is stored and then
// follows, a client that disconnects changes nothing, and memory stays bounded by one segment per fill.
// A reader holds back the blob's last byte until the digest is verified: a client never receives a complete
// response (Content-Length reached) for content that failed verification — its connection is cut instead.
// An upstream that stops sending mid-body fails the fill after `idleMs` (the upstream's timeout): otherwise every
// client of the blob, and every later one (they join the running fill), would wait for the HTTP client's own body
// timeout (minutes). Failing cuts the clients' connections; their retry starts a fresh fill.
// Across cluster workers (registry/cluster.ts) one worker holds the fill; the others follow it (`BlobFill.follow`):
// the holder reports how far the upload session is durable and when it is published or failed, and a follower's
// readers take the bytes from storage up to there — still streaming, and the upstream is asked once per server.
import { Readable } from 'node:stream';
import { NotFoundError, type Store, type UploadInfo } from '../../storage/index.js';
import type { Digest } from '../../spec/index.js';

/** Bytes buffered before each append: large enough for S3 multipart parts (≥ 5 MiB), small enough for memory. */
const SEGMENT = 8 << 20;

interface Chunk {
  offset: number;
  buf: Buffer;
}

/** What a follower learns about another worker's fill; updated as the holder's reports arrive. */
export interface FillFollow {
  /** Known once the holder got the upstream's answer and opened its upload session. */
  info?: { uploadId: string; size: number };
  /** Bytes appended to the session so far. */
  durable: number;
  /** The fill published the blob (ok) or failed. */
  done?: { ok: boolean; error?: string };
  /** Called on every change. */
  onChange?: () => void;
}

/** Coordinates fills across cluster workers; `acquire` makes exactly one worker the holder of a key. */
export interface FillLeases {
  acquire(key: string): Promise<{ mine: true } | { mine: false; follow: FillFollow }>;
  started(key: string, info: { uploadId: string; size: number }): void;
  progress(key: string, durable: number): void;
  release(key: string, ok: boolean, error?: string): void;
}

export class BlobFill {
  /** Bytes received from the upstream. */
  private received = 0;
  /** Bytes appended to storage (readable there). */
  private durable = 0;
  /** Received but not yet appended: covers [durable, received). */
  private pending: Chunk[] = [];
  private published = false;
  private error?: Error;
  private wake: Array<() => void> = [];
  /** Settles when the blob is published (resolves) or the fill failed (rejects). */
  readonly done: Promise<void>;

  constructor(
    private readonly store: Store,
    readonly digest: Digest,
    readonly size: number,
    private readonly upload: UploadInfo,
    body: Readable | FillFollow,
    private readonly stall?: { idleMs: number; abort(reason: Error): void },
  ) {
    this.done = body instanceof Readable ? this._pump(body) : this._follow(body);
    this.done.catch(() => {}); // failures reach readers through `error`; callers may also await `done`
  }

  /** Reports how far the upload session is durable (to cluster followers). */
  onDurable?: (durable: number) => void;

  /** A fill another cluster worker runs: its bytes come from the shared upload session, then the blob. */
  static follow(store: Store, digest: Digest, repository: string, follow: FillFollow): BlobFill {
    const { uploadId, size } = follow.info!;
    return new BlobFill(store, digest, size, { id: uploadId, repository, startedAt: '' }, follow);
  }

  private _follow(f: FillFollow): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const update = () => {
        this.durable = Math.max(this.durable, f.durable);
        this.received = this.durable;
        if (f.done?.ok) {
          this.published = true;
          resolve();
        } else if (f.done) {
          this.error = new Error(f.done.error ?? 'the fill failed in another worker');
          reject(this.error);
        }
        this._notify();
      };
      f.onChange = update;
      update();
    });
  }

  get uploadId(): string {
    return this.upload.id;
  }

  get failed(): Error | undefined {
    return this.error;
  }

  /** A stream of bytes [start, end] (inclusive) of the blob, served as soon as they arrive. */
  reader(start = 0, end = this.size - 1): Readable {
    return Readable.from(this._read(start, end), { objectMode: false, highWaterMark: 1 << 20 });
  }

  private async _pump(body: Readable): Promise<void> {
    let idle: NodeJS.Timeout | undefined;
    // Armed only while waiting for upstream bytes: a slow storage append is not the upstream stalling. Destroying
    // `body` would not wake this loop (its generator is stuck awaiting the socket), so the request is aborted.
    const watch = () => {
      clearTimeout(idle);
      const stall = this.stall;
      if (stall)
        idle = setTimeout(
          () => stall.abort(new Error(`the upstream sent no data for ${stall.idleMs} ms`)),
          stall.idleMs,
        );
    };
    try {
      let segment = 0;
      watch();
      for await (const chunk of body as AsyncIterable<Buffer>) {
        clearTimeout(idle);
        this.pending.push({ offset: this.received, buf: chunk });
        this.received += chunk.length;
        segment += chunk.length;
        this._notify();
        if (segment >= SEGMENT) {
          await this._flush();
          segment = 0;
        }
        watch();
      }
      clearTimeout(idle);
      await this._flush();
      // Verifies size and digest against every stored byte, then publishes and links into the repository.
      await this.store.uploads.complete(this.upload, this.digest, this.size);
      this.published = true;
      this._notify();
    } catch (e) {
      clearTimeout(idle);
      this.error = e instanceof Error ? e : new Error(String(e));
      body.destroy();
      await this.store.uploads.cancel(this.upload).catch(() => {});
      this._notify();
      throw this.error;
    }
  }

  private async _flush(): Promise<void> {
    const n = this.pending.length;
    if (n === 0) return;
    const bufs = this.pending.slice(0, n).map((c) => c.buf);
    this.durable = await this.store.uploads.append(
      this.upload,
      this.durable,
      Readable.from(bufs, { objectMode: false }),
    );
    this.pending.splice(0, n);
    this.onDurable?.(this.durable);
    this._notify();
  }

  private _notify(): void {
    const waiting = this.wake;
    this.wake = [];
    for (const w of waiting) w();
  }

  private _changed(): Promise<void> {
    return new Promise((resolve) => this.wake.push(resolve));
  }

  private async *_read(start: number, end: number): AsyncGenerator<Buffer> {
    let pos = start;
    while (pos <= end) {
      if (this.error) throw this.error;
      // Everything but the last byte may go out before verification; the last only once published.
      const servable = this.published ? this.size : this.size - 1;
      if (pos >= servable) {
        await this._changed();
        continue;
      }
      if (this.published || pos < this.durable) {
        const to = Math.min(end, servable - 1, this.published ? this.size - 1 : this.durable - 1);
        let stream: Readable;
        try {
          const range = { start: pos, end: to };
          stream = this.published
            ? await this.store.blobs.read(this.digest, range)
            : await this.store.uploads.read(this.upload.id, range);
        } catch (e) {
          if (!(e instanceof NotFoundError)) throw e;
          // Published between the check and the open (the upload moved): look again.
          if (!this.published && !this.error) await this._changed();
          continue;
        }
        for await (const c of stream as AsyncIterable<Buffer>) {
          pos += c.length;
          yield c;
        }
        continue;
      }
      const chunk = this.pending.find((c) => c.offset <= pos && pos < c.offset + c.buf.length);
      if (!chunk) {
        await this._changed();
        continue;
      }
      const from = pos - chunk.offset;
      const to = Math.min(chunk.buf.length, end + 1 - chunk.offset, servable - chunk.offset);
      const piece = chunk.buf.subarray(from, to);
      pos += piece.length;
      yield piece;
    }
  }
}

/**
 * Starts fills and lets concurrent requests for the same key share one. The cache keys fills by repository and
 * digest: a fill's bytes come from one repository's upstream and are served and linked for that repository only.
 */
export class FillRegistry {
  private readonly inflight = new Map<string, Promise<BlobFill>>();

  /** The running fill for `key`, if any. */
  get(key: string): Promise<BlobFill> | undefined {
    return this.inflight.get(key);
  }

  /**
   * Returns the running fill for `key` or starts one with `open` (which resolves once the upstream answered).
   * `joined` tells whether an existing fill was shared.
   */
  getOrStart(key: string, open: () => Promise<BlobFill>): { fill: Promise<BlobFill>; joined: boolean } {
    const running = this.inflight.get(key);
    if (running) return { fill: running, joined: true };
    const fill = open();
    this.inflight.set(key, fill);
    const forget = () => {
      if (this.inflight.get(key) === fill) this.inflight.delete(key);
    };
    fill.then((f) => f.done.then(forget, forget), forget);
    return { fill, joined: false };
  }

  get size(): number {
    return this.inflight.size;
  }
}
