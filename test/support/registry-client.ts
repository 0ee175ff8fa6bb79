// A tiny raw HTTP helper for protocol tests: sends paths exactly as given (no URL normalisation, so `..` and `//`
// reach the server) and returns status, headers and body.
import { request } from 'node:http';
import { createHash } from 'node:crypto';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json<T = any>(): T;
  header(name: string): string | undefined;
}

export function raw(
  base: string,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body,
          json: () => JSON.parse(body.toString()),
          header: (n) => {
            const v = res.headers[n.toLowerCase()];
            return Array.isArray(v) ? v.join(', ') : v;
          },
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

export const sha256 = (data: Buffer | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Pushes a blob with a single POST (?digest=) and returns its digest. */
export async function pushBlob(base: string, name: string, data: Buffer | string): Promise<string> {
  const digest = sha256(data);
  const res = await raw(base, 'POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, {
    body: data,
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(Buffer.byteLength(data)) },
  });
  if (res.status !== 201) throw new Error(`push blob: ${res.status} ${res.body}`);
  return digest;
}

/** A minimal valid image manifest over a config and one layer that already exist in `name`. */
export function imageManifest(
  config: { digest: string; size: number },
  layers: Array<{ digest: string; size: number }>,
  extra: Record<string, unknown> = {},
): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l })),
      ...extra,
    }),
  );
}

export async function pushManifest(
  base: string,
  name: string,
  ref: string,
  body: Buffer,
  type = 'application/vnd.oci.image.manifest.v1+json',
): Promise<RawResponse> {
  return raw(base, 'PUT', `/v2/${name}/manifests/${ref}`, {
    body,
    headers: { 'Content-Type': type, 'Content-Length': String(body.length) },
  });
}
