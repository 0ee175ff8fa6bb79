// The pull-through cache end to end (issue 7): `berth serve` mirrors distribution 2.8.2 (as docker.io, through a
// request-counting proxy) and a second berth; skopeo, containerd (hosts.toml mirror → `?ns=`) and the docker engine
// (`registry-mirrors`) pull through it and get the upstream's digests. Then the upstreams go away and come back,
// and 50 clients pull one uncached 200 MB layer at once.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { once } from 'node:events';
import { test, type TestContext } from 'node:test';
import { makeClients } from './support/clients.js';
import { startDistribution } from './support/distribution.js';
import { startContainerd, startDockerd } from './support/docker.js';
import { makeBusyboxLayout } from './support/oci-layouts.js';
import { ok, readJson, requirePeer } from './support/peers.js';
import { startBerth } from './support/berth.js';
import { startCountingProxy } from './support/counting-proxy.js';

async function workDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp('/tmp/berth-proxy-peers-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function mirrorConfig(docker: string, second: { url: string; host: string }): string {
  return JSON.stringify({
    log: { level: 'warn', requests: false },
    proxy: {
      upstreams: [
        {
          name: 'docker.io',
          url: docker,
          prefix: 'docker.io',
          host: 'docker.io',
          default: true,
          tagTtl: '0s',
          timeout: '3s',
          allow: ['library/**'],
          allowPrivateNetworks: true,
        },
        {
          name: 'second',
          url: second.url,
          prefix: 'second',
          host: second.host,
          tagTtl: '0s',
          timeout: '3s',
          allowPrivateNetworks: true,
        },
      ],
    },
  });
}

/** Streams a blob from `url` and returns its sha256 digest and length (never buffering it). */
function hashGet(url: string): Promise<{ digest: string; length: number; status: number; text?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      const h = createHash('sha256');
      let length = 0;
      res.on('data', (c: Buffer) => {
        h.update(c);
        length += c.length;
      });
      let text = '';
      res.on('data', (c: Buffer) => res.statusCode !== 200 && (text += c));
      res.on('end', () =>
        resolve({ digest: `sha256:${h.digest('hex')}`, length, status: res.statusCode!, ...(text ? { text } : {}) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Uploads a file as a blob (POST, then a streamed PUT ?digest=) to a registry. */
async function pushFileBlob(base: string, name: string, file: string, digest: string, size: number): Promise<void> {
  const start = await fetch(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST' });
  assert.equal(start.status, 202);
  const location = new URL(start.headers.get('location')!, base);
  location.searchParams.set('digest', digest);
  await new Promise<void>((resolve, reject) => {
    const req = request(
      location,
      { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) } },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`PUT blob: ${res.statusCode}`))));
      },
    );
    req.on('error', reject);
    createReadStream(file).pipe(req);
  });
}

