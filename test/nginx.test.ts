// berth in token mode behind a real reverse proxy: Debian's nginx terminating TLS (a private CA) with the settings
// README's sample uses, berth trusting it (http.trustedProxies). The token realm names the proxy's scheme and host,
// upload Locations resolve to the proxy, and docker (login, push, pull), skopeo and crane work through it. The
// scripted session's audit log (audit.output) has the events of README's table and no secret.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import bcrypt from 'bcryptjs';
import { startDockerd } from './support/docker.js';
import { findExecutable, freePort, ok, requirePeer, run, stopProcess, TOOLS_BIN } from './support/peers.js';
import { startBerth, type Berth } from './support/berth.js';
import { makeBusyboxLayout } from './support/oci-layouts.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const PW = { alice: 'alice-Secret-91', bob: 'bob-Secret-42' };
const openssl = (args: string[], cwd: string) => run('openssl', args, { cwd }).then(ok);

/** A private CA and a server certificate for 127.0.0.1/localhost, in `dir`. */
async function pki(dir: string): Promise<void> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=berth nginx test CA',
    ].concat(['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']),
    dir,
  );
  await writeFile(
    join(dir, 'server.ext'),
    'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n',
  );
  await openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  await openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '1', '-days', '2'].concat(
      ['-out', 'server.crt', '-extfile', 'server.ext'],
    ),
    dir,
  );
}

/** README's sample nginx configuration (the `server` block), listening on `port` in front of `upstream`. */
function nginxConf(dir: string, port: number, upstream: string): string {
  return `daemon off;
user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${dir}/server.crt;
    ssl_certificate_key ${dir}/server.key;
    # Layers are GiBs: no size limit, and stream both ways instead of spooling to disk.
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location / {
      proxy_pass http://${upstream};
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 900s;
      proxy_send_timeout 900s;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`;
}

async function startNginx(t: TestContext, dir: string, berth: Berth): Promise<{ port: number; url: string }> {
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  await writeFile(conf, nginxConf(dir, port, berth.host));
  const child = spawn('/usr/sbin/nginx', ['-c', conf, '-p', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b) => (err += b));
  t.after(() => stopProcess(child));
  const ca = join(dir, 'ca.crt');
  for (let i = 0; i < 100; i++) {
    const r = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--cacert',
      ca,
      `https://127.0.0.1:${port}/v2/`,
    ]);
    if (r.stdout === '401') return { port, url: `https://127.0.0.1:${port}` };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nginx did not come up: ${err}${await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')}`);
}

function berthConfig(dir: string): string {
  const h = (p: string) => bcrypt.hashSync(p, 6);
  return JSON.stringify({
    http: { trustedProxies: ['127.0.0.1'] },
    log: { level: 'warn', requests: false },
    audit: { enabled: true, output: join(dir, 'audit.jsonl') },
    auth: {
      mode: 'token',
      users: [
        { name: 'alice', passwordHash: h(PW.alice), groups: ['dev'] },
        { name: 'bob', passwordHash: h(PW.bob) },
      ],
      acl: [
        { repositories: ['team/**'], subjects: ['group:dev'], actions: ['pull', 'push', 'delete'] },
        { repositories: ['team/**'], subjects: ['user:bob'], actions: ['pull'] },
      ],
    },
  });
}

