// Blob upload sessions: POST (start, single-POST monolithic, mount), PATCH, PUT, GET status, DELETE cancel.
// spec: distribution-spec "Pushing blobs" (end-4a/b, end-5, end-6, end-11, end-13, end-14).
import { Readable } from 'node:stream';
import { OciError, isValidName } from '../../spec/index.js';
import type { UploadInfo } from '../../storage/index.js';
import { bodyStream, hasBody, type Ctx } from '../context.js';
import { parseDigestParam } from './blobs.js';

function sessionHeaders(_c: Ctx, info: UploadInfo, size: number): Record<string, string> {
  return {
    Location: `/v2/${info.repository}/blobs/uploads/${info.id}`,
    // docker parses Range as `%d-%d`; an empty session answers `0-0`.
    Range: `0-${Math.max(0, size - 1)}`,
    'Docker-Upload-UUID': info.id,
    'Content-Length': '0',
  };
}

function blobCreated(c: Ctx, name: string, digest: string): Response {
  return c.body(null, 201, {
    Location: `/v2/${name}/blobs/${digest}`,
    'Docker-Content-Digest': digest,
    'Content-Length': '0',
  });
}

async function session(c: Ctx): Promise<UploadInfo> {
  return c.var.options.store.uploads.get(c.var.target.reference ?? '', c.var.target.name!, c.var.subject);
}

export async function startUpload(c: Ctx): Promise<Response> {
  const { store } = c.var.options;
  const name = c.var.target.name!;
  const mount = c.req.query('mount');
  const from = c.req.query('from');
  // auth sets mountAllowed=false when the caller may not pull `from`: then this is a plain upload (spec: end-11).
  if (mount !== undefined && c.get('mountAllowed') !== false) {
    const digest = parseDigestParam(mount);
    // No `from`, or an invalid one: fall back to a normal session (202), as the spec allows.
    if (from && isValidName(from) && from !== name) {
      const mounted = await store.blobs.mount(from, name, digest);
      if (mounted) return blobCreated(c, name, digest);
    } else if (from === name && (await store.blobs.isLinked(name, digest))) {
      return blobCreated(c, name, digest);
    }
  }
  const digestParam = c.req.query('digest');
  if (digestParam !== undefined) {
    // Single-POST monolithic upload (end-4b): the whole blob is in this request and its digest is known, so it
    // streams straight to the blob's final path, published only once the digest matched — no session at all.
    const digest = parseDigestParam(digestParam);
    const body = hasBody(c) ? bodyStream(c) : Readable.from([]);
    await store.uploads.putMonolithic(name, digest, body, _contentLength(c));
    return blobCreated(c, name, digest);
  }
  const info = await store.uploads.start(name, c.var.subject);
  if (hasBody(c)) {
    // A POST with a body but no digest: keep the bytes as the first chunk.
    const size = await store.uploads.append(info, 0, bodyStream(c), _contentLength(c));
    return c.body(null, 202, sessionHeaders(c, info, size));
  }
  return c.body(null, 202, { ...sessionHeaders(c, info, 0), 'OCI-Chunk-Min-Length': '0' });
}

function _contentLength(c: Ctx): number | undefined {
  const v = c.req.header('content-length');
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** `Content-Range: a-b` (the spec form, no `bytes` unit; tolerated with it). Returns the start offset. */
function chunkStart(c: Ctx): number | undefined {
  const header = c.req.header('content-range');
  if (header === undefined) return undefined;
  const m = /^(?:bytes )?(\d{1,19})-(\d{1,19})$/.exec(header.trim());
  if (!m) throw new OciError('RANGE_INVALID', `invalid Content-Range "${header.slice(0, 100)}": expected "start-end"`);
  const start = Number(m[1]),
    end = Number(m[2]);
  const length = _contentLength(c);
  if (end < start || (length !== undefined && length !== end - start + 1)) {
    throw new OciError('RANGE_INVALID', `Content-Range ${header} does not match Content-Length ${length}`);
  }
  return start;
}

export async function patchUpload(c: Ctx): Promise<Response> {
  const { store } = c.var.options;
  const info = await session(c);
  const start = chunkStart(c);
  const size = await store.uploads.append(info, start, bodyStream(c), _contentLength(c));
  return c.body(null, 202, sessionHeaders(c, info, size));
}

export async function putUpload(c: Ctx): Promise<Response> {
  const { store } = c.var.options;
  const info = await session(c);
  const digestParam = c.req.query('digest');
  if (digestParam === undefined) throw new OciError('DIGEST_INVALID', 'missing ?digest= on the final PUT of an upload');
  const digest = parseDigestParam(digestParam);
  // An optional last chunk; into an empty session it is a monolithic PUT (end-4a), the same fast path as a single
  // POST. The store decides which under the session's lock (a concurrent PATCH may be filling it right now).
  const last = hasBody(c) ? { body: bodyStream(c), offset: chunkStart(c), length: _contentLength(c) } : undefined;
  await store.uploads.finish(info, digest, last);
  return blobCreated(c, info.repository, digest);
}

export async function getUpload(c: Ctx): Promise<Response> {
  const info = await session(c);
  const size = await c.var.options.store.uploads.size(info.id);
  const headers = sessionHeaders(c, info, size);
  return c.body(null, 204, headers);
}

export async function cancelUpload(c: Ctx): Promise<Response> {
  const info = await session(c);
  await c.var.options.store.uploads.cancel(info);
  return c.body(null, 204, { 'Content-Length': '0' });
}
