// Structured logs: one JSON object per line on stderr (request logs included), so they can be shipped as-is.
export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  requests: boolean;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(level: Level = 'info', requests = true, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const at = ORDER[level];
  const emit = (lvl: Level) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[lvl] < at) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields }) + '\n');
  };
  return { requests: requests && ORDER.info >= at, debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}
