// Error codes of the distribution spec ("Error Codes" table). Stores and handlers throw OciError; the registry
// renders it once, as `{"errors":[{code,message,detail}]}` with the status from registry/errors.ts.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
export type ErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'TAG_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'RANGE_INVALID'
  | 'MANIFEST_TOO_BIG'
  | 'PAGINATION_NUMBER_INVALID'
  | 'UNAVAILABLE'
  // berth's own, for limits the spec's table has no code for (registry/errors.ts gives their statuses).
  | 'REQUEST_TIMEOUT'
  | 'INSUFFICIENT_STORAGE'
  // What the registry answers for no endpoint at all (404) and for an error it did not expect (500, no internals).
  | 'NOT_FOUND'
  | 'UNKNOWN';

export interface OciErrorOptions {
  /** The `detail` member of the error document (spec: "unstructured"; berth puts machine-readable facts there). */
  detail?: unknown;
  /** Extra response headers: Range on 416, Retry-After on 429/503/507, WWW-Authenticate on 401. */
  headers?: Record<string, string>;
  /** A status other than the code's own in registry/errors.ts (e.g. 413 for SIZE_INVALID over a body limit). */
  status?: number;
}

export class OciError extends Error {
  readonly detail?: unknown;
  readonly headers?: Record<string, string>;
  readonly status?: number;

  constructor(
    readonly code: ErrorCode,
    message?: string,
    opts: OciErrorOptions = {},
  ) {
    super(message ?? code);
    this.detail = opts.detail;
    this.headers = opts.headers;
    this.status = opts.status;
  }
}
