// `berth serve` as an operator meets it: config errors, graceful SIGTERM, structured logs, abandoned-upload purge.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { run } from './support/peers.js';
import { startBerth } from './support/berth.js';
import { raw } from './support/registry-client.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

test('a bad config is one clear line naming the key, exit 1; an unknown flag is a usage error, exit 2', async (t) => {
  const dir = await mkdtemp('/tmp/berth-serve-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'berth.yaml');
  await writeFile(file, 'storage:\n  delet: false\n');
  const r = await run(process.execPath, [BERTH, 'serve', '--config', file], { timeoutMs: 20_000 });
  assert.equal(r.code, 1);
  assert.match(
    r.stderr.trim(),
    /^berth: .*berth\.yaml:2:3: storage\.delet: unknown key "delet"; did you mean "delete"\?/,
  );
  assert.equal(r.stderr.trim().split('\n').length, 1);
  const env = await run(process.execPath, [BERTH, 'serve', '--root', dir], {
    env: { BERTH_STORAGE_DELETE: 'perhaps' },
    timeoutMs: 20_000,
  });
  assert.equal(env.code, 1);
  assert.match(env.stderr, /BERTH_STORAGE_DELETE: expected true or false/);
  const flag = await run(process.execPath, [BERTH, 'serve', '--bogus'], { timeoutMs: 20_000 });
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /--bogus.*berth serve --help/);
});

test('an address in use is a clear error', async (t) => {
  const berth = await startBerth(t);
  const r = await run(process.execPath, [BERTH, 'serve', '--addr', berth.host, '--root', berth.root], {
    timeoutMs: 20_000,
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE; pick another --addr/);
});

test('SIGTERM lets an in-flight upload finish, then exits 0', async (t) => {
  const dir = await mkdtemp('/tmp/berth-serve-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const berth = await startBerth(t, { root: dir, env: { BERTH_LOG_LEVEL: 'info' } });
  const loc = (await raw(berth.url, 'POST', '/v2/graceful/repo/blobs/uploads/')).header('location')!;
  // A slow streamed PATCH: 5 chunks, 200 ms apart.
  const status = new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: berth.port, method: 'PATCH', path: loc }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    let n = 0;
    const tick = setInterval(() => {
      req.write(Buffer.alloc(1024, n));
      if (++n === 5) {
        clearInterval(tick);
        req.end();
      }
    }, 200);
  });
  await new Promise((r) => setTimeout(r, 300));
  const stopped = berth.stop();
  assert.equal(await status, 202, 'the in-flight upload completed');
  const started = Date.now();
  await stopped;
  assert.ok(Date.now() - started < 3000, 'exits promptly once the upload is done');
  const shutdown = berth
    .logs()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .find((l) => l.msg === 'shutting down');
  assert.equal(shutdown?.signal, 'SIGTERM', berth.logs());
});

test('request logs are JSON lines; abandoned uploads are purged', async (t) => {
  const berth = await startBerth(t, {
    config: 'storage:\n  uploadPurge: { age: 1s, interval: 1s }\n',
    env: { BERTH_LOG_LEVEL: 'info' },
  });
  const loc = (await raw(berth.url, 'POST', '/v2/purge/repo/blobs/uploads/')).header('location')!;
  await raw(berth.url, 'PATCH', loc, { body: 'some bytes' });
  assert.equal((await raw(berth.url, 'GET', loc)).status, 204);
  const deadline = Date.now() + 10_000;
  while ((await raw(berth.url, 'GET', loc)).status !== 404) {
    assert.ok(Date.now() < deadline, 'the abandoned upload was not purged within 10 s');
    await new Promise((r) => setTimeout(r, 250));
  }
  const lines = berth
    .logs()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const req = lines.find((l) => l.msg === 'request' && l.method === 'POST');
  assert.ok(req, berth.logs());
  assert.equal(req.path, '/v2/purge/repo/blobs/uploads/');
  assert.equal(req.status, 202);
  assert.equal(typeof req.ms, 'number');
  assert.match(req.id, /^[\w.:-]+$/, 'every request line carries its request id');
  assert.equal(req.level, 'info');
  assert.ok(!Number.isNaN(Date.parse(req.time)), 'ISO time');
  assert.ok(lines.some((l) => l.msg === 'purged abandoned uploads' && l.count >= 1));
});
