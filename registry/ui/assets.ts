// The UI's static files (registry/ui/assets/), shipped in the npm package (package.json `files`) and read once at
// start: nothing is fetched from a CDN or at runtime. Served under a content hash, so browsers cache them for good.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface Asset {
  body: string;
  type: string;
  hash: string;
}

const FILES: Record<string, string> = {
  'ui.css': 'text/css; charset=utf-8',
  'ui.js': 'text/javascript; charset=utf-8',
};

/** Source (tsx: registry/ui/) and build (dist/registry/ui/) both reach the one assets folder beside the source. */
function _dir(): string {
  for (const rel of ['./assets/', '../../../registry/ui/assets/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}ui.css`)) return dir;
  }
  throw new Error('berth web UI assets (registry/ui/assets) are missing from this installation');
}

export function loadAssets(): Map<string, Asset> {
  const dir = _dir();
  const out = new Map<string, Asset>();
  for (const [name, type] of Object.entries(FILES)) {
    const body = readFileSync(`${dir}${name}`, 'utf8');
    out.set(name, { body, type, hash: createHash('sha256').update(body).digest('hex').slice(0, 12) });
  }
  return out;
}
