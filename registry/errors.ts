// The error table: OCI error code → HTTP status and default message, rendered in one place (onError).
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
import type { Context } from 'hono';
import { OciError, type ErrorCode } from '../spec/index.js';
import { NotFoundError, StorageFullError } from '../storage/index.js';

export const ERRORS: Record<ErrorCode, { status: number; message: string }> = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 400, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  TAG_INVALID: { status: 400, message: 'manifest tag did not match URI' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  RANGE_INVALID: { status: 416, message: 'requested range not satisfiable' },
  MANIFEST_TOO_BIG: { status: 413, message: 'manifest too big' },
  PAGINATION_NUMBER_INVALID: { status: 400, message: 'invalid number of results requested' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
  // berth's own codes (spec/errors.ts).
  REQUEST_TIMEOUT: { status: 408, message: 'the request body stopped arriving' },
  INSUFFICIENT_STORAGE: { status: 507, message: 'the registry has no storage space left' },
  NOT_FOUND: { status: 404, message: 'no such endpoint' },
  UNKNOWN: { status: 500, message: 'internal error' },
};

/** Seconds a client should wait before pushing again into a full storage (an operator or GC has to free space). */
const FULL_RETRY_AFTER = '60';

/** Drivers mark transient failures with `retryable: true` (storage/s3.ts S3StorageError), without registry/ importing them. */
function _isRetryableStorageError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === true;
}

/** fs.ts throws StorageFullError; an object store says so with 507 (MinIO: XMinioStorageFull), seen on S3StorageError. */
function _isStorageFull(err: unknown): boolean {
  if (err instanceof StorageFullError) return true;
  const e = err as { status?: unknown; code?: unknown } | null;
  return (
    typeof e === 'object' &&
    e !== null &&
    !(err instanceof OciError) &&
    (e.status === 507 || e.code === 'XMinioStorageFull')
  );
}

/** Renders any thrown error as an OCI error document. Unknown errors become a 500 without internals. */
export function renderError(err: unknown, c: Context, log?: (e: unknown) => void): Response {
  let e: OciError;
  if (err instanceof OciError) e = err;
  else if (err instanceof NotFoundError) e = new OciError('BLOB_UNKNOWN');
  else if (_isStorageFull(err)) {
    // RFC 4918 §11.5: 507 Insufficient Storage. Logged: an operator has to act. Nothing partial was kept (fs.ts).
    log?.(err);
    e = new OciError(
      'INSUFFICIENT_STORAGE',
      "the registry's storage is full: nothing was stored; retry after space was freed (delete images, run GC) or ask the operator to grow the volume",
      { headers: { 'Retry-After': FULL_RETRY_AFTER } },
    );
  } else if (_isRetryableStorageError(err)) {
    // Object storage throttled or unreachable after the driver's own retries: a clean, retryable 503.
    log?.(err);
    e = new OciError('UNAVAILABLE', 'storage is temporarily unavailable; retry the request', {
      headers: { 'Retry-After': '1' },
    });
  } else {
    log?.(err);
    e = new OciError('UNKNOWN');
  }
  const entry = ERRORS[e.code];
  const message = e.message && e.message !== e.code ? e.message : entry.message;
  const body = { errors: [{ code: e.code, message, detail: e.detail ?? null }] };
  return c.body((c.req.method === 'HEAD' ? null : JSON.stringify(body)) as string, (e.status ?? entry.status) as 400, {
    'Content-Type': 'application/json',
    ...e.headers,
  });
}
