// Real clients log in to `berth serve` in token mode and push/pull: docker (login, push, pull, run — the refresh
// token docker keeps is used on the way), containerd's ctr --user, skopeo --creds, crane auth login, oras login,
// regctl registry login; and the OCI conformance suite with OCI_USERNAME/OCI_PASSWORD.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import bcrypt from 'bcryptjs';
import { makeClients } from './support/clients.js';
import { startContainerd, startDockerd } from './support/docker.js';
import { makeBusyboxLayout } from './support/oci-layouts.js';
import { ok, requirePeer, run, TOOLS_BIN } from './support/peers.js';
import { startBerth } from './support/berth.js';

const PW = { alice: 'alice-secret', bob: 'bob-secret', conf: 'conformance-secret' };

function config(): string {
  const h = (p: string) => bcrypt.hashSync(p, 8);
  return JSON.stringify({
    auth: {
      mode: 'token',
      users: [
        { name: 'alice', passwordHash: h(PW.alice), groups: ['dev'] },
        { name: 'bob', passwordHash: h(PW.bob) },
        { name: 'conf', passwordHash: h(PW.conf) },
      ],
      acl: [
        { repositories: ['team/**'], subjects: ['group:dev'], actions: ['pull', 'push', 'delete', 'catalog'] },
        { repositories: ['public/**'], subjects: ['group:dev'], actions: ['pull', 'push'] },
        { repositories: ['public/**'], subjects: ['*'], actions: ['pull'] },
        { repositories: ['myorg/**'], subjects: ['user:conf'], actions: ['*'] },
      ],
    },
  });
}

