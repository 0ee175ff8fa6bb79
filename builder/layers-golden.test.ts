// Golden layer bytes: a fixed tree (long and non-ASCII names, symlinks, owners, modes, an empty and a streamed file,
// several segments) built cold must give exactly these digests. The diffID (the tar) is pinned outright; the blob
// digests are pinned for the compressor versions they were taken with (compressionIdentity), and for any version
// the blob must be each segment's tar compressed alone as one gzip member, in order — the segment format.
// These pins were taken before the builder's tar encoder and layer pipeline were rewritten for speed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants as zc, gunzipSync, gzipSync } from 'node:zlib';
import { decompress } from 'zstd-napi';
import { digestOf } from '../spec/digest.js';
import { BlobDir } from './blobs.js';
import { LayerCache } from './cache.js';
import { compressionIdentity } from './compress.js';
import { Context } from './context.js';
import { buildLayer } from './layers.js';
import { planLayer } from './plan.js';
import { parseSpec } from './spec.js';

const DIFF_ID = 'sha256:94e8478cb8317bd715d99f0066d5da85900def9d2514d5325951085dfd4a5b19';
const BLOBS: Record<string, string> = {
  'gzip/6/zlib-1.3.1-e00f703': 'sha256:88aa580378c4bba0c9bde8988e2341894405b14328413ec304549a7b1adb4c06',
  'zstd/3/zstd-1.5.7': 'sha256:fdc385f085187b456130e9f3c5cde13d56ffcf8c928023deb0d185d103e25862',
};

/** Deterministic bytes: text-like (compressible) or a SHA-256 chain (incompressible). */
function bytes(seed: string, size: number, random: boolean): Buffer {
  if (!random) {
    const line = `${seed}: the quick brown fox jumps over the lazy dog\n`;
    return Buffer.from(line.repeat(Math.ceil(size / line.length)).slice(0, size));
  }
  const out = Buffer.alloc(size);
  let h = createHash('sha256').update(seed).digest();
  for (let at = 0; at < size; at += 32) {
    h.copy(out, at);
    h = createHash('sha256').update(h).digest();
  }
  return out;
}

async function tree(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-golden-'));
  const put = async (p: string, b: Buffer | string) => {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), b);
  };
  for (let i = 0; i < 1200; i++)
    await put(`t/d${i % 13}/f${i}.txt`, bytes(`f${i}`, 1000 + ((i * 37) % 5000), i % 3 === 2));
  await put('t/big.bin', bytes('big', (1 << 20) + 12345, true)); // above SMALL_FILE: the streamed path
  await put('t/huge.txt', bytes('huge', 33 << 20, false)); // a segment above SEGMENT_MAX_BYTES: tarred as a stream
  await put('t/empty', '');
  await put('t/exact512', 'e'.repeat(512));
  await put(`t/${'p'.repeat(90)}/${'n'.repeat(60)}.txt`, 'ustar prefix split'); // > 100 bytes, fits prefix+name
  await put(`t/${'d'.repeat(120)}/${'f'.repeat(200)}`, 'pax name'); // > 255 bytes: PAX path
  await put('t/ü/ñ.txt', 'utf8 name'); // non-ASCII: PAX path
  await symlink('exact512', join(dir, 't', 'link'));
  await symlink('ü/ñ.txt'.padEnd(130, '/'), join(dir, 't', 'longlink')); // > 100 bytes: PAX linkpath
  return dir;
}

const SPEC =
  'apiVersion: berth/v1\nkind: Image\nlayers:\n  - name: l\n    properties: { uid: 1000, gid: 1001, user: app, group: staff }\n' +
  '    files:\n      - { src: "t/**", dest: /srv/ }\n      - { inline: "hello\\n", dest: /etc/hi, mode: "0600" }\n' +
  '      - { directory: /var/empty, mode: "0000" }\n      - { symlink: /srv/big.bin, dest: /big }\n';

for (const compression of ['gzip', 'zstd'] as const) {
  test(`a cold build of the golden tree gives the pinned bytes (${compression})`, async (t) => {
    const dir = await tree();
    t.after(() => rm(dir, { recursive: true, force: true }));
    const plan = await planLayer(parseSpec(SPEC), 0, { os: 'linux', architecture: 'amd64' }, await Context.open(dir));
    const blobs = new BlobDir(join(dir, '.out', 'blobs'));
    const cache = await LayerCache.open(join(dir, '.out', 'cache'));
    const built = await buildLayer(plan, { epoch: 1700000000, compression, blobs, cache, slot: 'golden' });
    const blob = await readFile(blobs.path(built.layer.descriptor.digest));
    const tar = compression === 'gzip' ? gunzipSync(blob) : decompress(blob);
    assert.equal(digestOf(tar), built.layer.diffId);
    assert.equal(built.layer.diffId, DIFF_ID, 'the layer tar changed');
    const segs = built.segments!;
    assert.ok(segs.length >= 3, `several segments, got ${segs.length}`);
    if (compression === 'gzip') {
      // Each segment one gzip member of level 6 (MTIME 0, OS 255), then one holding the end-of-archive blocks.
      const parts: Buffer[] = [];
      let at = 0;
      for (const s of segs) {
        assert.equal(s.offset, at);
        const seg = gunzipSync(blob.subarray(s.offset, s.offset + s.length));
        parts.push(_gzip(seg));
        at += s.length;
      }
      parts.push(_gzip(Buffer.alloc(1024)));
      assert.ok(Buffer.concat(parts).equals(blob), 'the blob is each segment gzipped alone, in order');
    }
    const pinned = BLOBS[await compressionIdentity(compression)];
    if (pinned) assert.equal(built.layer.descriptor.digest, pinned, `${compression} blob changed`);
  });
}

function _gzip(data: Buffer): Buffer {
  const out = gzipSync(data, { level: 6, memLevel: 8, windowBits: 15, strategy: zc.Z_DEFAULT_STRATEGY });
  out.fill(0, 4, 9);
  out[9] = 0xff;
  return out;
}

test('the segment workers never keep a finished build process alive (one segment: one worker stays unused)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-exit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'a.txt'), 'a');
  const layers = new URL('./layers.ts', import.meta.url).href;
  const script =
    `const { buildLayer } = await import(${JSON.stringify(layers)});\n` +
    `const { BlobDir } = await import(${JSON.stringify(new URL('./blobs.ts', import.meta.url).href)});\n` +
    `const m = { path: 'a.txt', type: 'file', mode: 420, uid: 0, gid: 0, size: 1, source: { data: Buffer.from('a') } };\n` +
    `const b = await buildLayer({ name: 'l', members: [m], origins: new Map() }, { epoch: 0, compression: 'zstd', blobs: new BlobDir(${JSON.stringify(dir)}) });\n` +
    'console.log(b.layer.diffId);\n';
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    timeout: 60_000,
    encoding: 'utf8',
  });
  assert.equal(r.signal, null, `still running after 60 s: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^sha256:[0-9a-f]{64}$/m);
});
