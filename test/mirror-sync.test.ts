// Scheduled sync end to end (issue 21): distribution 2.8.2 is the upstream; `berth sync` (and `berth serve` on a
// schedule) copies what the rules select into berth's storage; crane, regctl and skopeo read the result from a
// berth serve on that storage. Filters select exactly the expected tags; referrers (an oras artifact, through
// distribution's fallback tag) arrive; a sync killed mid-blob resumes without downloading finished blobs again; two
// syncs of one rule at once: one runs, the other reports the lease busy.
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, stat, writeFile, mkdtemp } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startBerth } from './support/berth.js';
import { startDistribution, type Distribution } from './support/distribution.js';
import { startContainerd } from './support/docker.js';
import { ok, requirePeer, run } from './support/peers.js';
import { cosignKeyPair } from './support/cosign.js';
import { makeLayeredLayout } from './support/oci-layouts.js';
import { makeBusyboxLayout, makeMultiArchLayout } from './support/oci-layouts.js';
import { berthCli, spawnBerth } from './support/transfer-fixtures.js';

async function workDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp('/tmp/berth-sync-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function upstream(t: TestContext): Promise<Distribution> {
  const d = await startDistribution({ logLevel: 'warn' });
  t.after(() => d.stop());
  return d;
}

/** Pushes the layout's image to `ref` (berth push, so no other peer is needed to set the scene). */
async function push(layout: string, ref: string): Promise<void> {
  ok(await berthCli(['push', '-q', layout, ref]));
}

async function writeConfig(dir: string, root: string, sync: unknown[], extra: Record<string, unknown> = {}) {
  const file = join(dir, `berth-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(
    file,
    JSON.stringify({ log: { level: 'warn' }, storage: { filesystem: { root } }, sync, ...extra }, null, 2),
  );
  return file;
}

async function sync(config: string, ...args: string[]) {
  const res = await berthCli(['sync', '-c', config, '--json', ...args], { timeoutMs: 120_000 });
  let doc: any;
  try {
    doc = JSON.parse(res.stdout);
  } catch {
    throw new Error(`berth sync printed no JSON (exit ${res.code}):\n${res.stdout}\n${res.stderr}`);
  }
  return { code: res.code, rules: doc.rules as any[], stderr: res.stderr };
}

async function crane(...args: string[]): Promise<string> {
  return ok(await run('crane', [...args, '--insecure']));
}

/** skopeo copies the image out of berth, checking every blob's digest as it goes. */
async function verifyAll(ref: string, dir: string): Promise<void> {
  const out = join(dir, `check-${Math.random().toString(36).slice(2)}`);
  ok(await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:x`]));
  await rm(out, { recursive: true, force: true });
}