async function workDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp('/tmp/berth-auth-clients-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('real clients with token auth against berth serve', async (t) => {
  if (!requirePeer(t, 'skopeo', 'busybox')) return;
  const berth = await startBerth(t, { config: config() });
  const clients = await makeClients(t);
  const dir = await workDir(t);
  const image = await makeBusyboxLayout(join(dir, 'busybox'), { tag: 'v1' });
  const ref = `${berth.host}/team/busybox:v1`;

  await t.test('skopeo --creds: push, anonymous refused, wrong user refused, public pull anonymous', async () => {
    const denied = await clients.skopeo(['copy', image.ref, `docker://${ref}`, '--dest-tls-verify=false']);
    assert.notEqual(denied.code, 0, 'anonymous push');
    const bob = await clients.skopeo([
      'copy',
      image.ref,
      `docker://${ref}`,
      '--dest-tls-verify=false',
      '--dest-creds',
      `bob:${PW.bob}`,
    ]);
    assert.notEqual(bob.code, 0, 'bob may not push to team/**');
    ok(
      await clients.skopeo([
        'copy',
        image.ref,
        `docker://${ref}`,
        '--dest-tls-verify=false',
        '--dest-creds',
        `alice:${PW.alice}`,
      ]),
    );
    ok(
      await clients.skopeo([
        'copy',
        image.ref,
        `docker://${berth.host}/public/busybox:v1`,
        '--dest-tls-verify=false',
        '--dest-creds',
        `alice:${PW.alice}`,
      ]),
    );
    const digest = ok(
      await clients.skopeo([
        'inspect',
        '--format',
        '{{.Digest}}',
        '--tls-verify=false',
        `docker://${berth.host}/public/busybox:v1`,
      ]),
    ).trim();
    assert.equal(digest, image.manifest.digest, 'anonymous pull of public/**');
    const anonTeam = await clients.skopeo(['inspect', '--tls-verify=false', `docker://${ref}`]);
    assert.notEqual(anonTeam.code, 0);
    assert.match(anonTeam.stderr, /unauthorized|authentication required/i);
  });

  await t.test('docker: login, push, pull, run (refresh token kept and used)', async (t) => {
    if (!requirePeer(t, 'docker')) return;
    const engine = await startDockerd({ insecureRegistries: [berth.host] });
    t.after(engine.stop);
    const bad = await engine.docker(['login', berth.host, '-u', 'alice', '--password-stdin'], { input: 'wrong' });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /unauthorized|incorrect/i);
    ok(await engine.docker(['login', berth.host, '-u', 'alice', '--password-stdin'], { input: PW.alice }));
    const cfg = JSON.parse(await readFile(join(engine.dir, 'config', 'config.json'), 'utf8'));
    // docker asked for offline_token=true and keeps the refresh token instead of the password.
    assert.ok(cfg.auths[berth.host]?.identitytoken?.startsWith('berth_refresh_'), JSON.stringify(cfg));
    ok(await engine.docker(['pull', ref]));
    assert.equal(ok(await engine.docker(['run', '--rm', '--network', 'none', ref])).trim(), 'hello-from-berth');
    const pushed = `${berth.host}/team/by-docker:v2`;
    ok(await engine.docker(['tag', ref, pushed]));
    ok(await engine.docker(['push', pushed]));
    ok(await engine.docker(['rmi', pushed, ref]));
    ok(await engine.docker(['pull', pushed]));
    ok(await engine.docker(['tag', pushed, `${berth.host}/elsewhere/x:v1`]));
    const denied = await engine.docker(['push', `${berth.host}/elsewhere/x:v1`]);
    assert.notEqual(denied.code, 0, 'push outside the ACL');
    ok(await engine.docker(['logout', berth.host]));
    const anon = await engine.docker(['pull', `${berth.host}/team/by-docker:v2`]);
    assert.notEqual(anon.code, 0, 'after logout');
  });

  await t.test('containerd: ctr pull/push with --user', async (t) => {
    if (!requirePeer(t, 'containerd')) return;
    const containerd = await startContainerd();
    t.after(containerd.stop);
    const denied = await containerd.ctr(['images', 'pull', '--plain-http', ref]);
    assert.notEqual(denied.code, 0);
    ok(await containerd.ctr(['images', 'pull', '--plain-http', '--user', `alice:${PW.alice}`, ref]));
    const pushed = `${berth.host}/team/by-ctr:v1`;
    ok(await containerd.ctr(['images', 'tag', ref, pushed]));
    ok(await containerd.ctr(['images', 'push', '--plain-http', '--user', `alice:${PW.alice}`, pushed]));
    const wrong = await containerd.ctr(['images', 'push', '--plain-http', '--user', `bob:${PW.bob}`, pushed]);
    assert.notEqual(wrong.code, 0);
  });

  await t.test('crane auth login: copy, ls, catalog (filtered), delete', async (t) => {
    if (!requirePeer(t, 'crane')) return;
    ok(await clients.crane(['auth', 'login', berth.host, '-u', 'alice', '-p', PW.alice]));
    ok(await clients.crane(['copy', '--insecure', ref, `${berth.host}/team/crane:c1`]));
    assert.deepEqual(
      ok(await clients.crane(['ls', '--insecure', `${berth.host}/team/crane`]))
        .trim()
        .split('\n'),
      ['c1'],
    );
    const catalog = ok(await clients.crane(['catalog', '--insecure', berth.host]))
      .trim()
      .split('\n');
    assert.ok(catalog.includes('team/crane') && catalog.includes('public/busybox'), catalog.join(','));
    assert.ok(!catalog.some((r) => r.startsWith('myorg/')), 'only what alice may pull');
    ok(await clients.crane(['delete', '--insecure', `${berth.host}/team/crane@${image.manifest.digest}`]));
  });

  await t.test('oras login: push and pull an artifact', async (t) => {
    if (!requirePeer(t, 'oras')) return;
    ok(
      await clients.oras(['login', '--plain-http', '-u', 'alice', '--password-stdin', berth.host], { input: PW.alice }),
    );
    await writeFile(join(dir, 'a.txt'), 'artifact\n');
    ok(
      await clients.oras(['push', '--plain-http', `${berth.host}/team/artifact:v1`, 'a.txt:text/plain'], { cwd: dir }),
    );
    ok(await clients.oras(['pull', '--plain-http', '-o', join(dir, 'out'), `${berth.host}/team/artifact:v1`]));
    assert.equal(await readFile(join(dir, 'out', 'a.txt'), 'utf8'), 'artifact\n');
  });

  await t.test('regctl registry login: image copy, tag ls', async (t) => {
    if (!requirePeer(t, 'regctl')) return;
    ok(await clients.regctl(['registry', 'set', '--tls', 'disabled', berth.host]));
    ok(await clients.regctl(['registry', 'login', berth.host, '-u', 'alice', '--pass-stdin'], { input: PW.alice }));
    ok(await clients.regctl(['image', 'copy', ref, `${berth.host}/team/regctl:r1`]));
    assert.equal(ok(await clients.regctl(['tag', 'ls', `${berth.host}/team/regctl`])).trim(), 'r1');
  });

  for (const [label, level] of [
    ['default level', {}],
    ['1.1+dev', { OCI_VERSION: '1.1+dev' }],
  ] as const) {
    await t.test(`OCI conformance suite (${label}) with OCI_USERNAME/OCI_PASSWORD: zero failures`, async (t) => {
      if (!requirePeer(t, 'conformance.test')) return;
      const cwd = await workDir(t);
      const result = await run(join(TOOLS_BIN, 'conformance.test'), [], {
        cwd,
        timeoutMs: 600_000,
        env: {
          OCI_ROOT_URL: berth.url,
          OCI_NAMESPACE: 'myorg/myrepo',
          OCI_CROSSMOUNT_NAMESPACE: 'myorg/other',
          OCI_USERNAME: 'conf',
          OCI_PASSWORD: PW.conf,
          OCI_TEST_PULL: '1',
          OCI_TEST_PUSH: '1',
          OCI_TEST_CONTENT_DISCOVERY: '1',
          OCI_TEST_CONTENT_MANAGEMENT: '1',
          ...level,
        },
      });
      const output = result.stdout + result.stderr;
      const failures = output.split('\n').filter((l) => l.includes('failed test') || /:\s+Fail\s*$/.test(l));
      assert.deepEqual(failures, [], output.slice(-3000));
      assert.equal(result.code, 0, output.slice(-3000));
      assert.match(output, /OCI Conformance Test: Pass/, output.slice(-3000));
    });
  }
});
