// The pure parts of the image verbs: config edits, and export's whiteout rules where crane's export is not a
// reference (it ignores opaque directories): image-spec layer.md "Whiteouts".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { digestOf } from '../spec/digest.js';
import type { Descriptor, ImageManifest } from '../spec/manifest.js';
import type { ImageSource } from './copy.js';
import { exportImage } from './export.js';
import { editConfig, MutateError, type ConfigDoc, type LoadedImage } from './mutate.js';

const base: ConfigDoc = {
  architecture: 'amd64',
  os: 'linux',
  config: { Env: ['PATH=/bin', 'A=1'], Entrypoint: ['/old'], Cmd: ['x'], Labels: { keep: 'k' } },
  rootfs: { type: 'layers', diff_ids: [] },
};

test('editConfig: env merges by name, a new entrypoint drops cmd, labels and ports add up, nothing else changes', () => {
  const out = editConfig(base, {
    env: ['A=2', 'B=3'],
    entrypoint: ['/new'],
    labels: { l: 'v' },
    exposedPorts: ['80', '53/udp'],
  });
  assert.deepEqual(out.config, {
    Env: ['PATH=/bin', 'A=2', 'B=3'],
    Entrypoint: ['/new'],
    Labels: { keep: 'k', l: 'v' },
    ExposedPorts: { '80/tcp': {}, '53/udp': {} },
  });
  assert.deepEqual(base.config?.Cmd, ['x'], 'the input is not changed');
  assert.deepEqual(editConfig(base, { entrypoint: [], cmd: ['y'] }).config?.Cmd, ['y']);
  assert.equal(editConfig(base, { entrypoint: [] }).config?.Entrypoint, undefined);
  assert.throws(() => editConfig(base, { exposedPorts: ['70000'] }), MutateError);
  assert.throws(() => editConfig(base, { env: ['=x'] }), /must be KEY=VALUE/);
});

type E = { name: string; type?: 'file' | 'directory' | 'symlink'; body?: string };

async function layer(entries: E[]): Promise<Buffer> {
  const pack = tar.pack();
  const parts: Buffer[] = [];
  const done = new Promise<void>((res, rej) => {
    pack.on('data', (b) => parts.push(b as Buffer));
    pack.on('end', res);
    pack.on('error', rej);
  });
  for (const e of entries) {
    await new Promise<void>((res, rej) =>
      pack.entry({ name: e.name, type: e.type ?? 'file', mode: 0o644 }, e.body ?? '', (err) =>
        err ? rej(err) : res(),
      ),
    );
  }
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(parts));
}

test('export: opaque directories hide lower contents but keep their own layer’s; .wh. hides a subtree; a file above a dir replaces it', async () => {
  const layers = [
    await layer([
      { name: 'a/', type: 'directory' },
      { name: 'a/x', body: 'x1' },
      { name: 'a/y', body: 'y1' },
      { name: 'b/', type: 'directory' },
      { name: 'b/z', body: 'z1' },
      { name: 'c', body: 'c was a file' },
      { name: 'd/', type: 'directory' },
      { name: 'd/keep', body: 'kept' },
    ]),
    await layer([
      { name: 'a/', type: 'directory' },
      { name: 'a/.wh..wh..opq' },
      { name: 'a/new', body: 'new' },
      { name: '.wh.b' },
      { name: 'c/', type: 'directory' },
      { name: 'c/inner', body: 'inner' },
    ]),
    await layer([{ name: './a/x', body: 'x3' }]),
  ];
  const blobs = new Map(layers.map((b) => [digestOf(b), b]));
  const descs: Descriptor[] = layers.map((b) => ({
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: digestOf(b),
    size: b.length,
  }));
  const source = {
    label: 'memory',
    manifest: () => Promise.reject(new Error('unused')),
    blob: (d: Descriptor) => Readable.from([blobs.get(d.digest)!]),
  } as unknown as ImageSource;
  const doc = { schemaVersion: 2, config: descs[0], layers: descs } as ImageManifest;
  const img = { source, doc } as unknown as LoadedImage;
  const out: Buffer[] = [];
  await exportImage(
    img,
    new Writable({
      write(c, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  const files: Record<string, string> = {};
  const ex = tar.extract();
  const reading = (async () => {
    for await (const e of ex) {
      let body = '';
      for await (const c of e) body += c;
      files[e.header.name] = e.header.type === 'directory' ? '<dir>' : body;
    }
  })();
  ex.end(Buffer.concat(out));
  await reading;
  const evil = await layer([
    { name: 'ok', body: 'x' },
    { name: 'a/../../etc/passwd', body: 'root' },
  ]);
  blobs.set(digestOf(evil), evil);
  const bad = { ...img, doc: { ...doc, layers: [{ ...descs[0], digest: digestOf(evil), size: evil.length }] } };
  await assert.rejects(
    exportImage(bad, new Writable({ write: (_c, _e, cb) => cb() })),
    /member "a\/\.\.\/\.\.\/etc\/passwd" has a '\.\.' segment/,
  );
  assert.deepEqual(files, {
    'a/x': 'x3',
    'a/': '<dir>',
    'a/new': 'new',
    'c/': '<dir>',
    'c/inner': 'inner',
    'd/': '<dir>',
    'd/keep': 'kept',
  });
});
