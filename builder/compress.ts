// Layer compression with pinned settings (layers.ts hashes both sides of it in one pass).
//
// gzip: node:zlib at a pinned level; the header is made machine-independent (MTIME 0, OS byte 255 "unknown" as Go
// writes it) — zlib stamps the build platform's OS code otherwise. zstd: zstd-napi at a pinned level, one thread,
// no content size (a streamed frame never knows it). The compressor library versions are part of the cache key.
import { Transform, type TransformCallback } from 'node:stream';
import { constants as zc, createGunzip, createGzip } from 'node:zlib';
import { CompressStream, DecompressStream } from 'zstd-napi';
import { createRequire } from 'node:module';
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

/** A fresh compressor pipeline (one gzip member / one zstd frame per call). */
export function compressor(c: Compression): Transform[] {
  if (c === 'gzip') return [createGzip({ level: GZIP_LEVEL, memLevel: 8, windowBits: 15, strategy: zc.Z_DEFAULT_STRATEGY }), new _FixGzipHeader()];
  const z = new CompressStream({ compressionLevel: ZSTD_LEVEL, nbWorkers: 0, checksumFlag: false });
  return [z as unknown as Transform];
}

/** Decompresses one or more concatenated gzip members / zstd frames. */
export function decompressor(c: Compression): Transform {
  return c === 'gzip' ? createGunzip() : (new DecompressStream() as unknown as Transform);
}
