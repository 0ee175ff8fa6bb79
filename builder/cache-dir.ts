// Where builds keep their cache unless told. Its own module: the CLI's head start (prestart.ts) needs it before
// anything heavier is loaded.
import { homedir } from 'node:os';
import { join } from 'node:path';

/** $XDG_CACHE_HOME/berth, else ~/.cache/berth. */
export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'berth');
}