test('nginx terminating TLS in front of berth (token mode, trustedProxies): realm, Locations, docker, skopeo, crane, audit', async (t) => {
  if (!requirePeer(t, 'nginx', 'docker', 'skopeo', 'crane', 'busybox')) return;
  const dir = await mkdtemp('/tmp/berth-nginx-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  await pki(dir);
  const configText = berthConfig(dir);
  const berth = await startBerth(t, { config: configText });
  const proxy = await startNginx(t, dir, berth);
  const host = `127.0.0.1:${proxy.port}`;
  const ca = join(dir, 'ca.crt');
  const curl = (args: string[]) => run('curl', ['-sS', '--max-time', '30', '--cacert', ca, ...args]);

  // The challenge names the proxy (https, its port), not berth's own plain-HTTP address.
  const ping = ok(await curl(['-D', '-', '-o', '/dev/null', `${proxy.url}/v2/`]));
  assert.match(ping, new RegExp(`^www-authenticate: Bearer realm="https://${host}/token"`, 'im'), ping);
  // A token through the proxy, then an upload session: its Location resolves to the proxy.
  const token = JSON.parse(
    ok(
      await curl(['-u', `alice:${PW.alice}`, `${proxy.url}/token?service=berth&scope=repository:team/curl:pull,push`]),
    ),
  ).token;
  const post = ok(
    await curl([
      '-X',
      'POST',
      '-H',
      `Authorization: Bearer ${token}`,
      '-D',
      '-',
      '-o',
      '/dev/null',
      `${proxy.url}/v2/team/curl/blobs/uploads/`,
    ]),
  );
  assert.match(post, /^HTTP\/[\d.]+ 202/m, post);
  const location = new URL(/^location: (\S+)/im.exec(post)![1]!, `${proxy.url}/v2/`);
  assert.equal(location.origin, proxy.url, `Location ${location} resolves to the proxy`);

  // docker: login, push, pull through the proxy. (dockerd treats 127.0.0.0/8 as insecure: TLS without
  // verification; skopeo and crane below verify the CA.)
  const img = await makeBusyboxLayout(join(dir, 'layout'));
  const certDir = join(dir, 'certs.d');
  await mkdir(certDir);
  await writeFile(join(certDir, 'ca.crt'), await readFile(ca));
  ok(
    await run('skopeo', [
      'copy',
      '--dest-cert-dir',
      certDir,
      '--dest-creds',
      `alice:${PW.alice}`,
      img.ref,
      `docker://${host}/team/base:v1`,
    ]),
  );
  const engine = await startDockerd({ insecureRegistries: [] });
  t.after(() => engine.stop());
  const bad = await engine.docker(['login', '-u', 'alice', '--password-stdin', host], { input: 'not-the-password' });
  assert.notEqual(bad.code, 0);
  ok(await engine.docker(['login', '-u', 'alice', '--password-stdin', host], { input: PW.alice }));
  ok(await engine.docker(['pull', `${host}/team/base:v1`]));
  ok(await engine.docker(['tag', `${host}/team/base:v1`, `${host}/team/app:v1`]));
  ok(await engine.docker(['push', `${host}/team/app:v1`]));
  // bob may only pull: his push is denied (and audited).
  ok(await engine.docker(['login', '-u', 'bob', '--password-stdin', host], { input: PW.bob }));
  const denied = await engine.docker(['push', `${host}/team/app:v1`]);
  assert.notEqual(denied.code, 0);

  // crane through the proxy, trusting only the CA; it deletes the pushed image as alice.
  const crane = findExecutable('crane') ?? join(TOOLS_BIN, 'crane');
  const cenv = { SSL_CERT_FILE: ca, SSL_CERT_DIR: join(dir, 'nowhere'), DOCKER_CONFIG: join(dir, 'crane') };
  ok(await run(crane, ['auth', 'login', host, '-u', 'alice', '--password-stdin'], { env: cenv, input: PW.alice }));
  const digest = ok(await run(crane, ['digest', `${host}/team/app:v1`], { env: cenv })).trim();
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  ok(await run(crane, ['delete', `${host}/team/app@${digest}`], { env: cenv }));
  // skopeo pulls through it too.
  ok(
    await run('skopeo', [
      'inspect',
      '--cert-dir',
      certDir,
      '--creds',
      `bob:${PW.bob}`,
      `docker://${host}/team/base:v1`,
    ]),
  );

  // A refresh token revoked through the proxy; a robot created and revoked with the CLI.
  const refresh = JSON.parse(
    ok(await curl(['-u', `alice:${PW.alice}`, `${proxy.url}/token?service=berth&offline_token=true&client_id=test`])),
  ).refresh_token as string;
  assert.match(refresh, /^berth_refresh_/);
  assert.equal(
    ok(await curl(['-o', '/dev/null', '-w', '%{http_code}', '-d', `token=${refresh}`, `${proxy.url}/token/revoke`])),
    '200',
  );
  const cfgFile = join(dir, 'berth.yaml');
  await writeFile(cfgFile, configText);
  const robot = JSON.parse(
    ok(
      await run(process.execPath, [
        BERTH,
        'token',
        'create',
        'ci',
        '-c',
        cfgFile,
        '--root',
        berth.root,
        '-r',
        'team/**',
        '-a',
        'pull',
        '--json',
      ]),
    ),
  );
  ok(await run(process.execPath, [BERTH, 'token', 'revoke', 'ci', '-c', cfgFile, '--root', berth.root]));

  await new Promise((r) => setTimeout(r, 500));
  const text = await readFile(join(dir, 'audit.jsonl'), 'utf8');
  const events = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const has = (want: Record<string, unknown>) =>
    assert.ok(
      events.some((e) => Object.entries(want).every(([k, v]) => e[k] === v)),
      `no event ${JSON.stringify(want)} in\n${text}`,
    );
  has({ event: 'login', outcome: 'failure', account: 'alice', address: '127.0.0.1' });
  has({ event: 'login', outcome: 'success', actor: 'alice', method: 'password', address: '127.0.0.1' });
  has({ event: 'token.issued', actor: 'alice', refreshToken: true, clientId: 'docker' });
  has({ event: 'push', actor: 'alice', repository: 'team/app', tag: 'v1', digest });
  has({ event: 'pull', actor: 'alice', repository: 'team/base' });
  has({ event: 'pull', actor: 'bob', repository: 'team/base' });
  has({ event: 'delete', actor: 'alice', repository: 'team/app', digest, object: 'manifest' });
  has({ event: 'access.denied', actor: 'bob', repository: 'team/app', code: 'insufficient_scope' });
  has({ event: 'token.revoked', actor: 'alice' });
  has({ event: 'robot.created', name: 'robot:ci', id: robot.id });
  has({ event: 'robot.revoked', outcome: 'success' });
  for (const e of events) assert.match(e.time, /^\d{4}-\d\d-\d\dT/);
  // Never a secret: no password, no refresh, robot or docker identity token, no JWT.
  const dockerConfig = await readFile(join(engine.dir, 'config', 'config.json'), 'utf8').catch(() => '');
  const identity = [...dockerConfig.matchAll(/"identitytoken":\s*"([^"]+)"/g)].map((m) => m[1]!);
  for (const secret of [PW.alice, PW.bob, 'not-the-password', refresh, robot.token, token, ...identity])
    assert.ok(!text.includes(secret), `a secret in the audit log: ${secret.slice(0, 12)}…`);
  assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{10,}/, 'no JWT');
  assert.doesNotMatch(text, /berth_(robot|refresh)_/);
});

