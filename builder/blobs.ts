// A content-addressed directory of blobs (`DIR/sha256/<hex>`): where built layers land, where the layer cache
// points, and what the outputs copy (or hard-link) from. Writes go through a temp file + rename.
import { createReadStream } from 'node:fs';
import { mkdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { parseDigest, type Digest } from '../spec/digest.js';

export class BlobDir {
  /** Blobs this process wrote, hashing every byte as it wrote it (publish). */
  private readonly published = new Set<Digest>();

  constructor(readonly root: string) {}

  path(digest: Digest): string {
    const { algorithm, encoded } = parseDigest(digest);
    return join(this.root, algorithm, encoded);
  }

  /** A path for a new blob being written; rename it to path(digest) once the digest is known. */
  async staging(): Promise<string> {
    await mkdir(join(this.root, 'sha256'), { recursive: true });
    return join(this.root, 'sha256', `.in-${process.pid}-${Math.random().toString(36).slice(2)}`);
  }

  /** Moves a staged blob into place: `digest` was computed over exactly the bytes written to `tmp`. */
  async publish(tmp: string, digest: Digest): Promise<void> {
    await rename(tmp, this.path(digest));
    this.published.add(digest);
  }

  /**
   * Whether this process wrote the blob's file itself (publish) — its bytes were hashed on the way in, moments ago,
   * so an output that hard-links it need not read it again (a blob found in the cache from an earlier run is read).
   */
  publishedHere(digest: Digest): boolean {
    return this.published.has(digest);
  }

  async has(digest: Digest, size?: number): Promise<boolean> {
    try {
      const st = await stat(this.path(digest));
      return size === undefined || st.size === size;
    } catch {
      return false;
    }
  }

  async open(digest: Digest, range?: { offset: number; length: number }): Promise<Readable> {
    if (!range) return createReadStream(this.path(digest), { highWaterMark: 1 << 20 });
    return createReadStream(this.path(digest), {
      start: range.offset,
      end: range.offset + range.length - 1,
      highWaterMark: 1 << 20,
    });
  }
}
