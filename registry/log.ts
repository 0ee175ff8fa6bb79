// Structured logs with pino: one JSON object per line on stderr (request logs included, each with its request id),
// so they can be shipped as-is. `time` is ISO 8601 and `level` the label ("info"), which log pipelines read without
// pino's numeric mapping. Writes are asynchronous (sonic-boom batches lines while a write is in flight, so a busy
// server never blocks on stderr: request logs on cost ~30% of manifest GET throughput when written synchronously);
// pino flushes what is pending synchronously when the process exits.
// The small Logger interface keeps pino's (fields, msg) argument order out of the callers.
// On a terminal (log.format auto/pretty) the same lines are rendered for people by pino-pretty, in this process
// (no worker thread): `[12:00:01.123] INFO: message {"fields":…}`.
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { pino, destination, stdTimeFunctions, type DestinationStream } from 'pino';

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface Logger {
  /** Log one line per request (method, path, status, duration, request id). */
  requests: boolean;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** `write` replaces stderr (tests capture lines with it); `pretty` renders lines for a person instead of JSON. */
/** `fields`: added to every line (a cluster worker's `worker` slot). */
export function createLogger(
  level: Level = 'info',
  requests = true,
  write?: (line: string) => void,
  opts: { pretty?: boolean; color?: boolean; fields?: Record<string, unknown> } = {},
): Logger {
  const dest: DestinationStream = opts.pretty
    ? // Loaded only for a person's terminal: servers and pipes never pay for it.
      (createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty')).PinoPretty({
        colorize: opts.color ?? false,
        translateTime: 'SYS:HH:MM:ss.l',
        singleLine: true,
        errorLikeObjectKeys: [], // with errorKey below: `err` stays on the line
        destination: write
          ? new Writable({
              write: (chunk, _enc, done) => {
                write(String(chunk));
                done();
              },
            })
          : 2,
        // Synchronous: a person reads these lines as they happen, and the last ones (Ctrl-C, exit) must not be lost.
        sync: true,
      })
    : write
      ? { write }
      : destination({ dest: 2, sync: false });
  const p = pino(
    {
      level,
      base: opts.fields ?? undefined, // no pid/hostname: the orchestrator adds them
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // pino-pretty prints the errorKey's field as a block of its own; our `err` is one line of text, so keep it
      // on the line (only the readable form: JSON lines are unchanged).
      ...(opts.pretty ? { errorKey: 'error' } : {}),
    },
    dest,
  );
  const emit = (lvl: Exclude<Level, 'silent'>) => (msg: string, fields?: Record<string, unknown>) => {
    if (fields) p[lvl](fields, msg);
    else p[lvl](msg);
  };
  return {
    requests: requests && p.isLevelEnabled('info'),
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
  };
}
