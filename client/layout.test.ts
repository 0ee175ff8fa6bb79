// The OCI layout writer's one rule: it never holds a wrong blob under a digest name — also when it hard-links a
// local file (the builder's blob cache) instead of copying it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { digestOf } from '../spec/digest.js';
import { OciLayout } from './layout.js';

test('a local file is hard-linked into the layout after its digest is checked; a wrong one is refused and leaves nothing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-layout-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const layout = await OciLayout.create(join(dir, 'out'));
  const bytes = Buffer.from('layer bytes '.repeat(1000));
  const desc = {
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: digestOf(bytes),
    size: bytes.length,
  };
  const local = join(dir, 'cached-blob');
  await writeFile(local, bytes);
  const copied = () => Readable.from([Buffer.from('never read: the link path is taken')]);

  assert.equal(await layout.pushBlob(desc, copied, { localFile: local }), 'uploaded');
  const path = layout.blobPath(desc.digest);
  assert.deepEqual(await readFile(path), bytes);
  assert.equal((await stat(path)).ino, (await stat(local)).ino, 'linked, not copied');
  assert.equal(await layout.pushBlob(desc, copied, { localFile: local }), 'exists');

  // A local file whose bytes do not match the digest (a corrupted cache) is never published.
  const other = Buffer.from('other bytes '.repeat(1000));
  const wrong = { ...desc, digest: digestOf(other) };
  await assert.rejects(layout.pushBlob(wrong, copied, { localFile: local }));
  await assert.rejects(stat(layout.blobPath(wrong.digest)), { code: 'ENOENT' });
  const leftovers = (await readdir(join(dir, 'out/blobs/sha256'))).filter((n) => n.endsWith('.tmp'));
  assert.deepEqual(leftovers, []);
});