test('filters select exactly the expected tags; referrers come along; a re-run copies nothing', async (t) => {
  if (!requirePeer(t, 'distribution', 'crane', 'regctl', 'skopeo', 'oras')) return;
  const dir = await workDir(t);
  const up = await upstream(t);
  const img = await makeLayeredLayout(join(dir, 'img'), { layers: 2, layerBytes: 64 * 1024 });
  const appTags = ['1.0.0', '1.2.0', '1.2.7', '1.10.0', '2.0.0', '2.1.0-rc.1', 'latest', 'edge'];
  for (const tag of appTags) await push(img.dir, `${up.host}/team/app:${tag}`);
  for (const tag of ['v1', 'v2', 'nightly']) await push(img.dir, `${up.host}/lib/one:${tag}`);
  await push(img.dir, `${up.host}/lib/two:v3`);
  await push(img.dir, `${up.host}/other/skip:v1`);
  const multi = await makeMultiArchLayout(join(dir, 'multi'), { tag: 'v1' });
  await push(multi.dir, `${up.host}/multi/app:v1`);
  // A referrer on the image: distribution 2.8.2 has no referrers API, so oras keeps the fallback tag index.
  const sbom = join(dir, 'sbom.json');
  await writeFile(sbom, '{"spdxVersion":"SPDX-2.3"}');
  ok(
    await run(
      'oras',
      [
        'attach',
        '--plain-http',
        '--artifact-type',
        'application/spdx+json',
        `${up.host}/team/app:1.2.7`,
        'sbom.json:application/spdx+json',
      ],
      {
        cwd: dir,
      },
    ),
  );

  const root = join(dir, 'berth');
  const config = await writeConfig(dir, root, [
    {
      name: 'app',
      url: up.url,
      allowPrivateNetworks: true,
      repositories: ['team/app'],
      prefix: 'mirror',
      tags: { semver: '>=1.2 <3', exclude: ['2.0.*'], newest: 2 },
    },
    {
      name: 'libs',
      url: up.url,
      allowPrivateNetworks: true,
      repositories: ['lib/*'],
      tags: { include: ['v*'], regex: '^v[0-9]+$' },
      referrers: false,
    },
    {
      name: 'arm',
      url: up.url,
      allowPrivateNetworks: true,
      repositories: ['multi/app'],
      platforms: ['linux/arm64/v8'],
    },
  ]);
  const first = await sync(config);
  assert.equal(first.code, 0, first.stderr);
  const [app, libs] = first.rules;
  assert.equal(app.result, 'ok');
  // newest 2 of {1.2.0, 1.2.7, 1.10.0} (2.0.0 excluded, the rc is a pre-release): 1.10.0 and 1.2.7.
  assert.equal(app.images.copied, 2);
  assert.equal(app.referrers >= 1, true, 'the SBOM referrer was copied');
  assert.deepEqual(libs.images, { copied: 3, skipped: 0, failed: 0 });
  assert.equal(libs.repositories, 2);
  assert.deepEqual(first.rules[2].images, { copied: 1, skipped: 0, failed: 0 });

  const berth = await startBerth(t, { root });
  assert.deepEqual((await crane('ls', `${berth.host}/mirror/team/app`)).trim().split('\n').sort(), ['1.10.0', '1.2.7']);
  assert.deepEqual((await crane('ls', `${berth.host}/lib/one`)).trim().split('\n').sort(), ['v1', 'v2']);
  assert.deepEqual((await crane('ls', `${berth.host}/lib/two`)).trim().split('\n'), ['v3']);
  assert.match(await crane('catalog', berth.host), /^(?!.*other\/skip)/s);
  // Byte for byte: the same digests as upstream, and every blob checks out.
  const upDigest = (await crane('digest', `${up.host}/team/app:1.2.7`)).trim();
  assert.equal((await crane('digest', `${berth.host}/mirror/team/app:1.2.7`)).trim(), upDigest);
  await verifyAll(`${berth.host}/mirror/team/app:1.10.0`, dir);
  ok(await run('regctl', ['registry', 'set', '--tls', 'disabled', berth.host]));
  const refs = ok(
    await run('regctl', ['artifact', 'list', `${berth.host}/mirror/team/app@${upDigest}`, '--format', '{{json .}}']),
  );
  assert.match(refs, /application\/spdx\+json/, 'the SBOM is listed by the referrers API');
  const inspect = JSON.parse(
    ok(await run('skopeo', ['inspect', '--tls-verify=false', `docker://${berth.host}/lib/two:v3`])),
  );
  assert.equal(inspect.Digest, upDigest);

  // One platform: the tag names that platform's image (as crane copy --platform does).
  assert.equal((await crane('digest', `${berth.host}/multi/app:v1`)).trim(), multi.images[1].digest);

  // Nothing changed upstream: the second run skips every image and downloads nothing.
  const again = await sync(config);
  assert.equal(again.code, 0);
  assert.equal(again.rules[0].images.copied, 0);
  assert.equal(again.rules[0].images.skipped, 2);
  assert.equal(again.rules[1].images.skipped, 3);
  assert.equal(again.rules[2].images.skipped, 1);
  assert.equal(again.rules[0].bytes + again.rules[1].bytes + again.rules[2].bytes, 0);
});

