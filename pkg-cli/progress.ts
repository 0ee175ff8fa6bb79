// What a person sees while push, pull, copy and build move bytes: ONE renderer with three modes.
//  - terminal (stderr is a TTY, not CI): a live frame redrawn in place ≤ 10×/s that always fits the terminal —
//    every line cut to the width (so no line wraps and the cursor arithmetic stays exact), at most height-1 lines
//    (busy blobs beyond that become "… and N more"), finished blobs collapsed into one count line. `done()` erases
//    the frame and prints one final line; nothing is drawn after it, so the command's summary is the last line.
//  - plain (pipes, CI logs): append-only lines like skopeo's "Copying blob": one when a blob's bytes start moving,
//    one when it finishes, and an overall line every PLAIN_EVERY_MS while bytes move.
//  - none (--json, --quiet): silent; stdout carries only the result.
// Build stages (layers built/reused, compressing, pushing) go through `stage()` in both modes.
import type { Progress } from '../client/copy.js';
import type { PushResult } from '../client/remote.js';
import { formatBytes, formatElapsed } from '../spec/units.js';

export type Verb = 'push' | 'pull' | 'copy' | 'build';
export type Mode = 'terminal' | 'plain' | 'none';
type How = PushResult;

export interface Reporter extends Progress {
  readonly mode: Mode;
  /** A line that stays (a build stage, a note); drawn above the live frame. */
  stage(line: string): void;
  /** Ends the display: erases the frame, prints the final count line. Idempotent; nothing is written after it. */
  done(): void;
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  env?: NodeJS.ProcessEnv;
  /** Force a mode (tests); default from --json/--quiet, the stream and the environment. */
  mode?: Mode;
  /** Plain mode's overall-line period (default 5 s). */
  plainEveryMs?: number;
}

const FRAME_MS = 100;
const PLAIN_EVERY_MS = 5000;

export function progressMode(
  flags: { json?: boolean; quiet?: boolean },
  stream: NodeJS.WriteStream,
  env: NodeJS.ProcessEnv,
): Mode {
  if (flags.json || flags.quiet) return 'none';
  const ci = env.CI !== undefined && env.CI !== '' && env.CI !== 'false' && env.CI !== '0';
  return stream.isTTY && !ci && env.TERM !== 'dumb' ? 'terminal' : 'plain';
}

interface Item {
  digest: string;
  size: number;
  done: number;
  start: number;
  /** Plain mode: its start line was printed (only once bytes move, so a refused push prints just its error). */
  announced?: boolean;
  how?: How;
  finished?: number;
}

/** Words per verb: what happens to a blob that moved, and the name of the side it moves to. */
const WORDS: Record<Verb, { ing: string; ed: string; moved: string }> = {
  push: { ing: 'pushing', ed: 'pushed', moved: 'uploaded' },
  pull: { ing: 'pulling', ed: 'pulled', moved: 'downloaded' },
  copy: { ing: 'copying', ed: 'copied', moved: 'copied' },
  build: { ing: 'pushing', ed: 'pushed', moved: 'uploaded' },
};

export function startProgress(
  verb: Verb,
  flags: { json?: boolean; quiet?: boolean },
  o: ProgressOptions = {},
): Reporter {
  const stream = o.stream ?? process.stderr;
  const mode = o.mode ?? progressMode(flags, stream, o.env ?? process.env);
  return new Renderer(verb, mode, stream, o.plainEveryMs ?? PLAIN_EVERY_MS);
}

const short = (digest: string) => digest.replace(/^sha256:/, '').slice(0, 12);

class Renderer implements Reporter {
  private items = new Map<string, Item>();
  private readonly started = Date.now();
  private ended = false;
  /** Terminal rows the current frame occupies (the cursor sits on the row below it). */
  private frameLines: string[] = [];
  private timer?: NodeJS.Timeout;
  private readonly onResize = () => this.draw(true);
  private readonly w: (typeof WORDS)[Verb];

  constructor(
    verb: Verb,
    readonly mode: Mode,
    private readonly stream: NodeJS.WriteStream,
    plainEveryMs: number,
  ) {
    this.w = WORDS[verb];
    if (mode === 'terminal') {
      this.timer = setInterval(() => this.draw(), FRAME_MS);
      stream.on('resize', this.onResize);
    } else if (mode === 'plain') {
      this.timer = setInterval(() => this.overall(), plainEveryMs);
    }
    this.timer?.unref();
  }

  blobStart(digest: string, size: number): void {
    if (this.ended || this.mode === 'none') return;
    if (!this.items.has(digest)) this.items.set(digest, { digest, size, done: 0, start: Date.now() });
  }

  blobBytes(digest: string, n: number): void {
    if (this.ended || this.mode === 'none') return;
    let it = this.items.get(digest);
    // Some media report bytes without a start (a docker-archive pull): the blob appears with an unknown size.
    if (!it) this.items.set(digest, (it = { digest, size: 0, done: 0, start: Date.now() }));
    it.done += n;
    if (this.mode === 'plain' && !it.announced) {
      it.announced = true;
      this.line(`${this.w.ing} blob ${short(it.digest)}${it.size ? ` (${formatBytes(it.size)})` : ''}`);
    }
  }

