// Transfer progress for the terminal: one line per blob in flight (bytes, rate, ETA), redrawn in place on stderr.
// Shown only on a TTY and never under CI, so pipes and logs stay clean (`--json` output is never mixed with it).
import type { Progress } from '../client/copy.js';

export function wantsProgress(stream: NodeJS.WriteStream = process.stderr, env = process.env): boolean {
  return !!stream.isTTY && env.CI !== 'true' && env.CI !== '1' && env.TERM !== 'dumb';
}

interface Bar {
  size: number;
  done: number;
  start: number;
  state?: string;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** A Progress that draws on a TTY; `undefined` when progress should not be shown. */
export function terminalProgress(
  stream: NodeJS.WriteStream = process.stderr,
): (Progress & { stop(): void }) | undefined {
  if (!wantsProgress(stream)) return undefined;
  const bars = new Map<string, Bar>();
  let drawn = 0;
  const draw = () => {
    const now = Date.now();
    const lines: string[] = [];
    for (const [digest, b] of bars) {
      const secs = Math.max(0.001, (now - b.start) / 1000);
      const rate = b.done / secs;
      const eta = rate > 0 && b.size > b.done ? `ETA ${Math.ceil((b.size - b.done) / rate)}s` : '';
      const status = b.state ?? `${formatBytes(b.done)} / ${formatBytes(b.size)}  ${formatBytes(rate)}/s  ${eta}`;
      lines.push(`${digest.slice(7, 19)}  ${status}`.slice(0, (stream.columns || 80) - 1));
    }
    let out = drawn ? `\x1b[${drawn}A` : '';
    for (const l of lines) out += `\x1b[2K${l}\n`;
    stream.write(out);
    drawn = lines.length;
  };
  const timer = setInterval(draw, 200);
  timer.unref();
  return {
    blobStart(digest, size) {
      bars.set(digest, { size, done: 0, start: Date.now() });
    },
    blobBytes(digest, n) {
      const b = bars.get(digest);
      if (b) b.done += n;
    },
    blobDone(digest, how) {
      const b = bars.get(digest);
      if (b) b.state = how === 'uploaded' ? `done ${formatBytes(b.size)}` : how;
    },
    stop() {
      clearInterval(timer);
      if (bars.size) draw();
    },
  };
}