test('the web UI through nginx (TLS at the proxy): login from the public origin, a Secure __Host- cookie, CSRF-checked delete', async (t) => {
  if (!requirePeer(t, 'nginx')) return;
  const dir = await mkdtemp('/tmp/berth-nginx-ui-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  await pki(dir);
  const berth = await startBerth(t, { config: berthConfig(dir) });
  const proxy = await startNginx(t, dir, berth);
  const ca = join(dir, 'ca.crt');
  const curl = (args: string[]) => run('curl', ['-sS', '--max-time', '30', '--cacert', ca, ...args]);
  // An image for alice to delete, pushed through the proxy with a token.
  const token = JSON.parse(
    ok(await curl(['-u', `alice:${PW.alice}`, `${proxy.url}/token?service=berth&scope=repository:team/ui:pull,push`])),
  ).token as string;
  const auth = ['-H', `Authorization: Bearer ${token}`];
  const config = '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}';
  const configDigest = `sha256:${(await import('node:crypto')).createHash('sha256').update(config).digest('hex')}`;
  ok(
    await curl([
      ...auth,
      '-X',
      'POST',
      '--data-binary',
      config,
      '-H',
      'Content-Type: application/octet-stream',
      `${proxy.url}/v2/team/ui/blobs/uploads/?digest=${configDigest}`,
    ]),
  );
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [],
  });
  const put = ok(
    await curl([
      ...auth,
      '-X',
      'PUT',
      '--data-binary',
      manifest,
      '-H',
      'Content-Type: application/vnd.oci.image.manifest.v1+json',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `${proxy.url}/v2/team/ui/manifests/v1`,
    ]),
  );
  assert.equal(put, '201');

  // The browser's login form: POST with the Origin of the page, i.e. the proxy's https origin.
  const jar = join(dir, 'cookies');
  const login = ok(
    await curl([
      '-D',
      '-',
      '-o',
      '/dev/null',
      '-c',
      jar,
      '-H',
      `Origin: ${proxy.url}`,
      '-H',
      'Sec-Fetch-Site: same-origin',
      '--data-urlencode',
      'username=alice',
      '--data-urlencode',
      `password=${PW.alice}`,
      '--data-urlencode',
      'next=/ui/',
      `${proxy.url}/ui/login`,
    ]),
  );
  assert.match(login, /^HTTP\/[\d.]+ 303/m, login);
  const cookie = /^set-cookie: (.*)$/im.exec(login)?.[1] ?? '';
  assert.match(cookie, /^__Host-berth_session=/, 'the __Host- name: the browser talks https to the proxy');
  assert.match(cookie, /; Secure/);
  assert.match(cookie, /; HttpOnly/);
  assert.match(cookie, /; SameSite=Strict/);
  // The page carries the CSRF token; a delete from the public origin with it works, one without it does not.
  const page = ok(await curl(['-b', jar, `${proxy.url}/ui/repo/team/ui`]));
  const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1];
  assert.ok(csrf, 'the page has the CSRF token');
  const del = (fields: string[], origin = proxy.url) =>
    curl([
      '-b',
      jar,
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      `Origin: ${origin}`,
      ...fields.flatMap((f) => ['--data-urlencode', f]),
      `${proxy.url}/ui/delete`,
    ]).then(ok);
  assert.equal(await del(['repo=team/ui', 'ref=v1', 'csrf=wrong']), '403');
  assert.equal(await del(['repo=team/ui', 'ref=v1', `csrf=${csrf}`], 'https://evil.example'), '403');
  assert.equal(await del(['repo=team/ui', 'ref=v1', `csrf=${csrf}`]), '303');
  const tags = ok(
    await curl([...auth, '-o', '/dev/null', '-w', '%{http_code}', `${proxy.url}/v2/team/ui/manifests/v1`]),
  );
  assert.equal(tags, '404', 'the tag is gone');
});
