// When an HTTP exchange is worth trying again, and how long to wait first: one policy for every outgoing request
// berth makes — the registry client (client/registry.ts) and the server's webhooks (registry/webhooks.ts).
// Pure: no timers, no I/O; callers sleep.

/** Statuses that say "later, not never": timeouts, rate limits and transient server failures. */
export const RETRY_STATUS: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

/** Network error codes (Node and undici) of a connection that failed on the way, not for good. */
export const RETRY_ERRNO: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'ECONNABORTED',
  'UND_ERR_CONNECT_TIMEOUT',
  'EAI_AGAIN',
]);

/** Whether a thrown network error (or its cause) is one a retry may get past. */
export function isRetryableError(e: unknown): boolean {
  const x = e as { code?: unknown; cause?: { code?: unknown } } | undefined;
  const code = x?.code ?? x?.cause?.code;
  return typeof code === 'string' && RETRY_ERRNO.has(code);
}

/** Parses Retry-After (seconds or an HTTP date) into ms. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const t = Date.parse(value);
  return Number.isFinite(t) ? Math.max(0, t - now) : undefined;
}

export interface BackoffOptions {
  /** The first wait in ms; doubles each retry, with ±25 % jitter. */
  baseMs: number;
  /** The answer's Retry-After header, when there was an answer: honoured instead of the backoff. */
  retryAfter?: string;
  /** Longest Retry-After honoured (ms). */
  maxRetryAfterMs: number;
}

/** How long to wait before retry number `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, opts: BackoffOptions): number {
  const ra = retryAfterMs(opts.retryAfter);
  if (ra !== undefined) return Math.min(ra, opts.maxRetryAfterMs);
  return opts.baseMs * 2 ** attempt * (0.75 + Math.random() * 0.5);
}
