// Every error a command lets escape becomes one line on stderr and one exit code, decided here and nowhere else
// (README "Exit codes"). Commands throw CLIError/UsageError for what they detect themselves; what client/ and
// builder/ throw is classified by its type and, for registry replies, by the HTTP status and OCI error code
// (distribution-spec "Error Codes").
import { AuthError } from '../client/auth.js';
import { PlatformError } from '../client/copy.js';
import { RegistryError } from '../client/registry.js';
import { DigestMismatchError } from '../client/verify.js';
import { CLIError, EXIT } from './command.js';

const NOT_FOUND_CODES = new Set(['MANIFEST_UNKNOWN', 'BLOB_UNKNOWN', 'NAME_UNKNOWN', 'BLOB_UPLOAD_UNKNOWN']);
const DENIED_CODES = new Set(['UNAUTHORIZED', 'DENIED']);
/** Errors of the connection itself (node net/dns/tls and undici), wherever they sit in the cause chain. */
const NETWORK_ERRNO =
  /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|ECONNABORTED|UND_ERR_\w+|ERR_TLS_\w+|CERT_\w+|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_\w+)$/;

export function exitCodeFor(e: unknown): number {
  if (e instanceof CLIError) return e.exitCode;
  if (e instanceof DigestMismatchError) return EXIT.verification;
  if (e instanceof AuthError) return EXIT.denied;
  if (e instanceof PlatformError) return EXIT.notFound;
  if (e instanceof RegistryError) {
    if (e.status === 401 || e.status === 403 || DENIED_CODES.has(e.code ?? '')) return EXIT.denied;
    if (e.status === 404 || NOT_FOUND_CODES.has(e.code ?? '')) return EXIT.notFound;
    // status 0: no HTTP answer at all (refused, DNS, TLS verification): client/registry.ts _unreachable.
    if (e.status === 0 && (_errno(e) || /^cannot (reach|verify TLS)/.test(e.message))) return EXIT.network;
    return EXIT.failure;
  }
  const code = _errno(e);
  if (code && NETWORK_ERRNO.test(code)) return EXIT.network;
  if (code === 'ENOENT') return EXIT.notFound;
  if (code === 'EACCES' || code === 'EPERM') return EXIT.denied;
  return EXIT.failure;
}

function _errno(e: unknown): string | undefined {
  for (let c: any = e, i = 0; c && i < 5; c = c.cause, i++) if (typeof c.code === 'string') return c.code;
  return undefined;
}
