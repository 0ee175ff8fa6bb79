// berth's client on real networks: through a real forward proxy (tinyproxy) taken from HTTP_PROXY, bypassed for
// NO_PROXY hosts; against a TLS registry on a private CA trusted through --ca-file or docker's certs.d layout
// (ca.crt, and client.cert/client.key for mTLS), and a clear failure naming the fix without the CA.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth } from './support/berth.js';
import { makeBusyboxLayout } from './support/oci-layouts.js';
import { ok, requirePeer } from './support/peers.js';
import { makeLeaf, pki, tlsConfig } from './support/pki.js';
import { berthCli, startTinyproxy } from './support/transfer-fixtures.js';

/** An environment with exactly this proxy configuration (whatever the machine running the tests has set). */
function proxyEnv(proxy: string | undefined, noProxy: string | undefined): Record<string, string | undefined> {
  return {
    HTTP_PROXY: proxy,
    http_proxy: undefined,
    HTTPS_PROXY: proxy,
    https_proxy: undefined,
    NO_PROXY: noProxy,
    no_proxy: undefined,
  };
}

test('HTTP_PROXY: push and pull go through a real forward proxy (tinyproxy); NO_PROXY bypasses it', async (t) => {
  if (!requirePeer(t, 'tinyproxy')) return;
  const work = await mkdtemp(join(tmpdir(), 'berth-proxy-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const img = await makeBusyboxLayout(join(work, 'src'), { tag: 'v1' });
  const reg = await startBerth(t);
  const proxy = await startTinyproxy(t);
  const ref = `${reg.host}/proxied/app:v1`;
  const via = { env: proxyEnv(proxy.url, undefined) };

  ok(await berthCli(['push', `${img.dir}:v1`, ref], via));
  const afterPush = await proxy.requestsTo(reg.host);
  assert.ok(afterPush > 0, `tinyproxy saw no request to ${reg.host}:\n${await proxy.log()}`);

  const out = join(work, 'out');
  const pulled = JSON.parse(ok(await berthCli(['pull', ref, '--oci-layout', `${out}:v1`, '--json'], via)));
  assert.equal(pulled.digest, img.manifest.digest);
  const afterPull = await proxy.requestsTo(reg.host);
  assert.ok(afterPull > afterPush, 'the pull went through the proxy too');
  assert.equal((await readFile(join(out, 'blobs', 'sha256', img.layer.digest.slice(7)))).length, img.layer.size);

  // NO_PROXY names the registry: the proxy sees nothing more, and the transfer still works.
  const direct = { env: proxyEnv(proxy.url, '127.0.0.1') };
  ok(await berthCli(['copy', ref, `${reg.host}/direct/app:v1`], direct));
  assert.equal(ok(await berthCli(['digest', `${reg.host}/direct/app:v1`], direct)).trim(), img.manifest.digest);
  assert.equal(await proxy.requestsTo(reg.host), afterPull, 'NO_PROXY traffic bypassed the proxy');

  // A proxy that is down is reported as such (the registry itself is fine): the request really depends on it.
  await proxy.stop();
  const down = await berthCli(['digest', ref], via);
  assert.notEqual(down.code, 0);
  assert.match(down.stderr, /cannot reach registry/);
});

test('private CA: --ca-file and docker certs.d (ca.crt under ~/.docker/certs.d) work; without them the error names the fix', async (t) => {
  const dir = await pki(t);
  await makeLeaf(dir, 'ca', 'client', 10, 'clientAuth');
  const caFile = join(dir, 'ca.crt');
  const reg = await startBerth(t, { config: tlsConfig(dir), tlsCa: caFile });
  const img = await makeBusyboxLayout(join(dir, 'src'), { tag: 'v1' });
  const ref = `${reg.host}/tls/app:v1`;
  const noCerts = join(dir, 'no-certs.d');
  await mkdir(noCerts);

  // No trust configured: the failure says how to add it.
  const refused = await berthCli(['push', '--certs-dir', noCerts, `${img.dir}:v1`, ref]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /cannot verify TLS for 127\.0\.0\.1:\d+/);
  assert.match(refused.stderr, /--ca-file FILE/);
  assert.match(refused.stderr, new RegExp(`${noCerts}/127\\.0\\.0\\.1:\\d+/ca\\.crt`));

  // --ca-file: push and read back.
  ok(await berthCli(['push', '--ca-file', caFile, '--certs-dir', noCerts, `${img.dir}:v1`, ref]));
  assert.equal(
    ok(await berthCli(['digest', '--ca-file', caFile, '--certs-dir', noCerts, ref])).trim(),
    img.manifest.digest,
  );

  // certs.d in its default place under the home directory (~/.docker/certs.d/HOST:PORT/ca.crt), no flags.
  const home = join(dir, 'home');
  await mkdir(join(home, '.docker', 'certs.d', reg.host), { recursive: true });
  await writeFile(join(home, '.docker', 'certs.d', reg.host, 'ca.crt'), await readFile(caFile));
  const out = join(dir, 'out');
  ok(await berthCli(['pull', ref, '--oci-layout', `${out}:v1`], { env: { HOME: home } }));
  assert.equal((await readFile(join(out, 'blobs', 'sha256', img.manifest.digest.slice(7)))).length, img.manifest.size);
});

test('mTLS: the client certificate comes from certs.d/HOST/client.cert + client.key, as docker reads it', async (t) => {
  const dir = await pki(t);
  await makeLeaf(dir, 'ca', 'client', 10, 'clientAuth');
  const caFile = join(dir, 'ca.crt');
  const reg = await startBerth(t, {
    config: tlsConfig(dir, `    clientCAs: ${caFile}\n`),
    tlsCa: caFile,
    readyCert: { cert: join(dir, 'client.crt'), key: join(dir, 'client.key') },
  });
  const img = await makeBusyboxLayout(join(dir, 'src'), { tag: 'v1' });
  const ref = `${reg.host}/mtls/app:v1`;
  const certs = join(dir, 'certs.d');
  const hostDir = join(certs, reg.host);
  await mkdir(hostDir, { recursive: true });
  await writeFile(join(hostDir, 'ca.crt'), await readFile(caFile));

  const noClientCert = await berthCli(['push', '--certs-dir', certs, `${img.dir}:v1`, ref]);
  assert.notEqual(noClientCert.code, 0, 'the registry requires a client certificate');

  await writeFile(join(hostDir, 'client.cert'), await readFile(join(dir, 'client.crt')));
  await writeFile(join(hostDir, 'client.key'), await readFile(join(dir, 'client.key')));
  ok(await berthCli(['push', '--certs-dir', certs, `${img.dir}:v1`, ref]));
  assert.equal(ok(await berthCli(['digest', '--certs-dir', certs, ref])).trim(), img.manifest.digest);

  // A key without its certificate is a configuration error, named as such.
  await rm(join(hostDir, 'client.cert'));
  const half = await berthCli(['digest', '--certs-dir', certs, ref]);
  assert.notEqual(half.code, 0);
  assert.match(half.stderr, /client\.key has no matching client\.cert/);
});

test('HTTPS through HTTP(S)_PROXY: a private-CA registry (certs.d) is reached by CONNECT through tinyproxy; --insecure skips verification as crane does', async (t) => {
  if (!requirePeer(t, 'tinyproxy')) return;
  const dir = await pki(t);
  const caFile = join(dir, 'ca.crt');
  const reg = await startBerth(t, { config: tlsConfig(dir), tlsCa: caFile });
  const img = await makeBusyboxLayout(join(dir, 'src'), { tag: 'v1' });
  const ref = `${reg.host}/tls-proxied/app:v1`;
  const certs = join(dir, 'certs.d');
  await mkdir(join(certs, reg.host), { recursive: true });
  await writeFile(join(certs, reg.host, 'ca.crt'), await readFile(caFile));
  const proxy = await startTinyproxy(t);
  const via = { env: proxyEnv(proxy.url, undefined) };

  // The TLS session runs inside the proxy's tunnel, so the CA from certs.d must reach it.
  ok(await berthCli(['push', '--certs-dir', certs, `${img.dir}:v1`, ref], via));
  const afterPush = await proxy.requestsTo(reg.host);
  assert.ok(afterPush > 0, `tinyproxy saw no CONNECT to ${reg.host}:\n${await proxy.log()}`);
  assert.match(await proxy.log(), new RegExp(`CONNECT ${reg.host.replace(/\./g, '\\.')} `));
  const out = join(dir, 'out');
  const pulled = JSON.parse(
    ok(await berthCli(['pull', '--certs-dir', certs, ref, '--oci-layout', `${out}:v1`, '--json'], via)),
  );
  assert.equal(pulled.digest, img.manifest.digest);
  assert.ok((await proxy.requestsTo(reg.host)) > afterPush, 'the pull went through the proxy too');

  // Without the CA the certificate is refused through the proxy as well; --insecure (crane's meaning: skip
  // verification) reads the same registry without any trust configured.
  const noCerts = join(dir, 'no-certs.d');
  await mkdir(noCerts);
  const refused = await berthCli(['digest', '--certs-dir', noCerts, ref], via);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /cannot verify TLS for 127\.0\.0\.1:\d+/);
  assert.equal(
    ok(await berthCli(['digest', '--insecure', '--certs-dir', noCerts, ref], via)).trim(),
    img.manifest.digest,
  );
  assert.equal(ok(await berthCli(['digest', '--insecure', '--certs-dir', noCerts, ref])).trim(), img.manifest.digest);
});
