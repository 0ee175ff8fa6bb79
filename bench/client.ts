// The streaming client the registry bench uses against berth, distribution and a /dev/null sink alike: node's http
// with a keep-alive agent, bodies generated on the fly (never a whole blob in memory), every step timed.
//
// Blob contents: a pool of 64 random 1 MiB chunks is made once; blob `seed` is a unique first chunk followed by pool
// chunks in a seed-dependent order. Writing the same immutable Buffer many times costs the client nothing but the
// syscalls, so the client stays far from being the bottleneck (its own rate is measured against a sink).
import { createHash, randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Agent, request, type IncomingMessage } from 'node:http';

export const MiB = 1 << 20;
const POOL = Array.from({ length: 64 }, () => randomBytes(MiB));
const agent = new Agent({ keepAlive: true, maxSockets: 8 });

/** The i-th 1 MiB chunk of blob `seed`. Chunk 0 is unique to the seed, so every seed is a different blob. */
function chunkOf(seed: number, i: number): Buffer {
  if (i === 0) {
    const first = Buffer.from(POOL[0]);
    first.writeUInt32BE(seed, 0);
    first.write('berth-bench', 4);
    return first;
  }
  return POOL[(i * 7 + seed) % POOL.length];
}

export interface BlobSpec {
  seed: number;
  size: number;
  digest: string;
}

const digests = new Map<string, string>();

/** The blob's sha256, computed by generating it once (memoised; not part of any timed step). */
export function blob(seed: number, size: number): BlobSpec {
  if (size % MiB) throw new Error('bench blobs are whole MiB');
  const key = `${seed}/${size}`;
  let digest = digests.get(key);
  if (!digest) {
    const h = createHash('sha256');
    for (let i = 0; i < size / MiB; i++) h.update(chunkOf(seed, i));
    digest = `sha256:${h.digest('hex')}`;
    digests.set(key, digest);
  }
  return { seed, size, digest };
}

/** Writes blob `spec` to a file (for clients that upload files: curl, crane). */
export async function writeBlobFile(spec: BlobSpec, path: string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (const c of chunks(spec)) await fh.write(c);
  } finally {
    await fh.close();
  }
}

interface Res {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** Bytes received (the body is kept only when `keepBody`). */
  bytes: number;
}

/**
 * One request; `body` is written chunk by chunk with backpressure. The response body is discarded unless
 * `keepBody` (then it is collected: only for small answers).
 */
export function call(
  method: string,
  url: string,
  opts: { headers?: Record<string, string | number>; body?: Iterable<Buffer>; keepBody?: boolean } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers: opts.headers }, (res) => {
      const kept: Buffer[] = [];
      let bytes = 0;
      res.on('data', (b: Buffer) => {
        bytes += b.length;
        if (opts.keepBody) kept.push(b);
      });
      res.once('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(kept), bytes }),
      );
      res.once('error', reject);
    });
    req.once('error', reject);
    if (!opts.body) return void req.end();
    const it = opts.body[Symbol.iterator]();
    const pump = () => {
      for (;;) {
        const next = it.next();
        if (next.done) return void req.end();
        if (!req.write(next.value)) return void req.once('drain', pump);
      }
    };
    pump();
  });
}

function* chunks(spec: BlobSpec, from = 0, to = spec.size): Generator<Buffer> {
  for (let i = from / MiB; i < to / MiB; i++) yield chunkOf(spec.seed, i);
}

function expect(res: Res, status: number, what: string): Res {
  if (res.status !== status)
    throw new Error(`${what}: HTTP ${res.status} (expected ${status}) ${res.body.toString().slice(0, 300)}`);
  return res;
}

function absolute(base: string, location: string | undefined): string {
  if (!location) throw new Error('upload answered without a Location');
  return new URL(location, base).href;
}

function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

/** Monolithic push: POST to open a session, then one PUT carrying the whole body. Returns seconds. */
export async function pushMonolithic(base: string, repo: string, spec: BlobSpec): Promise<number> {
  const t0 = performance.now();
  const post = expect(await call('POST', `${base}/v2/${repo}/blobs/uploads/`, { keepBody: true }), 202, 'POST upload');
  const put = await call('PUT', withDigest(absolute(base, post.headers.location), spec.digest), {
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': spec.size },
    body: chunks(spec),
    keepBody: true,
  });
  expect(put, 201, 'PUT blob');
  return (performance.now() - t0) / 1000;
}

