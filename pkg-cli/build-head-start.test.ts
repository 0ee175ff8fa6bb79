// `berth build`'s head start (build-head-start.ts): it reads build's flags as build.ts does and starts preset go's
// `go build` runs only when sure. `go` here is a small script that counts its runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { goInvocations, runGoBuild } from '../builder/go-build.js';
import headStart from './build-head-start.js';

test("the CLI's head start reads build's flags as build does, and starts nothing when unsure", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-head-start-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'go'), `#!/bin/sh\necho run >> "${dir}/runs.log"\necho "$@"\n`);
  await chmod(join(dir, 'go'), 0o755);
  const runs = async () =>
    (await readFile(join(dir, 'runs.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
  await writeFile(join(dir, 'go.mod'), 'module example.com/x\n');
  await writeFile(
    join(dir, 'berth.yaml'),
    'apiVersion: berth/v1\nkind: Image\npreset: go\nplatforms: [linux/amd64, linux/arm64]\ngo: { main: ./cmd/api }\n',
  );
  const path = process.env.PATH;
  process.env.PATH = `${dir}:${path}`;
  t.after(() => {
    process.env.PATH = path;
  });
  const spec = join(dir, 'berth.yaml');
  const cache = join(dir, 'cache');
  const settle = () => new Promise((r) => setTimeout(r, 300));
  await headStart(['-f', spec, '--no-cache', '--push', 'localhost:5000/x:v1']);
  await headStart(['--file', spec, '--cache', cache, '--check-reproducible']);
  await headStart(['-f', spec, '--cache', cache, '--platform', 'linux/s390x']);
  await headStart(['-f', join(dir, 'nothing.yaml'), '--cache', cache]);
  await headStart(['-f']);
  await settle();
  assert.equal(await runs(), 0, 'no cache, a reproducibility check, a platform not in the spec, no spec: no go run');
  // Flags it does not know (with values) are passed over; --platform narrows, comma lists as build splits them.
  await headStart(['--push', 'localhost:5000/x:v1', `--file=${spec}`, '--cache', cache, '--platform', 'linux/arm64']);
  const [arm] = goInvocations(
    { main: './cmd/api' },
    [{ os: 'linux', architecture: 'arm64' }],
    dir,
    join(cache, 'go-build'),
  );
  assert.ok((await runGoBuild('go', arm)).stdout.includes(arm.out));
  assert.equal(await runs(), 1, 'the head start was the arm64 build, taken');
  await headStart(['-f', spec, '--cache', cache, '--platform', 'linux/amd64,linux/arm64', '--tag', 'x:y']);
  await settle();
  assert.equal(await runs(), 3, 'one run per platform listed');
});
