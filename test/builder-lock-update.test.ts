// `berth build --lock --update`: berth.lock is refreshed to the newest digest of the base tag and the build says
// what changed; the image records the base it was built on (org.opencontainers.image.base.name/digest), read back
// with crane; the app layers are reused, not rebuilt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth } from './support/berth.js';
import { berth, parseBuild } from './support/builder-fixtures.js';
import { ok, requirePeer, run } from './support/peers.js';

test('berth build --lock --update refreshes the base digest in berth.lock and prints what changed', async (t) => {
  if (!requirePeer(t, 'crane')) return;
  const reg = await startBerth(t);
  const dir = await mkdtemp(join(tmpdir(), 'berth-lock-update-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const baseRef = `${reg.host}/lock/base:stable`;
  const build = (file: string, extra: string[], json = true) =>
    berth([
      'build',
      '-f',
      join(dir, file),
      '--cache',
      join(dir, '.cache'),
      '--no-sbom',
      ...(json ? ['--json'] : []),
      ...extra,
    ]);
  const pushBase = async (text: string) => {
    await writeFile(
      join(dir, 'base.yaml'),
      `apiVersion: berth/v1\nkind: Image\nlayers:\n  - name: os\n    files:\n      - { inline: "${text}", dest: /etc/os-release }\n`,
    );
    return parseBuild(await build('base.yaml', ['--push', baseRef])).digest;
  };
  const v1 = await pushBase('one');
  await writeFile(
    join(dir, 'berth.yaml'),
    `apiVersion: berth/v1\nkind: Image\nbase: ${baseRef}\nlayers:\n  - name: app\n    files:\n      - { inline: "app", dest: /app.txt }\n`,
  );
  const appRef = `${reg.host}/lock/app:v1`;
  const pinned = await build('berth.yaml', ['--lock', '--push', appRef], false);
  assert.equal(pinned.code, 0, pinned.stderr);
  assert.match(pinned.stderr, new RegExp(`berth\\.lock: ${baseRef} pinned to ${v1}`));
  assert.deepEqual(JSON.parse(await readFile(join(dir, 'berth.lock'), 'utf8')).base, { ref: baseRef, digest: v1 });

  const v2 = await pushBase('two');
  const r = await build('berth.yaml', ['--lock', '--update', '--push', appRef]);
  const out = parseBuild(r) as ReturnType<typeof parseBuild> & {
    lock?: { path: string; changes: string[]; base?: Record<string, unknown> };
  };
  assert.deepEqual(out.lock?.base, { ref: baseRef, from: v1, to: v2, changed: true });
  assert.deepEqual(out.lock?.changes, [], 'no Debian packages here');
  assert.deepEqual(JSON.parse(await readFile(join(dir, 'berth.lock'), 'utf8')).base, { ref: baseRef, digest: v2 });
  assert.equal(out.images[0].layers.at(-1)!.cached, true, 'the app layer is reused, not rebuilt');
  const manifest = JSON.parse(ok(await run('crane', ['manifest', appRef])));
  assert.equal(manifest.annotations['org.opencontainers.image.base.digest'], v2);
  assert.equal(manifest.annotations['org.opencontainers.image.base.name'], baseRef);
  ok(await run('crane', ['validate', '--remote', appRef]));

  // Nothing new upstream: said so, and the lock stays as it is.
  const same = await build('berth.yaml', ['--lock', '--update']);
  assert.deepEqual((parseBuild(same) as typeof out).lock?.base, { ref: baseRef, from: v2, to: v2, changed: false });
  const said = await build('berth.yaml', ['--lock', '--update'], false);
  assert.match(said.stderr, new RegExp(`berth\\.lock: ${baseRef} unchanged \\(${v2}\\)`));
  // The line a person reads when the tag moved.
  const v3 = await pushBase('three');
  const moved = await build('berth.yaml', ['--lock', '--update'], false);
  assert.match(moved.stderr, new RegExp(`berth\\.lock: ${baseRef} updated ${v2} → ${v3}`));

  const alone = await build('berth.yaml', ['--update']);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--update refreshes berth\.lock: give it with --lock/);
});
