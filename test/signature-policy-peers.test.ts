// The signature policy with real clients (issue 20): `berth serve` with htpasswd auth and an enforce policy on
// prod/**. cosign signs an image there (as a user with push: it reads the image by digest, which the policy lets
// pushers do) and `cosign verify` passes; cosign v3 signs another (a sigstore bundle referrer), notation a third
// (a JWS referrer; the policy also trusts notation's certificate). The docker engine and containerd pull the signed
// images, and fail on an unsigned one and on one signed with another key, with the
// policy's name in what they print.
// In process (every rule, every format): test/signature-policy.test.ts.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBerth } from './support/berth.js';
import { user } from './support/auth-fixtures.js';
import { berth } from './support/builder-fixtures.js';
import { startContainerd, startDockerd } from './support/docker.js';
import { makeBusyboxLayout } from './support/oci-layouts.js';
import { findExecutable, ok, requirePeer, run, type RunResult } from './support/peers.js';

test('signature policy, enforce: cosign signs there; docker and containerd pull only signed images', async (t) => {
  if (!requirePeer(t, 'cosign', 'cosign3', 'notation', 'docker', 'containerd', 'busybox')) return;
  const home = await mkdtemp('/tmp/berth-sigpeers-');
  t.after(() => rm(home, { recursive: true, force: true }));
  const env = {
    HOME: home,
    DOCKER_CONFIG: join(home, '.docker'),
    TUF_ROOT: join(home, '.sigstore'),
    XDG_CONFIG_HOME: join(home, '.config'),
    COSIGN_PASSWORD: '',
  };
  const cosign = (args: string[]) => run(findExecutable('cosign')!, args, { env, cwd: home });
  ok(await cosign(['generate-key-pair']));
  await mkdir(join(home, 'other'));
  ok(await run(findExecutable('cosign')!, ['generate-key-pair'], { env, cwd: join(home, 'other') }));
  // notation's own test key and self-signed certificate: the policy trusts that certificate as well.
  const notation = (args: string[]) => run(findExecutable('notation')!, args, { env, cwd: home });
  ok(await notation(['cert', 'generate-test', '--default', 'policy-peer']));
  const notationCert = join(home, '.config', 'notation', 'localkeys', 'policy-peer.crt');

  const config = JSON.stringify({
    auth: {
      mode: 'htpasswd',
      users: [user('alice'), user('bob')],
      acl: [
        { repositories: ['**'], subjects: ['user:alice'], actions: ['pull', 'push'] },
        { repositories: ['**'], subjects: ['user:bob'], actions: ['pull'] },
      ],
    },
    signatures: {
      policies: [
        {
          name: 'prod-signed',
          repositories: ['prod/**'],
          mode: 'enforce',
          keys: [join(home, 'cosign.pub')],
          certificates: [notationCert],
        },
      ],
    },
  });
  const reg = await startBerth(t, { config });
  // alice (push) for berth and cosign, through docker's config file.
  const auth = Buffer.from('alice:alice-pw').toString('base64');
  await mkdir(join(home, '.docker'), { recursive: true });
  await writeFile(join(home, '.docker', 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth } } }));

  const push = async (tag: string) => {
    const dir = join(home, `layout-${tag}`);
    const img = await makeBusyboxLayout(dir, { tag, files: { '/etc/variant': `${tag} ${Date.now()}` } });
    ok(await berth(['copy', img.ref, `${reg.host}/prod/app:${tag}`], { env }));
    return img.manifest.digest;
  };
  const signed = await push('signed');
  const unsigned = await push('unsigned');
  const otherKey = await push('otherkey');
  const bundle = await push('bundle');
  const notary = await push('notation');

  await t.test('cosign signs by digest in the enforced repository and verifies', async () => {
    const sign = (digest: string, key: string) =>
      cosign([
        'sign',
        '--yes',
        '--key',
        key,
        '--tlog-upload=false',
        '--allow-insecure-registry',
        `${reg.host}/prod/app@${digest}`,
      ]);
    let r = await sign(signed, join(home, 'cosign.key'));
    assert.equal(r.code, 0, r.stderr);
    r = await sign(otherKey, join(home, 'other', 'cosign.key'));
    assert.equal(r.code, 0, r.stderr);
    // cosign v3: a sigstore bundle as an OCI 1.1 referrer (its default), offline.
    r = await run(
      findExecutable('cosign3')!,
      [
        'sign',
        '--yes',
        '--key',
        join(home, 'cosign.key'),
        '--tlog-upload=false',
        '--use-signing-config=false',
        '--allow-insecure-registry',
        `${reg.host}/prod/app@${bundle}`,
      ],
      { env, cwd: home },
    );
    assert.equal(r.code, 0, r.stderr);
    const verify = await cosign([
      'verify',
      '--key',
      join(home, 'cosign.pub'),
      '--insecure-ignore-tlog',
      '--allow-insecure-registry',
      `${reg.host}/prod/app@${signed}`,
    ]);
    assert.equal(verify.code, 0, verify.stderr);
    // notation signs there too (a JWS referrer), as alice: it reads the image by digest and pushes the referrer.
    r = await notation([
      'sign',
      '--insecure-registry',
      '-u',
      'alice',
      '-p',
      'alice-pw',
      `${reg.host}/prod/app@${notary}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
  });

  const refused = (r: RunResult, what: string) => {
    assert.notEqual(r.code, 0, `${what} must fail:\n${r.stdout}`);
    assert.match(r.stderr + r.stdout, /signature policy/, `${what}: the policy is named:\n${r.stderr}`);
  };

  await t.test('docker pulls the signed image; the unsigned and the wrongly signed ones are refused', async () => {
    const d = await startDockerd({ insecureRegistries: [reg.host] });
    t.after(() => d.stop());
    ok(await d.docker(['login', '-u', 'bob', '--password-stdin', reg.host], { input: 'bob-pw' }));
    ok(await d.docker(['pull', `${reg.host}/prod/app:signed`]));
    ok(await d.docker(['pull', `${reg.host}/prod/app:bundle`]));
    ok(await d.docker(['pull', `${reg.host}/prod/app:notation`]));
    const run_ = await d.docker(['run', '--rm', '--network', 'none', `${reg.host}/prod/app:signed`]);
    assert.match(run_.stdout, /hello-from-berth/);
    refused(await d.docker(['pull', `${reg.host}/prod/app:unsigned`]), 'docker pull of an unsigned image');
    refused(await d.docker(['pull', `${reg.host}/prod/app:otherkey`]), 'docker pull of a wrongly signed image');
    refused(await d.docker(['pull', `${reg.host}/prod/app@${unsigned}`]), 'docker pull by digest');
  });

  await t.test('containerd pulls the signed image; the unsigned one is refused', async () => {
    const c = await startContainerd();
    t.after(() => c.stop());
    const pull = (ref: string) => c.ctr(['images', 'pull', '--plain-http', '--user', 'bob:bob-pw', ref]);
    ok(await pull(`${reg.host}/prod/app:signed`));
    refused(await pull(`${reg.host}/prod/app:unsigned`), 'ctr pull of an unsigned image');
    refused(await pull(`${reg.host}/prod/app@${unsigned}`), 'ctr pull by digest');
  });
});
