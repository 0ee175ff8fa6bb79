// Content verification for every byte berth moves: a pass-through Transform that hashes and counts, and fails
// the stream (before its end is signalled) when the digest or size differ from the descriptor.
// image-spec descriptor.md: "consumers SHOULD verify … the digest" and the size.
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { Digester, parseDigest, type Digest } from '../spec/digest.js';

/** The bytes are not what the descriptor promised (digest or size): retrying from the same bytes cannot help. */
export class ContentMismatchError extends Error {}

export class DigestMismatchError extends ContentMismatchError {
  constructor(
    readonly expected: string,
    readonly actual: string,
    what = 'content',
  ) {
    super(
      `${what} digest mismatch: expected ${expected}, got ${actual}; the source is corrupt or was changed — retry, or check the source`,
    );
  }
}

export class VerifyStream extends Transform {
  private readonly digester: Digester;
  /** `digester` may already hold a prefix of the content (a resumed download hashed what it kept). */
  constructor(
    private readonly expected: Digest,
    private readonly size?: number,
    private readonly what = 'blob',
    digester?: Digester,
  ) {
    super();
    this.digester = digester ?? new Digester(parseDigest(expected).algorithm);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.digester.update(chunk);
    if (this.size !== undefined && this.digester.size > this.size) {
      cb(
        new ContentMismatchError(
          `${this.what} ${this.expected} is larger than its descriptor says (${this.size} bytes)`,
        ),
      );
      return;
    }
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    if (this.size !== undefined && this.digester.size !== this.size) {
      cb(
        new ContentMismatchError(
          `${this.what} ${this.expected}: got ${this.digester.size} bytes, descriptor says ${this.size}`,
        ),
      );
      return;
    }
    const actual = this.digester.digest();
    cb(actual === this.expected ? null : new DigestMismatchError(this.expected, actual, this.what));
  }
}

/** Checks bytes already in memory (manifests, configs). */
export function verifyBytes(bytes: Uint8Array, expected: Digest, what = 'manifest'): void {
  const d = new Digester(parseDigest(expected).algorithm);
  d.update(bytes);
  const actual = d.digest();
  if (actual !== expected) throw new DigestMismatchError(expected, actual, what);
}

/**
 * Reports bytes as they pass, without putting the source into flowing mode (a bare 'data' listener would start
 * the flow before the consumer is attached and lose bytes).
 */
export function countBytes(src: Readable, onBytes: (n: number) => void): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
  src.on('error', (e) => counter.destroy(e));
  return src.pipe(counter);
}