test('a sync killed mid-transfer resumes without downloading finished blobs again', async (t) => {
  if (!requirePeer(t, 'distribution', 'crane', 'skopeo')) return;
  const dir = await workDir(t);
  const up = await upstream(t);
  const layerBytes = 6 << 20;
  const img = await makeLayeredLayout(join(dir, 'img'), { layers: 3, layerBytes });
  await push(img.dir, `${up.host}/big/app:v1`);
  const root = join(dir, 'berth');
  const rule = { name: 'big', url: up.url, allowPrivateNetworks: true, repositories: ['big/app'] };
  // 4 MB/s and one blob at a time: ~4.5 s for the three layers, so the kill lands after the first is stored.
  const slow = await writeConfig(dir, root, [{ ...rule, bandwidth: 4_000_000, concurrency: 1 }]);
  const first = spawnBerth(['sync', '-c', slow, '--json']);
  const stored = async () => {
    const found: string[] = [];
    const base = join(root, 'blobs', 'sha256');
    for (const pre of await readdir(base).catch(() => [])) {
      for (const hex of await readdir(join(base, pre)).catch(() => [])) {
        const s = await stat(join(base, pre, hex, 'data')).catch(() => undefined);
        if (s && s.size === layerBytes) found.push(`sha256:${hex}`);
      }
    }
    return found;
  };
  const deadline = Date.now() + 60_000;
  while ((await stored()).length < 1) {
    assert.ok(Date.now() < deadline, `no layer stored within 60 s: ${first.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  first.child.kill('SIGKILL');
  await first.done;
  const done = await stored();
  assert.ok(done.length >= 1 && done.length < 3, `killed after ${done.length} of 3 layers`);

  // The killed run's status says so (its process is gone), on any server of this storage.
  const berth = await startBerth(t, { root, config: JSON.stringify({ log: { level: 'warn' }, sync: [rule] }) });
  const status = async () => ((await (await fetch(`${berth.url}/v2/_berth/api/v1/sync`)).json()) as any).rules[0];
  assert.equal((await status()).result, 'interrupted');

  const fast = await writeConfig(dir, root, [rule]);
  const second = await sync(fast);
  assert.equal(second.code, 0, second.stderr);
  const r = second.rules[0];
  assert.equal(r.result, 'ok');
  assert.equal(r.images.copied, 1);
  // The finished layers were found in storage, only the rest was downloaded.
  assert.ok(r.blobs.existed >= done.length, `${r.blobs.existed} blobs found stored, ${done.length} layers were`);
  assert.equal(r.blobs.existed + r.blobs.uploaded, 4);
  assert.ok(r.bytes <= (3 - done.length) * layerBytes + 4096, `downloaded ${r.bytes} bytes again`);

  assert.equal((await status()).result, 'ok');
  await verifyAll(`${berth.host}/big/app:v1`, dir);
  assert.equal(
    (await crane('digest', `${berth.host}/big/app:v1`)).trim(),
    (await crane('digest', `${up.host}/big/app:v1`)).trim(),
  );
});

/**
 * A reverse proxy in front of `to` that counts blob GETs in flight (each held 150 ms before it is forwarded, so
 * concurrent ones overlap for sure).
 */
async function countingProxy(t: TestContext, to: Distribution) {
  const seen = { inFlight: 0, max: 0, gets: 0 };
  const server = createServer((req, res) => {
    const blob = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '');
    const forward = () => {
      const up = request(
        { host: '127.0.0.1', port: to.port, method: req.method, path: req.url, headers: req.headers },
        (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          // Counted out when the upstream's body has ended: before the client can have all of it.
          if (blob) ur.on('end', () => seen.inFlight--);
          ur.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
    if (!blob) return forward();
    seen.gets++;
    seen.max = Math.max(seen.max, ++seen.inFlight);
    setTimeout(forward, 150);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

test('concurrency bounds the blobs in flight across a rule; bandwidth caps the rate', async (t) => {
  if (!requirePeer(t, 'distribution')) return;
  const dir = await workDir(t);
  const up = await upstream(t);
  // Four images of three distinct 256 KiB layers each: 16 blobs (with the configs), 3 MiB.
  for (const tag of ['a', 'b', 'c', 'd']) {
    const img = await makeLayeredLayout(join(dir, `img-${tag}`), { layers: 3, layerBytes: 256 << 10 });
    await push(img.dir, `${up.host}/many/app:${tag}`);
  }
  const rule = { name: 'many', allowPrivateNetworks: true, repositories: ['many/app'] };

  // concurrency 3: never more than three blobs in flight, though several images are copied at once.
  const counted = await countingProxy(t, up);
  const first = await sync(
    await writeConfig(dir, join(dir, 'berth-c'), [{ ...rule, url: counted.url, concurrency: 3 }]),
  );
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(first.rules[0].images, { copied: 4, skipped: 0, failed: 0 });
  assert.equal(counted.seen.gets, 16);
  assert.equal(counted.seen.max, 3, `blob GETs in flight at most: ${counted.seen.max}`);

  // bandwidth 500 kB/s: the bucket holds one second's worth, so 3 MiB take at least ~5.3 s (unthrottled the whole
  // run takes ~1 s here). Timed around the whole run: loopback socket buffers hold megabytes, so the proxy sees the
  // upstream's bodies end long before berth has read them.
  const cap = 500_000;
  const t0 = Date.now();
  const second = await sync(
    await writeConfig(dir, join(dir, 'berth-b'), [{ ...rule, url: up.url, concurrency: 8, bandwidth: cap }]),
  );
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(second.code, 0, second.stderr);
  const bytes = second.rules[0].bytes;
  assert.ok(bytes >= 3 << 20, `downloaded ${bytes} bytes`);
  const floor = (bytes - cap) / cap;
  assert.ok(seconds >= floor * 0.95, `${bytes} bytes in ${seconds} s: faster than the ${cap} B/s cap allows`);
  assert.ok(seconds < floor * 3 + 10, `${bytes} bytes in ${seconds} s: far slower than the cap`);
});

test('berth serve runs a scheduled rule: status endpoint, metrics, and one runner per rule', async (t) => {
  if (!requirePeer(t, 'distribution', 'crane')) return;
  const dir = await workDir(t);
  const up = await upstream(t);
  const img = await makeLayeredLayout(join(dir, 'img'), { layers: 1, layerBytes: 6 << 20 });
  await push(img.dir, `${up.host}/sched/app:v1`);
  const root = join(dir, 'berth');
  const rule = {
    name: 'sched',
    url: up.url,
    allowPrivateNetworks: true,
    repositories: ['sched/app'],
    schedule: '1h',
    bandwidth: 1_000_000,
  };
  const config = JSON.stringify({ log: { level: 'warn' }, sync: [rule] });
  const berth = await startBerth(t, { root, config });
  // The first run starts with the server; while it holds the rule's lease a `berth sync` of the same rule is busy.
  const cli = await writeConfig(dir, root, [rule]);
  const status0 = async () => (await (await fetch(`${berth.url}/v2/_berth/api/v1/sync`)).json()) as any;
  while ((await status0()).rules[0]?.result !== 'running') await new Promise((r) => setTimeout(r, 50));
  const busy = await sync(cli);
  assert.equal(busy.rules[0].result, 'busy');
  assert.equal(busy.code, 1);
  let status: any;
  const deadline = Date.now() + 60_000;
  for (;;) {
    status = await (await fetch(`${berth.url}/v2/_berth/api/v1/sync`)).json();
    if (status.rules[0]?.result === 'ok') break;
    assert.ok(Date.now() < deadline, `sync did not finish: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(status.enabled, true);
  assert.equal(status.rules[0].rule, 'sched');
  assert.deepEqual(status.rules[0].images, { copied: 1, skipped: 0, failed: 0 });
  const metrics = await (await fetch(`${berth.url}/metrics`)).text();
  assert.match(metrics, /berth_sync_images_total\{rule="sched",result="copied"\} 1/);
  assert.match(metrics, /berth_sync_runs_total\{rule="sched",result="ok"\} 1/);
  assert.match(metrics, /berth_sync_last_success_timestamp_seconds\{rule="sched"\} \d/);
  assert.equal(
    (await crane('digest', `${berth.host}/sched/app:v1`)).trim(),
    (await crane('digest', `${up.host}/sched/app:v1`)).trim(),
  );
});

test('a schedule runs the rule again: a tag pushed upstream after the first run arrives with the next', async (t) => {
  if (!requirePeer(t, 'distribution', 'crane')) return;
  const dir = await workDir(t);
  const up = await upstream(t);
  const img = await makeLayeredLayout(join(dir, 'img'), { layers: 1, layerBytes: 64 << 10 });
  await push(img.dir, `${up.host}/again/app:v1`);
  const rule = { name: 'again', url: up.url, allowPrivateNetworks: true, repositories: ['again/app'], schedule: '2s' };
  const berth = await startBerth(t, { config: JSON.stringify({ log: { level: 'warn' }, sync: [rule] }) });
  const okRuns = async () => {
    const m = /berth_sync_runs_total\{rule="again",result="ok"\} (\d+)/.exec(
      await (await fetch(`${berth.url}/metrics`)).text(),
    );
    return m ? Number(m[1]) : 0;
  };
  const until = async (what: string, check: () => Promise<boolean>) => {
    const deadline = Date.now() + 30_000;
    while (!(await check())) {
      assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  await until('the first run', async () => (await okRuns()) >= 1);
  const before = await okRuns();
  const other = await makeLayeredLayout(join(dir, 'other'), { layers: 1, layerBytes: 64 << 10 });
  await push(other.dir, `${up.host}/again/app:v2`);
  await until('a later run', async () => (await okRuns()) > before);
  await until('v2 to arrive', async () => {
    const r = await run('crane', ['digest', '--insecure', `${berth.host}/again/app:v2`]);
    return r.code === 0;
  });
  assert.equal(
    (await crane('digest', `${berth.host}/again/app:v2`)).trim(),
    (await crane('digest', `${up.host}/again/app:v2`)).trim(),
  );
});

test('sync into a proxy upstream: cosign signatures verify, containerd pulls with the upstream stopped', async (t) => {
  if (!requirePeer(t, 'distribution', 'cosign', 'containerd', 'crane')) return;
  const dir = await workDir(t);
  const up = await upstream(t);
  const img = await makeBusyboxLayout(join(dir, 'busybox'), { tag: 'v1' });
  ok(await berthCli(['push', '-q', img.dir, `${up.host}/team/tool:v1`]));
  ok(await berthCli(['push', '-q', img.dir, `${up.host}/team/tool:v2`]));
  const digest = img.manifest.digest;
  // cosign v2 signs with its tag scheme (sha256-<hex>.sig) on a registry without the referrers API.
  const cosign = await cosignKeyPair(dir);
  await cosign.sign(`${up.host}/team/tool@${digest}`);
  const root = join(dir, 'berth');
  const config = JSON.stringify({
    log: { level: 'warn' },
    proxy: {
      upstreams: [
        {
          name: 'up',
          url: up.url,
          prefix: 'up',
          host: up.host,
          tagTtl: '0s',
          timeout: '2s',
          allowPrivateNetworks: true,
        },
      ],
    },
    sync: [{ name: 'tools', upstream: 'up', repositories: ['team/tool'], tags: { include: ['v1'] }, schedule: '1h' }],
  });
  const berth = await startBerth(t, { root, config });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const s: any = await (await fetch(`${berth.url}/v2/_berth/api/v1/sync`)).json();
    if (s.rules[0]?.result === 'ok') {
      assert.deepEqual(s.rules[0].images, { copied: 1, skipped: 0, failed: 0 }, JSON.stringify(s));
      assert.equal(s.rules[0].referrers, 1, 'the cosign signature came with its image');
      break;
    }
    assert.ok(s.rules[0]?.result !== 'failed', JSON.stringify(s));
    assert.ok(Date.now() < deadline, `sync did not finish: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // Synced where the cache serves it (the upstream's prefix), with the signature tag; v2 was filtered out. (Read
  // from storage: through the cache, tags/list is the upstream's.)
  const stored = await readdir(join(root, 'repositories', 'up', 'team', 'tool', '_manifests', 'tags'));
  assert.deepEqual(stored.sort(), [`sha256-${digest.slice(7)}.sig`, 'v1']);
  await up.stop();
  await cosign.verify(`${berth.host}/up/team/tool@${digest}`);
  // containerd asks for the upstream's name through a hosts.toml mirror (?ns=); the upstream is gone, the synced
  // content answers.
  const containerd = await startContainerd();
  t.after(containerd.stop);
  const hosts = join(dir, 'hosts.d');
  await mkdir(join(hosts, up.host), { recursive: true });
  await writeFile(
    join(hosts, up.host, 'hosts.toml'),
    `server = "http://127.0.0.1:9"\n\n[host."http://${berth.host}"]\n  capabilities = ["pull", "resolve"]\n`,
  );
  ok(await containerd.ctr(['images', 'pull', '--hosts-dir', hosts, `${up.host}/team/tool:v1`]));
  assert.match(ok(await containerd.ctr(['images', 'ls'])), new RegExp(`team/tool:v1\\s+\\S+\\s+${digest}`));
});

test('bad rules are refused with the field and the fix', async (t) => {
  const dir = await workDir(t);
  const root = join(dir, 'berth');
  const cases: Array<[unknown, RegExp]> = [
    [{ name: 'a', repositories: ['x'] }, /sync\[0\] \(a\): name the source with either upstream .* or url/],
    [{ name: 'a', upstream: 'nope', repositories: ['x'] }, /upstream "nope" is not in proxy.upstreams/],
    [
      {
        name: 'a',
        url: 'http://127.0.0.1:1',
        repositories: ['x'],
        allowPrivateNetworks: true,
        tags: { semver: '>=one' },
      },
      /sync\[0\] \(a\): semver range ">=one": cannot read/,
    ],
    [
      { name: 'a', url: 'http://127.0.0.1:1', repositories: ['x'], allowPrivateNetworks: true, tags: { regex: '(' } },
      /tag regex "\("/,
    ],
    [{ name: 'Bad Name', url: 'http://127.0.0.1:1', repositories: ['x'] }, /sync\[0\]\.name|sync\.0\.name|name/],
    [
      { name: 'a', url: 'http://127.0.0.1:1', repositories: ['x'] },
      /sync\[0\] \(a\): 127\.0\.0\.1:1 is a loopback or private address; set allowPrivateNetworks: true/,
    ],
  ];
  for (const [rule, message] of cases) {
    const res = await berthCli(['sync', '-c', await writeConfig(dir, root, [rule])]);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, message);
  }
  const unknown = await berthCli([
    'sync',
    '-c',
    await writeConfig(dir, root, [
      { name: 'a', url: 'http://127.0.0.1:1', repositories: ['x'], allowPrivateNetworks: true },
    ]),
    '--rule',
    'b',
  ]);
  assert.match(unknown.stderr, /no sync rule named b; the config has a/);
});
