// Segmented layers: why a one-file change rebuilds in well under a second.
//
// A layer blob is written as a run of independently compressed segments — one gzip member or one zstd frame per
// group of tar members — followed by a final segment holding tar's end-of-archive blocks. Concatenated gzip members
// are one valid gzip stream (RFC 1952 §2.2) and concatenated zstd frames one valid zstd stream (RFC 8878 §3), which
// every unpacker reads (Go's compress/gzip is multistream by default; eStargz and zstd:chunked layers rely on it).
// When one file changes, only its segment is tarred and compressed again; the others are copied compressed from the
// layer's previous blob. The diffID still covers the whole uncompressed tar, so the copied segments are decompressed
// (fast) to hash it.
//
// Boundaries depend only on member paths and the bytes since the previous boundary, never on absolute offsets, so a
// change disturbs at most its own segment and, if it shrinks that segment below the minimum, the next one.
import type { Member } from './plan.js';

/** A segment ends only once it holds this much tar… */
export const SEGMENT_MIN_BYTES = 1 << 20;
/** …at a member whose path hash picks it (1 in 16), or anyway at this size. */
export const SEGMENT_MAX_BYTES = 32 << 20;
const PICK_ONE_IN = 16;

/** FNV-1a over the path's UTF-8 bytes: cheap, stable, and the same on every machine. */
function _pathHash(path: string): number {
  let h = 0x811c9dc5;
  const step = (b: number) => {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  };
  // ASCII (the usual case) hashes straight from the string, anything else from its UTF-8 bytes: the same value.
  if (/^[\x00-\x7f]*$/.test(path)) for (let i = 0; i < path.length; i++) step(path.charCodeAt(i));
  else for (const b of Buffer.from(path)) step(b);
  return h;
}

/** Bytes a member takes in the tar, not counting a PAX header (close enough for choosing boundaries). */
export function memberTarBytes(m: Member): number {
  return 512 + (m.type === 'file' ? Math.ceil(m.size / 512) * 512 : 0);
}

/** Splits the (sorted) members into consecutive segments; every member lands in exactly one. */
export function splitSegments(members: Member[]): Member[][] {
  const out: Member[][] = [];
  let current: Member[] = [];
  let bytes = 0;
  for (const m of members) {
    current.push(m);
    bytes += memberTarBytes(m);
    if ((bytes >= SEGMENT_MIN_BYTES && _pathHash(m.path) % PICK_ONE_IN === 0) || bytes >= SEGMENT_MAX_BYTES) {
      out.push(current);
      current = [];
      bytes = 0;
    }
  }
  if (current.length) out.push(current);
  return out;
}
