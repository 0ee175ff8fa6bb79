// `berth export`: one platform image's filesystem flattened into a single tar, as `crane export` and
// `docker export` give it. Layers are read top (last) to bottom and each path is written the first time it is
// seen, so the last layer wins; whiteouts (image-spec layer.md "Whiteouts") hide what lies below them:
//   `.wh.NAME`        — NAME and everything under it, in lower layers;
//   `.wh..wh..opq`    — an opaque directory: everything under it in lower layers (its own layer's entries stay).
// Whiteout files themselves are never written. Layers stream through (verified, decompressed, re-packed); only
// the set of paths seen is held in memory.
import { createGunzip } from 'node:zlib';
import { posix } from 'node:path';
import type { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar, { type Header } from 'tar-stream';
import type { Descriptor } from '../spec/manifest.js';
import type { ImageSource } from './copy.js';
import { MutateError, type LoadedImage } from './mutate.js';

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

export interface ExportResult {
  entries: number;
  bytes: number;
  layers: number;
}

/** Writes `img`'s flattened filesystem as a tar to `out` (which is ended). */
export async function exportImage(img: LoadedImage, out: Writable): Promise<ExportResult> {
  const pack = tar.pack();
  const writing = pipeline(pack, out);
  writing.catch(() => {}); // awaited below
  const state: _State = { seen: new Map(), opaque: new Set(), entries: 0, bytes: 0 };
  try {
    for (let i = img.doc.layers.length - 1; i >= 0; i--) await _layer(img.source, img.doc.layers[i], pack, state);
    pack.finalize();
  } catch (e) {
    pack.destroy(e as Error);
    throw e;
  }
  await writing;
  return { entries: state.entries, bytes: state.bytes, layers: img.doc.layers.length };
}

interface _State {
  /** Paths already decided by a higher layer: true = a tombstone or non-directory, which hides everything below. */
  seen: Map<string, boolean>;
  /** Directories made opaque by a higher layer. */
  opaque: Set<string>;
  entries: number;
  bytes: number;
}

/** How a layer's media type says it is compressed (image-spec media-types.md; Docker's rootfs.diff types). */
export async function decompressorFor(d: Descriptor): Promise<Transform[]> {
  const t = d.mediaType;
  if (/zstd/.test(t)) {
    // Loaded only for zstd layers: the native addon is optional for everything else.
    const { DecompressStream } = await import('zstd-napi').catch(() => {
      throw new MutateError(`layer ${d.digest} is zstd-compressed and the zstd addon (zstd-napi) is not available`);
    });
    return [new DecompressStream() as unknown as Transform];
  }
  if (/gzip/.test(t)) return [createGunzip()];
  if (/tar$/.test(t) || t === 'application/vnd.docker.image.rootfs.diff.tar') return [];
  throw new MutateError(`layer ${d.digest} has media type ${t}, which is not a (compressed) tar layer`);
}

async function _layer(src: ImageSource, d: Descriptor, pack: tar.Pack, state: _State): Promise<void> {
  const decoders = await decompressorFor(d);
  const ex = tar.extract();
  const blob = (await src.blob(d, 0)) as Readable;
  const feed = pipeline([blob, ...decoders, ex as unknown as NodeJS.WritableStream]);
  feed.catch(() => {});
  const opaqueHere: string[] = [];
  const seenHere = new Map<string, boolean>();
  try {
    for await (const entry of ex) {
      const h = entry.header as Header & { pax?: Record<string, string> };
      // Names are relative to the root (leading `/` and `./` go); a `..` segment would let whoever unpacks the
      // export write outside their target directory, so such a layer is refused rather than passed on.
      if (h.name.split('/').includes('..'))
        throw new MutateError(`member "${h.name}" has a '..' segment; refusing to export it`);
      const name = posix
        .normalize(h.name)
        .replace(/^(\.?\/)+/, '')
        .replace(/\/+$/, '');
      const base = posix.basename(name);
      const dir = posix.dirname(name);
      const tombstone = base.startsWith(WHITEOUT);
      const path = name === '' || name === '.' ? '.' : tombstone ? posix.join(dir, base.slice(WHITEOUT.length)) : name;
      if (base === OPAQUE) {
        opaqueHere.push(dir);
        entry.resume();
        continue;
      }
      if (state.seen.has(path) || seenHere.has(path) || _hidden(path, state)) {
        entry.resume();
        continue;
      }
      seenHere.set(path, tombstone || h.type !== 'directory');
      if (tombstone) {
        entry.resume();
        continue;
      }
      const header: Header & { pax?: Record<string, string> } = {
        ...h,
        name: h.type === 'directory' ? `${path}/` : path,
      };
      if ((h.size ?? 0) > 0 && (h.type === 'file' || h.type === 'contiguous-file' || !h.type)) {
        await pipeline(entry, pack.entry(header));
        state.bytes += h.size ?? 0;
      } else {
        entry.resume();
        await new Promise<void>((res, rej) =>
          pack.entry({ ...header, size: 0 }, (e) => (e ? rej(e) : res())).end(undefined as unknown as Buffer),
        );
      }
      state.entries++;
    }
    await feed;
  } catch (e) {
    ex.destroy();
    if (e instanceof MutateError) throw new MutateError(`layer ${d.digest}: ${e.message}`);
    throw new MutateError(`cannot read layer ${d.digest} (${d.mediaType}) as a tar: ${(e as Error).message}`);
  }
  // A layer's own whiteouts apply to the layers below it, not to its siblings.
  for (const [p, v] of seenHere) state.seen.set(p, v);
  for (const o of opaqueHere) state.opaque.add(o);
}

/** Under a path a higher layer replaced with a non-directory or a tombstone, or under an opaque directory. */
function _hidden(path: string, state: _State): boolean {
  for (let p = posix.dirname(path); p !== '.' && p !== '/'; p = posix.dirname(p)) {
    if (state.seen.get(p) === true || state.opaque.has(p)) return true;
  }
  return state.opaque.has('.') && path !== '.';
}
