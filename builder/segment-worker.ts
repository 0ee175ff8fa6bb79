// A worker thread of the segment pool (segment-pool.ts): runs a segment's reads, hashes and compression
// (segment-task.ts) off the thread that lays out the next segments and writes the blob.
import { parentPort } from 'node:worker_threads';
import { ChangedFileError } from './tar.js';
import type { SegmentReply, SegmentTask } from './segment-pool.js';
import { runSegment } from './segment-task.js';

parentPort!.on('message', (t: SegmentTask) => {
  _run(t).then(
    (reply) => parentPort!.postMessage(reply, [reply.tar, reply.compressed.buffer as ArrayBuffer]),
    (e: Error) =>
      parentPort!.postMessage({ id: t.id, error: e.message, changed: e instanceof ChangedFileError || undefined }),
  );
});

async function _run(t: SegmentTask): Promise<SegmentReply> {
  const { parts, sums } = runSegment(t, { sync: true });
  let compressed = parts.length === 1 ? await parts[0] : Buffer.concat(await Promise.all(parts));
  // Sent back without a copy when it owns its memory; a view of a shared pool buffer is copied out first.
  if (compressed.byteOffset !== 0 || compressed.byteLength !== compressed.buffer.byteLength)
    compressed = Buffer.from(new Uint8Array(compressed).buffer);
  return { id: t.id, tar: t.tar, compressed, sums };
}
