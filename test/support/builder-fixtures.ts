// Shared by the builder's end-to-end tests: run `berth build` from source in a subprocess (so env, umask and cwd
// are the child's own), and write build contexts.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { run, type RunOptions, type RunResult } from './peers.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = join(ROOT, 'pkg-cli/main.ts');
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

/** `berth ARGS…` from source; `umask` runs it under that umask via sh. */
export function berth(args: string[], opts: RunOptions & { umask?: string } = {}): Promise<RunResult> {
  const node = [process.execPath, '--import', TSX, MAIN, ...args];
  if (opts.umask) return run('/bin/sh', ['-c', `umask ${opts.umask} && exec "$@"`, 'sh', ...node], opts);
  return run(node[0], node.slice(1), opts);
}

export async function writeTree(
  root: string,
  files: Record<string, string | Buffer>,
  order: 'forward' | 'reverse' = 'forward',
): Promise<void> {
  const names = Object.keys(files);
  if (order === 'reverse') names.reverse();
  for (const n of names) {
    await mkdir(dirname(join(root, n)), { recursive: true });
    await writeFile(join(root, n), files[n]);
  }
}

export interface BuildJson {
  digest: string;
  mediaType: string;
  images: {
    platform: string;
    digest: string;
    layers: { name: string; digest: string; diffId: string; size: number; cached: boolean }[];
  }[];
}

export function parseBuild(r: RunResult): BuildJson {
  if (r.code !== 0) throw new Error(`berth build failed (${r.code}): ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as BuildJson;
}
