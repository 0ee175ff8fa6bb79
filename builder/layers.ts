// Plan → layer blob: tar (reproducible) → compressor → blob dir, in one streaming pass, or a layer-cache hit.
import { rename } from 'node:fs/promises';
import type { Digest } from '../spec/digest.js';
import type { Compression } from '../spec/build-spec.js';
import { BlobDir } from './blobs.js';
import { LayerCache, layerKey } from './cache.js';
import { compressionIdentity, layerMediaType, writeCompressed } from './compress.js';
import type { Layer } from './image.js';
import type { LayerPlan, Member } from './plan.js';
import { tarStream } from './tar.js';

export interface LayerBuildOptions {
  epoch: number;
  compression: Compression;
  blobs: BlobDir;
  cache?: LayerCache;
}

export interface BuiltLayer {
  layer: Layer;
  cached: boolean;
  name: string;
  uncompressedSize?: number;
}

export async function buildLayer(plan: LayerPlan, opts: LayerBuildOptions): Promise<BuiltLayer> {
  const ident = compressionIdentity(opts.compression);
  const mediaType = layerMediaType(opts.compression);
  const known = new Map<Member, Digest>();
  const lookup = (m: Member) => known.get(m) ?? opts.cache?.contentDigest(m);
  const key = opts.cache ? layerKey(plan.members, opts.epoch, ident, lookup) : undefined;
  if (key && opts.cache) {
    const hit = await opts.cache.get(key);
    if (hit && hit.mediaType === mediaType && (await opts.blobs.has(hit.digest, hit.size))) {
      return { layer: _layer(hit.digest, hit.size, hit.diffId, mediaType, plan.name, opts.blobs), cached: true, name: plan.name };
    }
  }
  const tmp = await opts.blobs.staging();
  const w = await writeCompressed(
    tarStream(plan.members, opts.epoch, (m, d) => {
      known.set(m, d);
      opts.cache?.rememberContent(m, d);
    }),
    opts.compression,
    tmp,
  );
  await rename(tmp, opts.blobs.path(w.digest));
  if (opts.cache) {
    const k = key ?? layerKey(plan.members, opts.epoch, ident, lookup);
    if (k) await opts.cache.put(k, { digest: w.digest, size: w.size, diffId: w.diffId, mediaType });
  }
  return { layer: _layer(w.digest, w.size, w.diffId, mediaType, plan.name, opts.blobs), cached: false, name: plan.name, uncompressedSize: w.uncompressedSize };
}

function _layer(digest: Digest, size: number, diffId: Digest, mediaType: string, _name: string, blobs: BlobDir): Layer {
  return { descriptor: { mediaType, digest, size }, diffId, open: () => blobs.open(digest) };
}
