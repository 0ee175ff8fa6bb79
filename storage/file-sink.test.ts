import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileSink } from './file-sink.js';

/** `data` as a stream of chunks of the given sizes, cycling. */
function chunked(data: Buffer, sizes: number[]): Readable {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(data.subarray(at, at + n));
    at += n;
  }
  return Readable.from(out, { objectMode: false });
}

test('FileSink writes every byte in order at its place, in batches, from any start', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-sink-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'f');
  // Odd chunk sizes across many 1 MiB batches (several in flight at once), and a tail smaller than a batch.
  const data = randomBytes(9 * 1024 * 1024 + 12_345);
  const head = Buffer.from('already here');
  await writeFile(file, head);
  const fh = await open(file, 'r+');
  try {
    const sink = new FileSink(fh.fd, head.length, 4 * 1024 * 1024);
    await pipeline(chunked(data, [65_536, 1, 300_000, 7]), sink);
    assert.equal(sink.bytesWritten, data.length);
  } finally {
    await fh.close();
  }
  assert.ok((await readFile(file)).equals(Buffer.concat([head, data])));
});

test('FileSink fails the pipeline when the file cannot be written', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-sink-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'f'), '');
  const fh = await open(join(dir, 'f'), 'r'); // opened read-only: every write fails with EBADF
  t.after(() => fh.close());
  const sink = new FileSink(fh.fd, 0);
  await assert.rejects(pipeline(chunked(randomBytes(3 * 1024 * 1024), [65_536]), sink), /EBADF/);
});
