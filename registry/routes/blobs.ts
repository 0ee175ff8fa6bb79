// GET/HEAD/DELETE /v2/<name>/blobs/<digest>  (end-2, end-10)
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { OciError, parseDigest, type Digest } from '../../spec/index.js';
import { isSendable } from '../../storage/index.js';
import { requireDeletes, type Ctx } from '../context.js';

export function parseDigestParam(value: string | undefined): Digest {
  try {
    return parseDigest(value ?? '').digest;
  } catch (e) {
    throw new OciError('DIGEST_INVALID', (e as Error).message, { detail: { digest: value?.slice(0, 200) } });
  }
}

export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Parses a single `Range: bytes=a-b | a- | -n` against `size`. Returns undefined when there is no Range header, or
 * when its unit is not `bytes` (RFC 9110 §14.2: a server "MUST ignore a Range header field that contains a range
 * unit it does not understand" → the full 200). Units are case-insensitive (§14.1).
 * spec: RFC 9110 §14.1.2; PROTOCOL.md end-2: an unsatisfiable or invalid byte range → 416, never a silent 200.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined || !/^\s*bytes\s*=/i.test(header)) return undefined;
  header = header.trim().replace(/^bytes\s*=\s*/i, 'bytes=');
  const unsatisfiable = () =>
    new OciError('RANGE_INVALID', `range "${header.slice(0, 100)}" not satisfiable for ${size} bytes`, {
      headers: {
        'Content-Range': `bytes */${size}`,
      },
    });
  const m = /^bytes=(\d{0,19})-(\d{0,19})$/.exec(header.trim());
  if (!m) {
    if (/^bytes=.*,/.test(header)) {
      // Multi-range: containers/image falls back to a plain download on 400.
      throw new OciError('RANGE_INVALID', 'multiple ranges are not supported; request one range', { status: 400 });
    }
    throw unsatisfiable();
  }
  const [, a, b] = m;
  let start: number, end: number;
  if (a === '' && b === '') throw unsatisfiable();
  if (a === '') {
    const n = Number(b);
    if (n === 0 || size === 0) throw unsatisfiable();
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
    if (b !== '' && Number(b) < start) throw unsatisfiable();
  }
  if (start >= size || !Number.isSafeInteger(start) || !Number.isSafeInteger(end)) throw unsatisfiable();
  return { start, end };
}

export async function getBlob(c: Ctx): Promise<Response> {
  const { store } = c.var.options;
  const name = c.var.target.name!;
  const digest = parseDigestParam(c.var.target.reference);
  const { size } = await store.blobs.stat(name, digest);
  const head = c.req.method === 'HEAD';
  const range = parseRange(c.req.header('range'), size);
  const headers: Record<string, string> = {
    'Docker-Content-Digest': digest,
    'Content-Type': 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: `"${digest}"`,
    'Cache-Control': 'max-age=31536000',
  };
  if (!head && !range) {
    const url = await store.blobs.redirectUrl(digest);
    if (url) return c.body(null, 307, { ...headers, Location: url });
  }
  const status = range ? 206 : 200;
  const length = range ? range.end - range.start + 1 : size;
  headers['Content-Length'] = String(length);
  if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
  if (head || length === 0) return c.body(null, status, headers);
  // Always bounded by the size announced in Content-Length: a stored file that somehow holds more (damage that
  // `berth fsck` quarantines) must never spill extra bytes into the connection as the start of a next response.
  const stream = await store.blobs.open(digest, range ?? { start: 0, end: size - 1 });
  return sendStream(c, status, headers, stream);
}

/** Streams a Node readable as the response, writing straight to the socket when running on node. */
export async function sendStream(
  c: Ctx,
  status: number,
  headers: Record<string, string>,
  stream: Readable,
): Promise<Response> {
  const outgoing = c.env?.outgoing;
  if (!outgoing) return new Response(Readable.toWeb(stream) as ReadableStream, { status, headers });
  outgoing.writeHead(status, { ...headers, 'Docker-Distribution-API-Version': 'registry/2.0' });
  (isSendable(stream) ? stream.sendTo(outgoing) : pipeline(stream, outgoing)).catch(() => {
    // The client went away mid-blob; nothing to clean up (reads have no side effects).
  });
  return RESPONSE_ALREADY_SENT;
}

export async function deleteBlob(c: Ctx): Promise<Response> {
  requireDeletes(c);
  const digest = parseDigestParam(c.var.target.reference);
  await c.var.options.store.blobs.unlink(c.var.target.name!, digest);
  return c.body(null, 202, { 'Docker-Content-Digest': digest });
}
