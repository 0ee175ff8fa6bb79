// Temp files this process is writing (a manifest about to be renamed into place, a docker-archive being
// assembled). The CLI removes them when it is interrupted (SIGINT/SIGTERM), so an interrupted run leaves nothing
// behind but resumable `.partial` downloads, which are deliberately not tracked here.
import { unlinkSync } from 'node:fs';

const _live = new Set<string>();

/** Registers a temp file; call the returned function once it was renamed or removed. */
export function trackTemp(path: string): () => void {
  _live.add(path);
  return () => _live.delete(path);
}

/** Removes every tracked temp file now (synchronously: this runs on the way out of an interrupted process). */
export function removeTempsSync(): void {
  for (const p of _live) {
    try {
      unlinkSync(p);
    } catch {
      /* already gone */
    }
  }
  _live.clear();
}

/** A unique temp name beside `path`, tracked until `done` is called. */
export function tempBeside(path: string): { tmp: string; done: () => void } {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  return { tmp, done: trackTemp(tmp) };
}
