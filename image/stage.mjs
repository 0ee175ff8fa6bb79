#!/usr/bin/env node
// Stages the build context of image/berth.yaml in DIR (directories and symlinks to files; the builder copies
// their targets):
//   rootfs/usr/local/bin/node and every shared library `ldd` lists for it (plus the dynamic loader),
//   app/{bin,dist,package.json} from this checkout and app/node_modules with production dependencies only
//   (`npm ls --omit=dev` decides; dev tools such as typescript, tsx and esbuild stay out).
// Run `npx tsc -p tsconfig.build.json` first. Usage: node image/stage.mjs DIR
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync, symlinkSync, realpathSync } from 'node:fs';
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

// Runtime: node and its libraries at the paths the loader looks in.
const node = realpathSync(process.execPath);
link(node, join(out, 'rootfs/usr/local/bin/node'));
const ldd = execFileSync('ldd', [node], { encoding: 'utf8' });
for (const line of ldd.split('\n')) {
  const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
  if (m) link(m[1], join(out, 'rootfs', m[1]));
}

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
console.log(`staged ${dirs.size} packages and node ${process.version} in ${out}`);
