#!/usr/bin/env node
// Holds the line DESIGN.md draws between folders ("Allowed imports"): a relative import that crosses into a folder
// its module may not use fails the check, naming the file, the import and the rule. Run by `npm run lint` and
// `npm test`, so the picture in DESIGN.md and the code cannot drift apart.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);

/** Which top-level folders each module may import (itself is always allowed). Keep equal to DESIGN.md. */
const ALLOWED = {
  spec: [],
  signing: ['spec'],
  storage: ['spec'],
  client: ['spec', 'signing'],
  builder: ['spec', 'client', 'signing'],
  registry: ['spec', 'storage', 'client', 'signing'],
  'pkg-cli': ['spec', 'storage', 'client', 'registry', 'builder', 'signing'],
};
/** Narrower rules inside a module: registry reaches client/ only from the pull-through cache and sync/replication. */
const ONLY_FROM = { 'registry->client': /^registry\/(proxy|mirror)\// };

function* sources(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'generated') yield* sources(p);
    } else if (/\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts')) yield p;
  }
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
const problems = [];
for (const mod of Object.keys(ALLOWED)) {
  for (const file of sources(join(root, mod))) {
    const rel = relative(root, file);
    const isTest = rel.endsWith('.test.ts');
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith('.')) continue;
      const target = relative(root, resolve(dirname(file), spec)).split('/')[0];
      if (target === mod) continue;
      // Unit tests beside the code may use the shared test harnesses (real peers) in test/.
      if (isTest && (target === 'test' || ALLOWED[mod].includes(target))) continue;
      const rule = `${mod}->${target}`;
      if (!ALLOWED[mod].includes(target)) {
        problems.push(`${rel}: imports '${spec}' — ${mod}/ may import only ${[mod, ...ALLOWED[mod]].join(', ')}`);
      } else if (ONLY_FROM[rule] && !ONLY_FROM[rule].test(rel)) {
        problems.push(`${rel}: imports '${spec}' — ${mod}/ reaches ${target}/ only from ${ONLY_FROM[rule].source}`);
      }
    }
  }
}
if (problems.length) {
  console.error(`import directions (DESIGN.md "Allowed imports") broken in ${problems.length} place(s):`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}
console.log('import directions: ok');
