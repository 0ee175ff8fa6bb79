// Layer compression with pinned settings, and the one-pass digests: the uncompressed tar is hashed for the diffID
// while it streams into the compressor, whose output is hashed for the blob digest while it streams to disk.
//
// gzip: node:zlib at a pinned level; the header is made machine-independent (MTIME 0, OS byte 255 "unknown" as Go
// writes it) — zlib stamps the build platform's OS code otherwise. zstd: zstd-napi at a pinned level, one thread,
// no content size (a streamed frame never knows it). The compressor library versions are part of the cache key.
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zc, createGzip } from 'node:zlib';
import { CompressStream } from 'zstd-napi';
import { createRequire } from 'node:module';
import { Digester, type Digest } from '../spec/digest.js';
import { OCI_LAYER_GZIP, OCI_LAYER_ZSTD } from '../spec/media-types.js';
import type { Compression } from '../spec/build-spec.js';

// The native binding is CommonJS without named ESM exports; require() gives its functions.
const zbinding = createRequire(import.meta.url)('zstd-napi/binding.js') as { versionString(): string };

export const GZIP_LEVEL = 6;
export const ZSTD_LEVEL = 3;

/** Everything about compression that changes output bytes: part of every layer cache key. */
export function compressionIdentity(c: Compression): string {
  return c === 'gzip'
    ? `gzip/${GZIP_LEVEL}/zlib-${process.versions.zlib}`
    : `zstd/${ZSTD_LEVEL}/zstd-${zbinding.versionString()}`;
}

export function layerMediaType(c: Compression): string {
  return c === 'gzip' ? OCI_LAYER_GZIP : OCI_LAYER_ZSTD;
}

export interface WrittenBlob {
  digest: Digest;
  size: number;
  diffId: Digest;
  uncompressedSize: number;
}

class _Tap extends Transform {
  readonly d = new Digester();
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.d.update(chunk);
    cb(null, chunk);
  }
}

/** Rewrites gzip header bytes 4..9 (MTIME, XFL, OS) to fixed values, whatever chunking zlib uses. */
class _FixGzipHeader extends Transform {
  private seen = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.seen < 10) {
      chunk = Buffer.from(chunk);
      for (let i = 0; i < chunk.length && this.seen + i < 10; i++) {
        const at = this.seen + i;
        if (at >= 4 && at <= 7) chunk[i] = 0; // MTIME
        if (at === 8) chunk[i] = 0; // XFL
        if (at === 9) chunk[i] = 0xff; // OS: unknown
      }
      this.seen += chunk.length;
    }
    cb(null, chunk);
  }
}

function _compressor(c: Compression): Transform[] {
  if (c === 'gzip') return [createGzip({ level: GZIP_LEVEL, memLevel: 8, windowBits: 15, strategy: zc.Z_DEFAULT_STRATEGY }), new _FixGzipHeader()];
  const z = new CompressStream({ compressionLevel: ZSTD_LEVEL, nbWorkers: 0, checksumFlag: false });
  return [z as unknown as Transform];
}

/** Compresses `tar` into the file `tmp` and returns both digests; the caller renames it into place. */
export async function writeCompressed(tar: Readable, c: Compression, tmp: string): Promise<WrittenBlob> {
  const before = new _Tap();
  const after = new _Tap();
  try {
    await pipeline(tar, before, ..._compressor(c), after, createWriteStream(tmp));
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return { digest: after.d.digest(), size: after.d.size, diffId: before.d.digest(), uncompressedSize: before.d.size };
}
