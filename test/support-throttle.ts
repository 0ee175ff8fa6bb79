// Test support for the CLI's progress display: a registry reached through a slow link, and images with many
// layers. The proxy is a plain HTTP reverse proxy on loopback that paces every request and response body to
// `bytesPerSecond` per connection, so a transfer takes long enough for progress to be seen.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

/** Passes bytes on at no more than `bytesPerSecond`, in slices of ~1/20 s. */
export function throttle(bytesPerSecond: number): Transform {
  const slice = Math.max(1024, Math.floor(bytesPerSecond / 20));
  return new Transform({
    async transform(chunk: Buffer, _enc, cb: TransformCallback) {
      for (let i = 0; i < chunk.length; i += slice) {
        this.push(chunk.subarray(i, i + slice));
        await sleep((Math.min(slice, chunk.length - i) / bytesPerSecond) * 1000);
      }
      cb();
    },
  });
}

export interface SlowProxy {
  /** `127.0.0.1:PORT`, for image references. */
  host: string;
  stop(): Promise<void>;
}

/** A reverse proxy to `target` (`http://127.0.0.1:PORT`) pacing each body to `bytesPerSecond`. */
export async function startSlowProxy(target: string, bytesPerSecond: number): Promise<SlowProxy> {
  const up = new URL(target);
  let self = '';
  const server: Server = createServer((req, res) => {
    const out = request(
      {
        host: up.hostname,
        port: up.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: up.host },
      },
      (r) => {
        const headers = { ...r.headers };
        // Keep the client on the slow path when the registry answers with absolute URLs.
        if (typeof headers.location === 'string') headers.location = headers.location.replace(up.origin, self);
        res.writeHead(r.statusCode ?? 502, headers);
        pipeline(r, throttle(bytesPerSecond), res).catch(() => res.destroy());
      },
    );
    out.on('error', () => res.destroy());
    pipeline(req, throttle(bytesPerSecond), out).catch(() => out.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  self = `http://127.0.0.1:${port}`;
  return {
    host: `127.0.0.1:${port}`,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * An OCI layout (image-layout.md) with one image of `layers` layers of `layerBytes` random bytes each (random so
 * every layer is a distinct blob and nothing compresses), tagged `tag`. Written as streams, never held in memory.
 */
export async function makeLayeredLayout(
  dir: string,
  opts: { layers: number; layerBytes: number; tag?: string },
): Promise<{ dir: string; tag: string; bytes: number; layers: { digest: string; size: number }[]; manifest: string }> {
  const tag = opts.tag ?? 'v1';
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (data: Buffer) => {
    const hex = createHash('sha256').update(data).digest('hex');
    await writeFile(join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const layers = [];
  for (let i = 0; i < opts.layers; i++) {
    const tmp = join(blobs, `.layer-${i}`);
    const hash = createHash('sha256');
    const file = createWriteStream(tmp);
    for (let left = opts.layerBytes; left > 0; left -= 1 << 20) {
      const chunk = randomBytes(Math.min(left, 1 << 20));
      hash.update(chunk);
      if (!file.write(chunk)) await new Promise<void>((r) => file.once('drain', () => r()));
    }
    await new Promise<void>((r) => file.end(() => r()));
    const hex = hash.digest('hex');
    await rename(tmp, join(blobs, hex));
    layers.push({
      mediaType: 'application/vnd.oci.image.layer.v1.tar',
      digest: `sha256:${hex}`,
      size: opts.layerBytes,
    });
  }
  const config = await put(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
        config: {},
      }),
    ),
  );
  const manifest = await put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers,
      }),
    ),
  );
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return { dir, tag, bytes: opts.layers * opts.layerBytes, layers, manifest: manifest.digest };
}