test('pull through berth from distribution and another berth with real clients', async (t) => {
  if (!requirePeer(t, 'distribution', 'skopeo', 'busybox')) return;
  const dir = await workDir(t);
  const clients = await makeClients(t);
  const dist = await startDistribution();
  t.after(dist.stop);
  const counting = await startCountingProxy(dist.url);
  t.after(() => counting.stop());
  // Token auth is not in berth yet: the second upstream is a plain berth.
  const second = await startBerth(t);
  const image = await makeBusyboxLayout(join(dir, 'busybox'), { tag: 'v1' });
  ok(
    await clients.skopeo([
      'copy',
      image.ref,
      `docker://${dist.host}/library/busybox-test:v1`,
      '--dest-tls-verify=false',
    ]),
  );
  const other = await makeBusyboxLayout(join(dir, 'other'), { tag: 'v1', files: { '/etc/marker': 'second' } });
  ok(await clients.skopeo(['copy', other.ref, `docker://${second.host}/team/tool:v1`, '--dest-tls-verify=false']));
  const mirror = await startBerth(t, { config: mirrorConfig(counting.url, second) });
  const inspect = async (ref: string) =>
    ok(await clients.skopeo(['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${ref}`])).trim();

  await t.test('skopeo: by prefix, digests identical, copy to an OCI layout', async () => {
    assert.equal(await inspect(`${mirror.host}/docker.io/library/busybox-test:v1`), image.manifest.digest);
    assert.equal(await inspect(`${mirror.host}/second/team/tool:v1`), other.manifest.digest);
    ok(
      await clients.skopeo([
        'copy',
        '--src-tls-verify=false',
        `docker://${mirror.host}/second/team/tool:v1`,
        `oci:${join(dir, 'copied')}:v1`,
      ]),
    );
    const index = await readJson<{ manifests: Array<{ digest: string }> }>(join(dir, 'copied', 'index.json'));
    assert.equal(index.manifests[0].digest, other.manifest.digest);
    assert.equal(counting.count('GET', `/blobs/${image.layer.digest}`), 0, 'inspect fetched no layer');
  });

  await t.test('containerd: hosts.toml mirrors (ns=docker.io and ns=<second host>)', async (t) => {
    if (!requirePeer(t, 'containerd')) return;
    const containerd = await startContainerd();
    t.after(containerd.stop);
    const hosts = join(dir, 'hosts.d');
    const mirrorOf = async (host: string, server: string) => {
      await mkdir(join(hosts, host), { recursive: true });
      await writeFile(
        join(hosts, host, 'hosts.toml'),
        `server = "${server}"\n\n[host."http://${mirror.host}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
    };
    // The real servers are unreachable on purpose: every byte must come through the mirror.
    await mirrorOf('docker.io', 'http://127.0.0.1:9');
    await mirrorOf(second.host, 'http://127.0.0.1:9');
    const before = counting.count('GET', `/blobs/${image.layer.digest}`);
    ok(await containerd.ctr(['images', 'pull', '--hosts-dir', hosts, 'docker.io/library/busybox-test:v1']));
    ok(await containerd.ctr(['images', 'pull', '--hosts-dir', hosts, `${second.host}/team/tool:v1`]));
    const list = ok(await containerd.ctr(['images', 'ls']));
    assert.match(list, new RegExp(`docker.io/library/busybox-test:v1\\s+\\S+\\s+${image.manifest.digest}`));
    assert.match(list, new RegExp(`team/tool:v1\\s+\\S+\\s+${other.manifest.digest}`));
    assert.equal(counting.count('GET', `/blobs/${image.layer.digest}`), before + 1, 'one upstream fetch of the layer');
  });

  await t.test('docker engine: registry-mirrors, short name', async (t) => {
    if (!requirePeer(t, 'docker')) return;
    const engine = await startDockerd({ insecureRegistries: [mirror.host], registryMirrors: [mirror.url] });
    t.after(engine.stop);
    ok(await engine.docker(['pull', 'busybox-test:v1']));
    const digests = ok(
      await engine.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', 'busybox-test:v1']),
    );
    assert.ok(digests.includes(`busybox-test@${image.manifest.digest}`), digests);
    assert.equal(
      ok(await engine.docker(['run', '--rm', '--network', 'none', 'busybox-test:v1'])).trim(),
      'hello-from-berth',
    );

    await t.test('upstream down: cached tags and blobs are still served; back up: revalidation resumes', async () => {
      counting.target = 'http://127.0.0.1:9'; // distribution unreachable
      await second.stop();
      ok(await engine.docker(['rmi', 'busybox-test:v1']));
      ok(await engine.docker(['pull', 'busybox-test:v1']));
      assert.equal(await inspect(`${mirror.host}/docker.io/library/busybox-test:v1`), image.manifest.digest);
      assert.equal(await inspect(`${mirror.host}/second/team/tool:v1`), other.manifest.digest);
      ok(
        await clients.skopeo([
          'copy',
          '--src-tls-verify=false',
          `docker://${mirror.host}/second/team/tool:v1`,
          `oci:${join(dir, 'offline')}:v1`,
        ]),
      );
      const gone = await fetch(`${mirror.url}/v2/second/team/never-pulled/manifests/v1`);
      assert.equal(gone.status, 503);

      counting.target = dist.url;
      await second.restart();
      const heads = counting.count('HEAD', '/v2/library/busybox-test/manifests/v1');
      assert.equal(await inspect(`${mirror.host}/docker.io/library/busybox-test:v1`), image.manifest.digest);
      assert.ok(counting.count('HEAD', '/v2/library/busybox-test/manifests/v1') > heads, 'revalidated with HEAD');
      const next = await makeBusyboxLayout(join(dir, 'next'), { tag: 'v1', files: { '/etc/marker': 'next' } });
      ok(await clients.skopeo(['copy', next.ref, `docker://${second.host}/team/tool:v1`, '--dest-tls-verify=false']));
      assert.equal(await inspect(`${mirror.host}/second/team/tool:v1`), next.manifest.digest);
    });
  });

  await t.test('50 concurrent clients, one uncached 200 MB layer: one upstream fetch, correct bytes', async () => {
    const file = join(dir, 'big.bin');
    const out = createWriteStream(file);
    const h = createHash('sha256');
    const size = 200 << 20;
    for (let left = size; left > 0; left -= 4 << 20) {
      const chunk = randomBytes(Math.min(left, 4 << 20));
      h.update(chunk);
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    const digest = `sha256:${h.digest('hex')}`;
    await pushFileBlob(dist.url, 'library/big', file, digest, size);
    const results = await Promise.all(
      Array.from({ length: 50 }, () => hashGet(`${mirror.url}/v2/library/big/blobs/${digest}`)),
    );
    for (const r of results) assert.deepEqual(r, { digest, length: size, status: 200 });
    assert.equal(counting.count('GET', `/v2/library/big/blobs/${digest}`), 1);
  });
});
