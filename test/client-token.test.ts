// The transfer verbs against `berth serve` in token mode (berth as its own Docker token service): berth login,
// then push / pull / copy (a cross-repo mount needs pull on the source and push on the target in one token),
// a user the ACL does not allow, anonymous pulls of a public namespace, and logout.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import bcrypt from 'bcryptjs';
import { startBerth, type Berth } from './support/berth.js';
import { makeMultiArchLayout } from './support/oci-layouts.js';
import { run, type RunResult } from './support/peers.js';

const BIN = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

function config(): string {
  const hash = (p: string) => JSON.stringify(bcrypt.hashSync(p, 8));
  return `
auth:
  mode: token
  users:
    - { name: alice, passwordHash: ${hash('wonderland')}, groups: [dev] }
    - { name: bob, passwordHash: ${hash('builder')} }
  token: { realm: /token, service: berth-test, issuer: berth-test }
  acl:
    - { repositories: ["team/**"], subjects: ["group:dev"], actions: [pull, push, delete] }
    - { repositories: ["public/**"], subjects: [anonymous, "user:bob"], actions: [pull] }
    - { repositories: ["public/**"], subjects: ["group:dev"], actions: [pull, push] }
`;
}

/** Starts berth in token mode and checks that it challenges for a Bearer token. */
async function startTokenBerth(t: TestContext): Promise<Berth> {
  const srv = await startBerth(t, { config: config() });
  t.after(() => srv.stop());
  const res = await fetch(`${srv.url}/v2/`);
  assert.equal(res.status, 401);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="[^"]+",service="berth-test"/i);
  return srv;
}

test('token auth: berth login, then push / pull / copy (mount) against berth serve; ACL denials and logout', async (t) => {
  const srv = await startTokenBerth(t);
  const work = await mkdtemp('/tmp/berth-token-');
  t.after(() => rm(work, { recursive: true, force: true }));
  const env = {
    CI: 'true',
    DOCKER_CONFIG: join(work, 'docker'),
    REGISTRY_AUTH_FILE: undefined,
    XDG_RUNTIME_DIR: undefined,
  };
  const berth = (args: string[], input?: string): Promise<RunResult> =>
    run(process.execPath, [BIN, ...args], { env, input, timeoutMs: 120_000 });
  const ok = async (args: string[], input?: string) => {
    const r = await berth(args, input);
    assert.equal(r.code, 0, `${r.command}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  /** Exit `code` (README "Exit codes") with one line on stderr matching `re`. */
  const fails = async (code: number, args: string[], re: RegExp) => {
    const r = await berth(args);
    assert.equal(r.code, code, `${r.command} should fail with exit ${code}\n${r.stdout}${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, re);
    return r.stderr.trim();
  };
  const li = await makeMultiArchLayout(join(work, 'layout'), { tag: 'v1' });

  // Nothing stored yet: a push names berth login.
  await fails(5, ['push', `${li.dir}:v1`, `${srv.host}/team/app:v1`], /berth login/);
  await fails(2, ['login', srv.host, '-u', 'alice', '--password-stdin'], /missing password/);
  const badLogin = await berth(['login', srv.host, '-u', 'alice', '--password-stdin'], 'not-her-password\n');
  assert.equal(badLogin.code, 5);
  assert.match(badLogin.stderr, /rejected username "alice"/);

  await ok(['login', srv.host, '-u', 'alice', '--password-stdin'], 'wonderland\n');
  const pushed = JSON.parse(await ok(['push', '--json', `${li.dir}:v1`, `${srv.host}/team/app:v1`]));
  assert.equal(pushed.digest, li.index.digest);
  const pulled = JSON.parse(
    await ok(['pull', '--json', `${srv.host}/team/app:v1`, '--oci-layout', join(work, 'pulled')]),
  );
  assert.equal(pulled.digest, li.index.digest);
  // Same registry, another repository: mounted (pull on team/app and push on team/copy in one token).
  const copied = JSON.parse(await ok(['copy', '--json', `${srv.host}/team/app:v1`, `${srv.host}/team/copy:v1`]));
  assert.equal(copied.digest, li.index.digest);
  assert.equal(copied.blobs.uploaded, 0, JSON.stringify(copied.blobs));
  assert.ok(copied.blobs.mounted >= 1, JSON.stringify(copied.blobs));
  await ok(['copy', `${srv.host}/team/app:v1`, `${srv.host}/public/app:v1`]);
  assert.equal((await ok(['digest', `${srv.host}/team/copy:v1`])).trim(), li.index.digest);
  assert.deepEqual(JSON.parse(await ok(['tags', '--json', `${srv.host}/team/app`])).tags, ['v1']);

  // bob may pull public/** only; a push elsewhere fails with a one-line message, not a stack.
  await ok(['logout', srv.host]);
  await ok(['login', srv.host, '-u', 'bob', '--password-stdin'], 'builder\n');
  assert.equal((await ok(['digest', `${srv.host}/public/app:v1`])).trim(), li.index.digest);
  // Logged in but refused: the message says so instead of suggesting a login.
  await fails(
    5,
    ['push', `${li.dir}:v1`, `${srv.host}/team/bob:v1`],
    /user "bob" is not allowed to .*team\/bob.*ask the registry's admin/,
  );
  await fails(
    5,
    ['pull', `${srv.host}/team/app:v1`, '--oci-layout', join(work, 'bob')],
    /user "bob" is not allowed to pull team\/app/,
  );

  // Anonymous: public pulls work, team/** does not.
  await ok(['logout', srv.host]);
  assert.equal((await ok(['digest', `${srv.host}/public/app:v1`])).trim(), li.index.digest);
  await fails(5, ['digest', `${srv.host}/team/app:v1`], /berth login|401|403/);
});
