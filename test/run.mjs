#!/usr/bin/env node
// Test entry point (README's `npm test`): builds the CLI, then runs every *.test.ts with node's test runner.
// `--unit` runs only the unit tests beside the code; the default also runs test/ (real peers, end to end).
// Under CI=true a missing peer is a failure, never a skip (see test/support/peers.ts).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const unitOnly = process.argv.includes('--unit');
const filters = process.argv.slice(2).filter((a) => !a.startsWith('--'));

function find(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

// The guardrails first (formatter + linter, DESIGN.md's import directions, types of every file tests included), so
// they cannot rot: a run that skips them is one that was asked for a subset of the test files.
if (!filters.length) {
  const lint = spawnSync('npm', ['run', '--silent', 'lint'], { cwd: root, stdio: 'inherit' });
  if (lint.status !== 0) {
    console.error('npm run lint failed: `npm run format` fixes formatting; see the messages above for the rest.');
    process.exit(lint.status ?? 1);
  }
}

const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

let files = find(root)
  .map((f) => f.slice(root.length))
  .sort();
if (unitOnly) files = files.filter((f) => !f.startsWith('test/'));
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
const args = ['--import', 'tsx', '--test', '--test-concurrency=1', ...files];
const run = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(run.status ?? 1);
