// Push replication end to end (issue 21): berth replicates pushes of team/** to distribution 2.8.2 behind a gate
// that can drop every connection (the target "down"). Pushes made while it is down wait in the storage queue; berth
// is killed (SIGKILL) mid-queue and started again; once the target is up the queue drains: the images arrive with
// the same digests, the cosign signature verifies there, the SBOM referrer arrives as distribution's fallback tag index (oras and regctl find it), repos
// outside the rule do not, and a replicated delete removes the manifest there.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger, createRegistry, listen, loadConfig } from '../registry/index.js';
import { MemoryDriver } from '../storage/memory.js';
import { imageManifest, pushBlob, pushManifest } from './support/registry-client.js';
import { startBerth } from './support/berth.js';
import { startDistribution } from './support/distribution.js';
import { ok, requirePeer, run } from './support/peers.js';
import { cosignKeyPair } from './support/cosign.js';
import { tcpGate } from './support/tcp-gate.js';
import { makeLayeredLayout } from './support/oci-layouts.js';
import { berthCli } from './support/transfer-fixtures.js';

async function queueFiles(root: string): Promise<string[]> {
  return readdir(join(root, 'mirror', 'replication', 'dr', 'queue')).catch(() => []);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const digest = async (ref: string) => ok(await run('crane', ['digest', '--insecure', ref])).trim();

test('replication survives a target that is down and a restart mid-queue; referrers and deletes follow', async (t) => {
  if (!requirePeer(t, 'distribution', 'crane', 'oras', 'regctl', 'cosign')) return;
  const dir = await mkdtemp('/tmp/berth-repl-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const dist = await startDistribution({ logLevel: 'warn' });
  t.after(() => dist.stop());
  const target = await tcpGate(t, dist.port);
  const config = JSON.stringify({
    log: { level: 'warn' },
    replication: [
      {
        name: 'dr',
        url: target.url,
        allowPrivateNetworks: true,
        repositories: ['team/**'],
        deletes: true,
        backoff: '200ms',
        maxBackoff: '1s',
      },
    ],
  });
  const berth = await startBerth(t, { config });
  const img = await makeLayeredLayout(join(dir, 'img'), { layers: 2, layerBytes: 512 * 1024 });
  const other = await makeLayeredLayout(join(dir, 'other'), { layers: 1, layerBytes: 64 * 1024 });
  ok(await berthCli(['push', '-q', img.dir, `${berth.host}/team/app:v1`]));
  ok(await berthCli(['push', '-q', other.dir, `${berth.host}/team/lib:v1`]));
  ok(await berthCli(['push', '-q', other.dir, `${berth.host}/private/x:v1`]));
  await writeFile(join(dir, 'sbom.json'), '{"spdxVersion":"SPDX-2.3"}');
  ok(
    await run(
      'oras',
      [
        'attach',
        '--plain-http',
        '--artifact-type',
        'application/spdx+json',
        `${berth.host}/team/app:v1`,
        'sbom.json:application/spdx+json',
      ],
      { cwd: dir },
    ),
  );
  // A cosign signature (v2: a sha256-<hex>.sig tag, pushed like any tag) is replicated like its image.
  const signed = await digest(`${berth.host}/team/app:v1`);
  const cosign = await cosignKeyPair(dir);
  await cosign.sign(`${berth.host}/team/app@${signed}`);
  // The target is down: items are queued in storage and retried.
  await until('queued items', async () => (await queueFiles(berth.root)).length >= 4);
  const status = await (await fetch(`${berth.url}/v2/_berth/api/v1/replication`)).json();
  assert.equal(status.rules[0].rule, 'dr');
  assert.ok(status.rules[0].queued >= 3, JSON.stringify(status));
  await until('a failed attempt', async () => {
    const s = await (await fetch(`${berth.url}/v2/_berth/api/v1/replication`)).json();
    return s.rules[0].retried > 0;
  });

  // Killed mid-queue; the target comes back while berth is down; the restarted berth drains the stored queue.
  await berth.kill();
  assert.ok((await queueFiles(berth.root)).length >= 3, 'the queue survived the kill');
  target.setUp(true);
  await berth.restart();
  await until('the queue to drain', async () => (await queueFiles(berth.root)).length === 0);

  const app = await digest(`${berth.host}/team/app:v1`);
  assert.equal(await digest(`${dist.host}/team/app:v1`), app);
  assert.equal(await digest(`${dist.host}/team/lib:v1`), await digest(`${berth.host}/team/lib:v1`));
  const catalog = ok(await run('crane', ['catalog', '--insecure', dist.host]));
  assert.doesNotMatch(catalog, /private\/x/, 'repositories outside the rule stay home');
  // distribution 2.8.2 has no referrers API: the SBOM is found through the fallback tag index copy.ts maintains.
  const found = ok(await run('oras', ['discover', '--plain-http', '--format', 'json', `${dist.host}/team/app@${app}`]));
  assert.match(found, /application\/spdx\+json/);
  ok(await run('regctl', ['registry', 'set', '--tls', 'disabled', dist.host]));
  const listed = ok(
    await run('regctl', ['artifact', 'list', `${dist.host}/team/app@${app}`, '--format', '{{json .}}']),
  );
  assert.match(listed, /application\/spdx\+json/);
  await cosign.verify(`${dist.host}/team/app@${app}`);
  const metrics = await (await fetch(`${berth.url}/metrics`)).text();
  assert.match(metrics, /berth_replication_items_total\{rule="dr",result="done"\} [1-9]/);

  // A delete by digest is replicated too (deletes: true).
  const lib = await digest(`${berth.host}/team/lib:v1`);
  ok(await berthCli(['delete', `${berth.host}/team/lib@${lib}`]));
  await until('the delete to arrive', async () => {
    const r = await run('crane', ['digest', '--insecure', `${dist.host}/team/lib:v1`]);
    return r.code !== 0;
  });
});

test('replication backs off exponentially while the target is down, and gives up after giveUpAfter', async (t) => {
  // A port nothing listens on: every attempt fails at once.
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const registry = createRegistry(
    loadConfig({
      env: {},
      flags: {
        log: { level: 'error', requests: false },
        replication: [
          {
            name: 'down',
            url: `http://127.0.0.1:${port}`,
            allowPrivateNetworks: true,
            backoff: '1s',
            maxBackoff: '8s',
            giveUpAfter: '6s',
          },
        ],
      },
    }),
    new MemoryDriver(),
    createLogger('silent', false),
  );
  const server = await listen(registry.app, '127.0.0.1:0');
  await registry.start();
  t.after(async () => {
    await registry.stop();
    await server.close(1000);
  });
  const layer = await pushBlob(server.url, 'team/app', Buffer.from('layer'));
  const config = await pushBlob(server.url, 'team/app', Buffer.from('{}'));
  const manifest = imageManifest({ digest: config, size: 2 }, [{ digest: layer, size: 5 }]);
  assert.equal((await pushManifest(server.url, 'team/app', 'v1', manifest)).status, 201);
  const stats = () => registry.replication!.stats().down;
  const t0 = Date.now();
  await until('the item to be given up', async () => stats().dropped === 1, 20_000);
  const seconds = (Date.now() - t0) / 1000;
  // Attempts at ~0, 1, 3 and 7 s (waits of 1, 2, 4 s): three retries, then dropped past 6 s. A fixed 1 s retry
  // would have made six or seven.
  assert.ok(stats().retried >= 2 && stats().retried <= 4, JSON.stringify(stats()));
  assert.ok(seconds >= 6, `given up after ${seconds} s`);
  assert.equal(stats().done, 0);
  assert.deepEqual(await registry.store.mirror.queued('down'), [], 'the dropped item left the queue');
  const metrics = await registry.metrics!.render();
  assert.match(metrics.body, /berth_replication_items_total\{rule="down",result="dropped"\} 1/);
});