/** Chunked push: POST, one PATCH per `chunk` bytes with Content-Range, then a body-less PUT ?digest=. Seconds. */
export async function pushChunked(base: string, repo: string, spec: BlobSpec, chunk = 16 * MiB): Promise<number> {
  const t0 = performance.now();
  let location = absolute(
    base,
    expect(await call('POST', `${base}/v2/${repo}/blobs/uploads/`, { keepBody: true }), 202, 'POST upload').headers
      .location,
  );
  for (let start = 0; start < spec.size; start += chunk) {
    const end = Math.min(spec.size, start + chunk);
    const patch = await call('PATCH', location, {
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Length': end - start,
        'Content-Range': `${start}-${end - 1}`,
      },
      body: chunks(spec, start, end),
      keepBody: true,
    });
    location = absolute(base, expect(patch, 202, `PATCH ${start}-${end - 1}`).headers.location);
  }
  expect(
    await call('PUT', withDigest(location, spec.digest), { headers: { 'Content-Length': 0 }, keepBody: true }),
    201,
    'PUT digest',
  );
  return (performance.now() - t0) / 1000;
}

/** GET of a whole blob, body counted and dropped. Seconds. */
export async function pull(base: string, repo: string, spec: BlobSpec): Promise<number> {
  const t0 = performance.now();
  const res = await call('GET', `${base}/v2/${repo}/blobs/${spec.digest}`);
  if (res.status !== 200 || res.bytes !== spec.size)
    throw new Error(`pull: HTTP ${res.status}, ${res.bytes} of ${spec.size} bytes`);
  return (performance.now() - t0) / 1000;
}

/** Pushes small content (config, manifest pieces) monolithically. */
export async function pushSmall(base: string, repo: string, data: Buffer): Promise<string> {
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const post = expect(await call('POST', `${base}/v2/${repo}/blobs/uploads/`, { keepBody: true }), 202, 'POST upload');
  expect(
    await call('PUT', withDigest(absolute(base, post.headers.location), digest), {
      headers: { 'Content-Length': data.length },
      body: [data],
      keepBody: true,
    }),
    201,
    'PUT small blob',
  );
  return digest;
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** Pushes a tiny one-layer image and tags it; returns the layer's digest (for HEAD blob). */
export async function pushImage(base: string, repo: string, tag: string): Promise<string> {
  const layer = Buffer.from(randomBytes(4096));
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
  );
  const layerDigest = await pushSmall(base, repo, layer);
  const configDigest = await pushSmall(base, repo, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length }],
    }),
  );
  const put = await call('PUT', `${base}/v2/${repo}/manifests/${tag}`, {
    headers: { 'Content-Type': OCI_MANIFEST, 'Content-Length': manifest.length },
    body: [manifest],
    keepBody: true,
  });
  expect(put, 201, 'PUT manifest');
  return layerDigest;
}

/**
 * A /dev/null registry for measuring the client alone, run in its own node process like a registry would be:
 * POST answers 202 + Location, PUT/PATCH drain the body, GET of a blob streams `size` bytes of pool data.
 */
export const SINK_SERVER = `
const http = require('node:http');
const { randomBytes } = require('node:crypto');
const chunk = randomBytes(1 << 20);
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && /\\/blobs\\//.test(req.url)) {
    let left = Number(new URL(req.url, 'http://x').searchParams.get('size') || 0);
    res.writeHead(200, { 'Content-Length': left });
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
      }
      res.end();
    };
    return pump();
  }
  req.on('data', () => {});
  req.on('end', () => {
    if (req.method === 'POST') res.writeHead(202, { Location: '/v2/sink/blobs/uploads/x', 'Content-Length': 0 });
    else if (req.method === 'PUT') res.writeHead(201, { 'Content-Length': 0 });
    else res.writeHead(202, { Location: '/v2/sink/blobs/uploads/x', 'Content-Length': 0 });
    res.end();
  });
});
server.listen(Number(process.argv[1]), '127.0.0.1', () => process.send && process.send('ready'));
`;
