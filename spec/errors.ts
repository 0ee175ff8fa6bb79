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
  | 'INSUFFICIENT_STORAGE';

export class OciError extends Error {
  constructor(
    readonly code: ErrorCode,
    message?: string,
    readonly detail?: unknown,
  ) {
    super(message ?? code);
  }
}
