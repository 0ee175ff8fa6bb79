// Resumable downloads to a file: bytes go into `<final>.partial` beside the final path (never a hidden temp), so
// whatever stops the process — an error, Ctrl-C, SIGKILL, a power cut — leaves a prefix the next run continues
// with a Range request instead of starting over. The kept prefix is hashed again before it is trusted (it is
// local: reading it is cheap next to the network), the new bytes continue that hash, and the file is renamed into
// place only when size and digest match the descriptor. A mismatch discards the partial and downloads afresh once.
// (A partial is a prefix by construction: only appends, no seeks; rename is the only way to the final name.)
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Digester, parseDigest, type Digest } from '../spec/digest.js';
import { ContentMismatchError, VerifyStream, countBytes } from './verify.js';

export const PARTIAL_SUFFIX = '.partial';

export interface ResumeOptions {
  /** Bytes received from the source (not the kept prefix): what this run really transferred. */
  onBytes?: (n: number) => void;
  /** Told how many bytes of a kept partial were reused (after they were re-hashed). */
  onResume?: (offset: number) => void;
  what?: string;
}

/**
 * Makes `final` hold the blob: resumes `<final>.partial` when there is one, else downloads from 0. `source(offset)`
 * opens the blob's bytes from `offset` (a registry: `Range: bytes=offset-`; a file: a read from there).
 */
export async function downloadTo(
  final: string,
  desc: { digest: Digest; size: number },
  source: (offset: number) => Readable | Promise<Readable>,
  opts: ResumeOptions = {},
): Promise<void> {
  const partial = final + PARTIAL_SUFFIX;
  const what = opts.what ?? `blob ${desc.digest}`;
  for (let attempt = 0; ; attempt++) {
    const digester = new Digester(parseDigest(desc.digest).algorithm);
    const offset = attempt === 0 ? await _keptPrefix(partial, desc.size, digester) : 0;
    if (offset) opts.onResume?.(offset);
    let src: Readable = offset >= desc.size ? Readable.from([]) : await source(offset);
    if (opts.onBytes) src = countBytes(src, opts.onBytes);
    try {
      await pipeline(
        src,
        new VerifyStream(desc.digest, desc.size, what, digester),
        createWriteStream(partial, { flags: offset ? 'a' : 'w' }),
      );
      await rename(partial, final);
      return;
    } catch (e) {
      if (!(e instanceof ContentMismatchError)) throw e; // network, disk, signal: keep the partial to resume
      // Wrong bytes are never kept for a resume. A kept prefix may be what was wrong: try once from scratch.
      await unlink(partial).catch(() => {});
      if (!offset) throw e;
    }
  }
}

/** Hashes a kept partial into `digester`; returns its length, or 0 (after removing it) when it cannot be a prefix. */
async function _keptPrefix(partial: string, size: number, digester: Digester): Promise<number> {
  let length: number;
  try {
    length = (await stat(partial)).size;
  } catch {
    return 0;
  }
  if (length === 0 || length > size) {
    await unlink(partial).catch(() => {});
    return 0;
  }
  for await (const c of createReadStream(partial, { end: length - 1, highWaterMark: 1 << 20 }))
    digester.update(c as Buffer);
  return length;
}
