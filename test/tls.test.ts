// `berth serve` over TLS (config http.tls) with a private CA, proven with real clients: skopeo, crane, curl over
// HTTP/2 and HTTP/1.1, berth's own CLI, containerd and the docker engine; a certificate rotated on disk is served to the next connection while
// an open one keeps working; a wrong CA fails cleanly; clientCAs requires client certificates (mTLS).
import assert from 'node:assert/strict';
import { connect as http2Connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { Agent, get as httpsGet, request as httpsRequest } from 'node:https';
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { createHash, randomBytes } from 'node:crypto';
import { startContainerd, startDockerd } from './support/docker.js';
import { findExecutable, ok, requirePeer, run, TOOLS_BIN } from './support/peers.js';
import { startBerth } from './support/berth.js';
import { makeBusyboxLayout } from './support/oci-layouts.js';
import { makeLeaf, pki, tlsConfig } from './support/pki.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The serial number of the certificate a fresh connection is served. */
function servedSerial(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca, servername: undefined }, () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.end();
    });
    s.on('error', reject);
  });
}

const curl = (args: string[]) => run('curl', ['-sS', '--max-time', '20', ...args]);

test('HTTPS with a private CA: curl over HTTP/2 and HTTP/1.1, streamed uploads and blob GETs over both; a wrong CA fails cleanly', async (t) => {
  const dir = await pki(t);
  const berth = await startBerth(t, { config: tlsConfig(dir), tlsCa: join(dir, 'ca.crt') });
  const ca = ['--cacert', join(dir, 'ca.crt')];
  for (const [flag, version] of [
    ['--http2', '2'],
    ['--http1.1', '1.1'],
  ] as const) {
    const v2 = ok(
      await curl([flag, ...ca, '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `${berth.url}/v2/`]),
    );
    assert.equal(v2, `${version} 200`, `${flag}: /v2/`);
    // A streamed body (stdin: no Content-Length, DATA frames / chunked) to PATCH, then the digest PUT, then the
    // blob back through the direct-to-socket GET path.
    const blob = randomBytes(3 * 1024 * 1024 + 17);
    const digest = sha256(blob);
    const post = ok(
      await curl([flag, ...ca, '-X', 'POST', '-D', '-', '-o', '/dev/null', `${berth.url}/v2/tls/curl/blobs/uploads/`]),
    );
    const loc = /^location: (\S+)/im.exec(post)![1]!;
    const abs = loc.startsWith('/') ? berth.url + loc : loc;
    const patch = await run(
      'curl',
      [
        '-sS',
        flag,
        ...ca,
        '-X',
        'PATCH',
        '-H',
        'Content-Type: application/octet-stream',
        '-T',
        '-',
        '-D',
        '-',
        '-o',
        '/dev/null',
        abs,
      ],
      { input: blob },
    );
    assert.match(ok(patch), /^HTTP\/[\d.]+ 202/m, patch.stdout);
    const loc2 = /^location: (\S+)/im.exec(patch.stdout)![1]!;
    const put = `${loc2.startsWith('/') ? berth.url + loc2 : loc2}${loc2.includes('?') ? '&' : '?'}digest=${digest}`;
    assert.equal(ok(await curl([flag, ...ca, '-X', 'PUT', '-o', '/dev/null', '-w', '%{http_code}', put])), '201');
    const got = await run('curl', [
      '-sS',
      flag,
      ...ca,
      '-o',
      join(dir, 'got'),
      '-w',
      '%{http_version} %{http_code}',
      `${berth.url}/v2/tls/curl/blobs/${digest}`,
    ]);
    assert.equal(ok(got), `${version} 200`);
    assert.equal(sha256(await readFile(join(dir, 'got'))), digest, `${flag}: the blob comes back intact`);
  }
  // A client that trusts another CA: a certificate error, not a hang or a server crash.
  const wrong = await curl(['--http2', '--cacert', join(dir, 'other-ca.crt'), `${berth.url}/v2/`]);
  assert.equal(wrong.code, 60, wrong.stderr);
  await assert.rejects(
    servedSerial(berth.port, await readFile(join(dir, 'other-ca.crt'))),
    /self[- ]signed|unable to verify|certificate/i,
  );
  // Plain HTTP to the TLS port is refused, and the server keeps serving.
  const plain = await curl(['--http1.1', `http://127.0.0.1:${berth.port}/v2/`]);
  assert.notEqual(plain.code, 0);
  assert.equal(ok(await curl([...ca, '-o', '/dev/null', '-w', '%{http_code}', `${berth.url}/v2/`])), '200');
});

test('skopeo, crane and berth push and pull over HTTPS trusting only the private CA', async (t) => {
  if (!requirePeer(t, 'skopeo', 'crane')) return;
  const dir = await pki(t);
  const caFile = join(dir, 'ca.crt');
  const berth = await startBerth(t, { config: tlsConfig(dir), tlsCa: caFile });
  const certDir = join(dir, 'certs.d');
  await run('mkdir', ['-p', certDir]).then(ok);
  await writeFile(join(certDir, 'ca.crt'), await readFile(caFile));
  const img = await makeBusyboxLayout(join(dir, 'layout'));
  // skopeo: push and pull with --dest-cert-dir/--src-cert-dir (TLS verification on, as it is by default).
  ok(await run('skopeo', ['copy', '--dest-cert-dir', certDir, img.ref, `docker://${berth.host}/tls/skopeo:v1`]));
  ok(
    await run('skopeo', [
      'copy',
      '--src-cert-dir',
      certDir,
      `docker://${berth.host}/tls/skopeo:v1`,
      `oci:${join(dir, 'back')}:v1`,
    ]),
  );
  const index = JSON.parse(await readFile(join(dir, 'back', 'index.json'), 'utf8'));
  assert.equal(index.manifests[0].digest, img.manifest.digest);
  // Without the CA skopeo refuses the certificate.
  const refused = await run('skopeo', [
    'inspect',
    '--cert-dir',
    join(dir, 'nowhere'),
    `docker://${berth.host}/tls/skopeo:v1`,
  ]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /certificate/i);
  // crane (Go's TLS, which negotiates HTTP/2): SSL_CERT_FILE is its only trust.
  const crane = findExecutable('crane') ?? join(TOOLS_BIN, 'crane');
  const env = { SSL_CERT_FILE: caFile, SSL_CERT_DIR: join(dir, 'nowhere') };
  ok(await run(crane, ['copy', `${berth.host}/tls/skopeo:v1`, `${berth.host}/tls/crane:v1`], { env }));
  assert.equal(ok(await run(crane, ['digest', `${berth.host}/tls/crane:v1`], { env })).trim(), img.manifest.digest);
  ok(await run(crane, ['pull', '--format', 'oci', `${berth.host}/tls/crane:v1`, join(dir, 'crane-out')], { env }));
  // berth's own client: NODE_EXTRA_CA_CERTS.
  const benv = { NODE_EXTRA_CA_CERTS: caFile };
  ok(
    await run(process.execPath, [BERTH, 'copy', `${berth.host}/tls/crane:v1`, `${berth.host}/tls/berth:v1`], {
      env: benv,
    }),
  );
  const inspect = ok(
    await run(process.execPath, [BERTH, 'inspect', '--raw', `${berth.host}/tls/berth:v1`], { env: benv }),
  );
  assert.equal(sha256(Buffer.from(inspect.replace(/\n$/, ''))), img.manifest.digest);
  const noCa = await run(process.execPath, [BERTH, 'inspect', '--raw', `${berth.host}/tls/berth:v1`]);
  assert.notEqual(noCa.code, 0);
});

/** A TLS berth on a fresh private CA, with a busybox image pushed to `repo` by skopeo (trusting only that CA). */
async function tlsBerthWithImage(t: TestContext, repo: string) {
  const dir = await pki(t);
  const caFile = join(dir, 'ca.crt');
  const berth = await startBerth(t, { config: tlsConfig(dir), tlsCa: caFile });
  const certDir = join(dir, 'certs.d');
  await mkdir(certDir);
  await writeFile(join(certDir, 'ca.crt'), await readFile(caFile));
  const img = await makeBusyboxLayout(join(dir, 'layout'));
  ok(await run('skopeo', ['copy', '--dest-cert-dir', certDir, img.ref, `docker://${berth.host}/${repo}`]));
  return { dir, caFile, berth };
}

test('docker engine verifies the private CA from /etc/docker/certs.d/HOST:PORT/ca.crt, then pushes and pulls', async (t) => {
  if (!requirePeer(t, 'docker', 'skopeo', 'unshare')) return;
  // dockerd treats every registry in 127.0.0.0/8 as insecure (TLS without verification, certs.d never read), so
  // berth listens on ::1 under a name that only this engine resolves (its own /etc/hosts and /etc/docker in a
  // mount namespace): docker verifies the certificate as it would for a real host.
  const dir = await pki(t);
  const caFile = join(dir, 'ca.crt');
  const name = 'registry.berth.test';
  await makeLeaf(dir, 'ca', 'server', 3, 'serverAuth', ['IP:::1', `DNS:${name}`]);
  const berth = await startBerth(t, { ipv6: true, config: tlsConfig(dir), tlsCa: caFile });
  const host = `${name}:${berth.port}`;
  const engine = await startDockerd({ insecureRegistries: [], namesOnIpv6Loopback: [name] });
  t.after(() => engine.stop());
  const img = await makeBusyboxLayout(join(dir, 'layout'));
  ok(await run('skopeo', ['copy', img.ref, `docker-archive:${join(dir, 'busybox.tar')}:busybox:v1`]));
  ok(await engine.docker(['load', '-i', join(dir, 'busybox.tar')]));
  ok(await engine.docker(['tag', 'busybox:v1', `${host}/tls/docker:v1`]));
  // Without the CA in certs.d: a certificate error, nothing stored.
  const untrusted = await engine.docker(['push', `${host}/tls/docker:v1`]);
  assert.notEqual(untrusted.code, 0, 'docker pushed without trusting the CA');
  assert.match(untrusted.stderr, /x509|certificate/i, untrusted.stderr);
  assert.equal(
    ok(
      await curl(['--cacert', caFile, '-o', '/dev/null', '-w', '%{http_code}', `${berth.url}/v2/tls/docker/tags/list`]),
    ),
    '404',
  );
  // The CA where docker's documentation puts it: /etc/docker/certs.d/HOST:PORT/ca.crt.
  await writeFile(join(await engine.certsDir(host), 'ca.crt'), await readFile(caFile));
  ok(await engine.docker(['push', `${host}/tls/docker:v1`]));
  ok(await engine.docker(['rmi', `${host}/tls/docker:v1`, 'busybox:v1']));
  ok(await engine.docker(['pull', `${host}/tls/docker:v1`]));
  const inspected = JSON.parse(ok(await engine.docker(['image', 'inspect', `${host}/tls/docker:v1`])));
  assert.equal(inspected[0].RepoDigests.length, 1, 'the pulled image carries the digest berth served');
  const tags = ok(await curl(['--cacert', caFile, `${berth.url}/v2/tls/docker/tags/list`]));
  assert.deepEqual(JSON.parse(tags).tags, ['v1']);
});

test('containerd pulls and pushes over HTTPS trusting the CA named in hosts.toml', async (t) => {
  if (!requirePeer(t, 'containerd', 'skopeo')) return;
  const { dir, caFile, berth } = await tlsBerthWithImage(t, 'tls/ctr:v1');
  const hosts = join(dir, 'hosts');
  await mkdir(join(hosts, berth.host), { recursive: true });
  await writeFile(
    join(hosts, berth.host, 'hosts.toml'),
    `server = "${berth.url}"\n\n[host."${berth.url}"]\n  capabilities = ["pull", "resolve", "push"]\n  ca = "${caFile}"\n`,
  );
  const containerd = await startContainerd();
  t.after(() => containerd.stop());
  const ref = `${berth.host}/tls/ctr:v1`;
  // The same host over https without the CA: a certificate error.
  const bare = join(dir, 'hosts-no-ca');
  await mkdir(join(bare, berth.host), { recursive: true });
  await writeFile(
    join(bare, berth.host, 'hosts.toml'),
    `server = "${berth.url}"\n\n[host."${berth.url}"]\n  capabilities = ["pull", "resolve", "push"]\n`,
  );
  const untrusted = await containerd.ctr(['images', 'pull', '--hosts-dir', bare, ref]);
  assert.notEqual(untrusted.code, 0, 'without the CA the pull fails');
  assert.match(untrusted.stderr + untrusted.stdout, /x509|certificate/);
  ok(await containerd.ctr(['images', 'pull', '--hosts-dir', hosts, ref]));
  ok(await containerd.ctr(['images', 'tag', ref, `${berth.host}/tls/ctr-pushed:v1`]));
  ok(await containerd.ctr(['images', 'push', '--hosts-dir', hosts, `${berth.host}/tls/ctr-pushed:v1`]));
  const tags = ok(await curl(['--cacert', caFile, `${berth.url}/v2/tls/ctr-pushed/tags/list`]));
  assert.deepEqual(JSON.parse(tags).tags, ['v1']);
});

test('a certificate rotated on disk is served to the next connection; an open connection keeps working; a broken pair is ignored', async (t) => {
  const dir = await pki(t);
  const caPem = await readFile(join(dir, 'ca.crt'));
  const berth = await startBerth(t, { config: tlsConfig(dir), tlsCa: join(dir, 'ca.crt') });
  assert.equal(await servedSerial(berth.port, caPem), '01');
  // An HTTP/2 connection opened before the rotation.
  const session = http2Connect(berth.url, { ca: caPem });
  t.after(() => session.close());
  const get = (path: string) =>
    new Promise<number>((resolve, reject) => {
      const s = session.request({ ':path': path });
      s.on('response', (h) => resolve(Number(h[':status'])));
      s.on('error', reject);
      s.resume();
    });
  assert.equal(await get('/v2/'), 200);

  // A half-written certificate: logged, the old pair is kept.
  await writeFile(join(dir, 'server.crt'), '-----BEGIN CERTIFICATE-----\nnot a cert\n');
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(await servedSerial(berth.port, caPem), '01');
  assert.match(berth.logs(), /TLS certificate change ignored/);

  // A new key and certificate (serial 2), swapped in by rename as cert-manager does.
  const next = join(dir, 'next');
  await run('mkdir', [next]).then(ok);
  await writeFile(join(next, 'ca.crt'), caPem);
  await writeFile(join(next, 'ca.key'), await readFile(join(dir, 'ca.key')));
  await makeLeaf(next, 'ca', 'server', 2, 'serverAuth');
  await rename(join(next, 'server.key'), join(dir, 'server.key'));
  await rename(join(next, 'server.crt'), join(dir, 'server.crt'));
  let serial = '01';
  for (let i = 0; i < 50 && serial === '01'; i++) {
    await new Promise((r) => setTimeout(r, 200));
    serial = await servedSerial(berth.port, caPem);
  }
  assert.equal(serial, '02', 'the next connection gets the rotated certificate');
  // The connection from before still works, with the certificate it was accepted with.
  assert.equal(await get('/v2/'), 200);
  assert.equal((session.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber, '01');
  // SIGTERM with that HTTP/2 session and an idle HTTP/1.1 keep-alive connection open: both are closed as idle,
  // not waited on for the 30 s shutdownTimeout.
  const agent = new Agent({ keepAlive: true, ca: caPem });
  t.after(() => agent.destroy());
  await new Promise<void>((resolve, reject) =>
    httpsGet(`${berth.url}/v2/`, { agent }, (res) => res.resume().on('end', resolve)).on('error', reject),
  );
  const started = Date.now();
  await berth.stop();
  assert.ok(Date.now() - started < 5_000, `stopped in ${Date.now() - started} ms`);
});

test('clientCAs: a client certificate from that CA is required (mTLS)', async (t) => {
  const dir = await pki(t);
  await makeLeaf(dir, 'ca', 'client', 10, 'clientAuth');
  await makeLeaf(dir, 'other-ca', 'stranger', 11, 'clientAuth');
  const berth = await startBerth(t, {
    config: tlsConfig(dir, `    clientCAs: ${dir}/ca.crt\n    minVersion: TLSv1.3\n`),
    tlsCa: join(dir, 'ca.crt'),
    readyCert: { cert: join(dir, 'client.crt'), key: join(dir, 'client.key') },
  });
  const ca = ['--cacert', join(dir, 'ca.crt')];
  const withCert = await curl([
    '--http2',
    ...ca,
    '--cert',
    join(dir, 'client.crt'),
    '--key',
    join(dir, 'client.key'),
    '-o',
    '/dev/null',
    '-w',
    '%{http_version} %{http_code}',
    `${berth.url}/v2/`,
  ]);
  assert.equal(ok(withCert), '2 200');
  const none = await curl(['--http1.1', ...ca, `${berth.url}/v2/`]);
  assert.notEqual(none.code, 0, 'no client certificate: refused');
  const stranger = await curl([
    '--http1.1',
    ...ca,
    '--cert',
    join(dir, 'stranger.crt'),
    '--key',
    join(dir, 'stranger.key'),
    `${berth.url}/v2/`,
  ]);
  assert.notEqual(stranger.code, 0, 'a certificate from another CA: refused');
  const tls12 = await curl([
    '--http1.1',
    ...ca,
    '--tls-max',
    '1.2',
    '--cert',
    join(dir, 'client.crt'),
    '--key',
    join(dir, 'client.key'),
    `${berth.url}/v2/`,
  ]);
  assert.notEqual(tls12.code, 0, 'minVersion TLSv1.3 refuses TLS 1.2');
});

test('token mode over HTTP/2: the realm names the :authority the client used, as the Host header does over HTTP/1.1', async (t) => {
  const dir = await pki(t);
  const berth = await startBerth(t, {
    config: `${tlsConfig(dir)}auth:\n  mode: token\n  token: { realm: /token, service: berth-test, issuer: berth-test }\n`,
    tlsCa: join(dir, 'ca.crt'),
  });
  for (const flag of ['--http2', '--http1.1']) {
    const r = ok(
      await curl([
        flag,
        '--cacert',
        join(dir, 'ca.crt'),
        '-D',
        '-',
        '-o',
        '/dev/null',
        `https://localhost:${berth.port}/v2/`,
      ]),
    );
    assert.match(r, /^HTTP\/[\d.]+ 401/m);
    assert.match(
      r,
      new RegExp(`^www-authenticate: Bearer realm="https://localhost:${berth.port}/token"`, 'im'),
      `${flag}: ${r}`,
    );
  }
});

test('http.requestTimeout holds over TLS too: a request still sending after it is cut off and nothing is stored', async (t) => {
  const dir = await pki(t);
  const caPem = await readFile(join(dir, 'ca.crt'));
  const berth = await startBerth(t, {
    config: tlsConfig(dir).replace('http:\n', 'http:\n  requestTimeout: 1s\n'),
    tlsCa: join(dir, 'ca.crt'),
  });
  const post = ok(
    await curl([
      '--cacert',
      join(dir, 'ca.crt'),
      '-X',
      'POST',
      '-D',
      '-',
      '-o',
      '/dev/null',
      `${berth.url}/v2/tls/slow/blobs/uploads/`,
    ]),
  );
  const loc = /^location: (\S+)/im.exec(post)![1]!;
  const outcome = await new Promise<string>((resolve) => {
    const req = httpsRequest(
      `${berth.url}${loc}`,
      { method: 'PATCH', ca: caPem, agent: false, headers: { 'content-type': 'application/octet-stream' } },
      (res) => {
        res.resume();
        resolve(`status ${res.statusCode}`);
      },
    );
    req.on('error', (e) => resolve(`error ${e.message}`));
    let n = 0;
    const tick = setInterval(() => {
      if (req.destroyed) return clearInterval(tick);
      req.write(Buffer.alloc(1024, n));
      if (++n === 15) {
        clearInterval(tick);
        req.end();
      }
    }, 200);
  });
  assert.doesNotMatch(outcome, /status 20\d/, outcome);
  const status = await curl(['--cacert', join(dir, 'ca.crt'), '-D', '-', '-o', '/dev/null', `${berth.url}${loc}`]);
  assert.doesNotMatch(ok(status), /^range: 0-[1-9]/im, 'nothing of the cut-off body was kept');
});

test('unreadable or mismatched TLS files are one clear error at start', async (t) => {
  const dir = await pki(t);
  await makeLeaf(dir, 'ca', 'other', 3, 'serverAuth');
  const file = join(dir, 'berth.yaml');
  await writeFile(file, `http:\n  tls:\n    certificate: ${dir}/server.crt\n    key: ${dir}/other.key\n`);
  const r = await run(
    process.execPath,
    [BERTH, 'serve', '--addr', '127.0.0.1:0', '--root', join(dir, 'data'), '--config', file],
    { timeoutMs: 20_000 },
  );
  assert.equal(r.code, 1);
  assert.match(r.stderr, /http\.tls: .*server\.crt and .*other\.key are not a usable certificate and key/);
  await writeFile(file, `http:\n  tls:\n    certificate: ${dir}/missing.crt\n    key: ${dir}/server.key\n`);
  const m = await run(
    process.execPath,
    [BERTH, 'serve', '--addr', '127.0.0.1:0', '--root', join(dir, 'data'), '--config', file],
    { timeoutMs: 20_000 },
  );
  assert.equal(m.code, 1);
  assert.match(m.stderr, /http\.tls\.certificate: cannot read .*missing\.crt: ENOENT/);
});