  blobDone(digest: string, how: How): void {
    if (this.ended || this.mode === 'none') return;
    const it = this.items.get(digest) ?? { digest, size: 0, done: 0, start: Date.now() };
    this.items.set(digest, it);
    it.how = how;
    it.finished = Date.now();
    if (this.mode !== 'plain') return;
    if (how === 'uploaded')
      this.line(
        `${this.w.ed} blob ${short(digest)} (${formatBytes(it.size || it.done)} in ${formatElapsed(it.finished - it.start)})`,
      );
    else this.line(`blob ${short(digest)} ${how === 'mounted' ? 'mounted from another repository' : 'already there'}`);
  }

  stage(text: string): void {
    if (this.ended || this.mode === 'none') return;
    this.line(text);
  }

  done(): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.timer);
    this.stream.off('resize', this.onResize);
    if (this.mode === 'none') return;
    const list = [...this.items.values()];
    if (this.mode === 'plain') {
      if (list.length) this.stream.write(`${this.summary(list, true)}\n`);
    } else this.paint(list.length ? [this.summary(list, true)] : [], []);
  }

  /** A permanent line: in terminal mode above the frame (erase, write, redraw). */
  private line(text: string): void {
    if (this.mode === 'plain') return void this.stream.write(`${text}\n`);
    this.paint([text], this.frame());
  }

  /** "12 of 30 blobs: 10 pushed, 2 already there — 120.0 MiB of 300.0 MiB, 24.0 MiB/s" */
  private summary(list: Item[], final = false): string {
    const finished = list.filter((i) => i.how);
    const moved = finished.filter((i) => i.how === 'uploaded').length;
    const mounted = finished.filter((i) => i.how === 'mounted').length;
    const existed = finished.filter((i) => i.how === 'exists').length;
    const parts = [`${moved} ${this.w.moved}`];
    if (mounted) parts.push(`${mounted} mounted`);
    if (existed) parts.push(`${existed} already there`);
    const bytes = list.reduce((n, i) => n + i.done, 0);
    const secs = Math.max(0.001, (Date.now() - this.started) / 1000);
    if (final)
      return `${list.length} blobs: ${parts.join(', ')} — ${formatBytes(bytes)} in ${formatElapsed(secs * 1000)}`;
    const total = list.reduce((n, i) => n + (i.size || i.done), 0);
    return `${finished.length} of ${list.length} blobs done: ${parts.join(', ')} — ${formatBytes(bytes)} of ${formatBytes(total)}, ${formatBytes(bytes / secs)}/s`;
  }

  private overall(): void {
    if (this.ended) return;
    const list = [...this.items.values()];
    if (list.some((i) => !i.how)) this.line(this.summary(list));
  }

  /** The live frame: the count line, then one bar per busy blob, as many as fit; cut to the terminal's size. */
  private frame(): string[] {
    const cols = Math.max(20, this.stream.columns || 80);
    const rows = Math.max(3, this.stream.rows || 24);
    const list = [...this.items.values()];
    if (!list.length) return [];
    const busy = list.filter((i) => !i.how);
    const lines = [this.summary(list)];
    const room = rows - 1 - lines.length; // one row stays free for the cursor, so the frame never scrolls
    const shown = busy.length > room ? busy.slice(0, Math.max(0, room - 1)) : busy;
    const now = Date.now();
    for (const b of shown) lines.push(this.bar(b, now, cols));
    if (shown.length < busy.length) lines.push(`… and ${busy.length - shown.length} more`);
    return lines.map((l) => (l.length >= cols ? `${l.slice(0, cols - 2)}…` : l));
  }

  private bar(b: Item, now: number, cols: number): string {
    const secs = Math.max(0.001, (now - b.start) / 1000);
    const rate = b.done / secs;
    const head = `${short(b.digest)} `;
    if (!b.done) return `${head}waiting`;
    const eta = rate > 0 && b.size > b.done ? ` ETA ${formatElapsed(((b.size - b.done) / rate) * 1000)}` : '';
    const tail = ` ${formatBytes(b.done)}${b.size ? ` / ${formatBytes(b.size)}` : ''} ${formatBytes(rate)}/s${eta}`;
    const width = Math.min(30, cols - 1 - head.length - tail.length - 2);
    if (width < 5 || !b.size) return `${head}${tail.trimStart()}`;
    const fill = Math.min(width, Math.round((b.done / b.size) * width));
    return `${head}[${'='.repeat(fill)}${' '.repeat(width - fill)}]${tail}`;
  }

  /**
   * Rewrites the frame in place: `permanent` lines (they stay, scrolling up with the output) then the new `frame`.
   * Each row is cleared by itself (EL 2) rather than with "erase below" (ED 0): tmux's scroll-on-clear turns an
   * erase from the top-left corner into history, which would leave every old frame in the scrollback.
   */
  private paint(permanent: string[], frame: string[]): void {
    if (this.mode !== 'terminal') return;
    // After a resize, a line drawn for a wider terminal may now wrap over several rows (count them at the new width).
    const cols = Math.max(1, this.stream.columns || 80);
    const up = this.frameLines.reduce((n, l) => n + Math.max(1, Math.ceil(l.length / cols)), 0);
    const rows = [...permanent, ...frame];
    let out = up ? `\x1b[${up}F` : '';
    for (const l of rows) out += `\x1b[2K${l}\n`;
    const extra = up - rows.length;
    if (extra > 0) out += `${'\x1b[2K\n'.repeat(extra)}\x1b[${extra}F`;
    if (out) this.stream.write(out);
    this.frameLines = frame;
  }

  private draw(resized = false): void {
    if (this.ended || this.mode !== 'terminal') return;
    const lines = this.frame();
    if (!resized && lines.join('\n') === this.frameLines.join('\n')) return;
    this.paint([], lines);
  }
}
