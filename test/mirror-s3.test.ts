// Sync and replication with two replicas on one S3 bucket (SeaweedFS; issue 21): one replica runs a sync rule while
// the other finds the lease held (busy), and both report the same stored status; a push to one replica is queued in
// the bucket while the target is down, the replica working the queue is killed, and the other one continues it.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBerth, type Berth } from './support/berth.js';
import { startDistribution } from './support/distribution.js';
import { ok, requirePeer, run } from './support/peers.js';
import { S3_PEER, s3ServeConfig, startS3Server } from './support/s3-server.js';
import { makeLayeredLayout } from './support/oci-layouts.js';
import { tcpGate } from './support/tcp-gate.js';
import { berthCli } from './support/transfer-fixtures.js';

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const api = async (b: Berth, path: string): Promise<any> => (await fetch(`${b.url}/v2/_berth/api/v1/${path}`)).json();

function metric(text: string, re: RegExp): number {
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

test('two replicas on S3: one sync runner per rule, and the replication queue survives its worker', async (t) => {
  if (!requirePeer(t, S3_PEER, 'distribution', 'crane')) return;
  const dir = await mkdtemp('/tmp/berth-mirror-s3-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const s3 = await startS3Server();
  t.after(() => s3.stop());
  const up = await startDistribution({ logLevel: 'warn' });
  t.after(() => up.stop());
  const dr = await startDistribution({ logLevel: 'warn' });
  t.after(() => dr.stop());
  const gate = await tcpGate(t, dr.port);

  const img = await makeLayeredLayout(join(dir, 'img'), { layers: 1, layerBytes: 8 << 20 });
  ok(await berthCli(['push', '-q', img.dir, `${up.host}/base/os:1`]));
  const sync = [
    {
      name: 'base',
      url: up.url,
      allowPrivateNetworks: true,
      repositories: ['base/os'],
      schedule: '1h',
      bandwidth: 1_000_000,
    },
  ];
  const replication = [
    {
      name: 'dr',
      url: gate.url,
      allowPrivateNetworks: true,
      repositories: ['team/**'],
      backoff: '200ms',
      maxBackoff: '1s',
    },
  ];
  const config = `${s3ServeConfig(s3)}sync: ${JSON.stringify(sync)}\nreplication: ${JSON.stringify(replication)}\n`;
  const a = await startBerth(t, { config });
  const b = await startBerth(t, { config });

  // Both schedule the rule at start (b while a's ~7 s run holds the lease): one runs it, the other counts itself busy.
  let ma = '';
  let mb = '';
  const runs = (result: string) =>
    [ma, mb].reduce(
      (n, m) => n + metric(m, new RegExp(`berth_sync_runs_total\\{rule="base",result="${result}"\\} (\\d+)`)),
      0,
    );
  await until('both replicas to settle their first run', async () => {
    [ma, mb] = await Promise.all([a, b].map(async (r) => (await fetch(`${r.url}/metrics`)).text()));
    return runs('ok') + runs('busy') + runs('failed') >= 2;
  });
  for (const r of [a, b]) {
    const s = (await api(r, 'sync')).rules[0];
    assert.equal(s.result, 'ok', JSON.stringify(s));
    // (Two replicas may take the lease in the same instant: the loser stands back, the image is there either way.)
    assert.equal(s.images.copied + s.images.skipped, 1, JSON.stringify(s));
    assert.equal(s.images.failed, 0, JSON.stringify(s));
  }
  assert.equal(runs('ok'), 1, `one replica ran the rule:\n${ma}\n${mb}`);
  assert.equal(runs('busy'), 1, `the other found the lease held:\n${a.logs()}\n${b.logs()}`);
  assert.equal(
    ok(await run('crane', ['digest', '--insecure', `${a.host}/base/os:1`])).trim(),
    ok(await run('crane', ['digest', '--insecure', `${up.host}/base/os:1`])).trim(),
  );

  // The target is down: a push to b waits in the bucket's queue, retried by whichever replica holds the lease.
  const small = await makeLayeredLayout(join(dir, 'small'), { layers: 1, layerBytes: 128 * 1024 });
  ok(await berthCli(['push', '-q', small.dir, `${b.host}/team/app:v1`]));
  let worker: Berth | undefined;
  await until('a replica to retry the item', async () => {
    for (const r of [a, b]) {
      const s = (await api(r, 'replication')).rules[0];
      if (s.active && s.retried > 0 && s.queued === 1) worker = r;
    }
    return worker !== undefined;
  });
  const other = worker === a ? b : a;
  await worker!.kill();
  gate.setUp(true);
  await until('the other replica to drain the queue', async () => {
    const s = (await api(other, 'replication')).rules[0];
    return s.active && s.queued === 0 && s.done >= 1;
  });
  assert.equal(
    ok(await run('crane', ['digest', '--insecure', `${dr.host}/team/app:v1`])).trim(),
    ok(await run('crane', ['digest', '--insecure', `${other.host}/team/app:v1`])).trim(),
  );
});
