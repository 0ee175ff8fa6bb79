// A worker thread of the segment pool (segment-pool.ts): reads a segment's context files into their places in its
// tar, hashes each file (SHA-256 for the layer cache, SHA-1 for the SBOM) and compresses the segment, off the thread
// that lays out the next segments and writes the blob.
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { compressBuffer } from './compress.js';
import { ChangedFileError, readInto } from './tar.js';
import type { SegmentReply, SegmentTask } from './segment-pool.js';

parentPort!.on('message', (t: SegmentTask) => {
  _run(t).then(
    (reply) => parentPort!.postMessage(reply, [reply.tar, reply.compressed.buffer as ArrayBuffer]),
    (e: Error) =>
      parentPort!.postMessage({ id: t.id, error: e.message, changed: e instanceof ChangedFileError || undefined }),
  );
});

async function _run(t: SegmentTask): Promise<SegmentReply> {
  for (const r of t.reads) readInto(t.tar, r);
  const tar = Buffer.from(t.tar, 0, t.length);
  const sums: string[] = [];
  for (let i = 0; i < t.files.length; i += 2) {
    const data = tar.subarray(t.files[i], t.files[i] + t.files[i + 1]);
    sums.push(createHash('sha256').update(data).digest('hex'), createHash('sha1').update(data).digest('hex'));
  }
  let compressed = await compressBuffer(t.compression, tar, { sync: true });
  // Sent back without a copy when it owns its memory; a view of a shared pool buffer is copied out first.
  if (compressed.byteOffset !== 0 || compressed.byteLength !== compressed.buffer.byteLength)
    compressed = Buffer.from(new Uint8Array(compressed).buffer);
  return { id: t.id, tar: t.tar, compressed, sums };
}
