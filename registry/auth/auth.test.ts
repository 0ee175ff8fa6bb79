// Unit checks of the auth building blocks: scope parsing, ACL evaluation, the login limiter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseScope, requiredAccess, ScopeError } from './scope.js';
import { compileAcl, AclConfigError, type Identity } from './acl.js';
import { LoginLimiter, addressKey } from './ratelimit.js';

test('scopes: host:port names, classes, wildcards, .. and uppercase rejected', () => {
  assert.deepEqual(parseScope('repository:team/app:pull,push'), {
    type: 'repository',
    name: 'team/app',
    actions: ['pull', 'push'],
  });
  assert.deepEqual(parseScope('repository(plugin):a:pull'), { type: 'repository', name: 'a', actions: ['pull'] });
  assert.deepEqual(parseScope('repository:a:*').actions, ['pull', 'push', 'delete']);
  assert.deepEqual(parseScope('registry:catalog:*'), { type: 'registry', name: 'catalog', actions: ['*'] });
  for (const bad of [
    'repository:team/*:pull',
    'repository:*:pull',
    'repository:team/../x:pull',
    'repository:Team/App:pull',
    'repository:127.0.0.1:5000/a:pull',
    'repository:a:fly',
    'repository:a:',
    'registry:catalog:pull',
    'thing:a:pull',
    'a',
    'repository:a',
  ]) {
    assert.throws(() => parseScope(bad), ScopeError, bad);
  }
});

test('required access per request', () => {
  assert.equal(requiredAccess({ route: 'base' }, 'GET'), undefined);
  assert.deepEqual(requiredAccess({ route: 'manifest', name: 'a', reference: 't' }, 'HEAD')?.actions, ['pull']);
  assert.deepEqual(requiredAccess({ route: 'manifest', name: 'a', reference: 't' }, 'PUT')?.actions, ['pull', 'push']);
  assert.deepEqual(requiredAccess({ route: 'blob', name: 'a', reference: 'd' }, 'DELETE')?.actions, ['delete']);
  assert.deepEqual(requiredAccess({ route: 'upload', name: 'a', reference: 'x' }, 'DELETE')?.actions, ['pull', 'push']);
  assert.deepEqual(requiredAccess({ route: 'catalog' }, 'GET'), { type: 'registry', name: 'catalog', actions: ['*'] });
});

test('ACL: first match decides, default deny, templates, robot limits', () => {
  const acl = compileAcl([
    { repositories: ['team-a/secret/**'], subjects: ['group:dev'], actions: [] },
    { repositories: ['team-a/**'], subjects: ['group:dev', 'user:ci-bot'], actions: ['pull', 'push', 'delete'] },
    { repositories: ['public/*'], subjects: ['*'], actions: ['pull'] },
    {
      repositories: ['ci/${claim.repository}/**'],
      subjects: ['claim:repository_owner=myorg'],
      actions: ['pull', 'push'],
    },
    { repositories: ['home/${name}/**'], subjects: ['authenticated'], actions: ['*'] },
    { repositories: ['**'], subjects: ['robot:*'], actions: ['pull', 'push'] },
  ]);
  const dev: Identity = { kind: 'user', name: 'alice', groups: ['dev'] };
  const anon: Identity = { kind: 'anonymous', name: 'anonymous', groups: [] };
  assert.deepEqual([...acl.allowed(dev, 'team-a/app')], ['pull', 'push', 'delete']);
  assert.deepEqual([...acl.allowed(dev, 'team-a/secret/x')], []);
  assert.deepEqual([...acl.allowed(anon, 'public/x')], ['pull']);
  assert.deepEqual([...acl.allowed(anon, 'public/x/y')], []);
  assert.deepEqual([...acl.allowed(anon, 'team-a/app')], []);
  assert.deepEqual([...acl.allowed(dev, 'home/alice/x')], ['pull', 'push', 'delete']);
  assert.deepEqual([...acl.allowed(dev, 'home/bob/x')], []);
  const ci: Identity = {
    kind: 'oidc',
    name: 'x',
    provider: 'gh',
    groups: [],
    claims: { repository: 'MyOrg/App', repository_owner: 'myorg' },
  };
  assert.deepEqual([...acl.allowed(ci, 'ci/myorg/app/img')], ['pull', 'push']);
  assert.deepEqual([...acl.allowed(ci, 'ci/myorg/other')], []);
  // A claim that is not a plain path never widens a pattern.
  const sneaky: Identity = { ...ci, claims: { repository: '**', repository_owner: 'myorg' } };
  assert.deepEqual([...acl.allowed(sneaky, 'ci/x/y')], []);
  const robot: Identity = {
    kind: 'robot',
    name: 'r',
    groups: [],
    limits: [{ repositories: ['team-b/**'], actions: ['pull'] }],
  };
  assert.deepEqual([...acl.allowed(robot, 'team-b/x')], ['pull']);
  assert.deepEqual([...acl.allowed(robot, 'team-c/x')], []);
  assert.equal(acl.mayCatalog(dev), true); // the `*` rule on home/${name} includes catalog
  assert.equal(acl.mayCatalog(anon), false);
  assert.throws(() => compileAcl([{ repositories: ['a'], subjects: ['team:x'], actions: ['pull'] }]), AclConfigError);
});

test('login limiter: per account and address, per address, per account; never a lockout from elsewhere', () => {
  const l = new LoginLimiter({ maxFailures: 3, maxFailuresPerAddress: 5, maxFailuresPerAccount: 6, windowMs: 60_000 });
  const t0 = 1_000_000;
  for (let i = 0; i < 3; i++) l.fail('alice', '10.0.0.1', t0 + i);
  assert.ok(l.retryAfter('alice', '10.0.0.1', t0 + 10) > 0, 'the guessing address is throttled for the account');
  assert.equal(l.retryAfter('alice', '10.0.0.9', t0 + 10), 0, 'the owner elsewhere is not locked out');
  assert.equal(l.retryAfter('bob', '10.0.0.9', t0 + 10), 0);
  for (let i = 0; i < 2; i++) l.fail(`u${i}`, '10.0.0.1', t0 + 5);
  assert.ok(l.retryAfter('carol', '10.0.0.1', t0 + 10) > 0, 'address throttled for every account');
  assert.equal(l.retryAfter('alice', '10.0.0.1', t0 + 61_000), 0, 'failures age out');
  // A distributed guesser: 6 failures for dave from 3 addresses put the account under attack; then each address
  // that failed for it waits, one that did not (the owner's) still gets its attempt.
  for (const a of ['10.1.0.1', '10.1.0.2', '10.1.0.3']) for (let i = 0; i < 2; i++) l.fail('dave', a, t0);
  assert.ok(l.retryAfter('dave', '10.1.0.1', t0 + 10) > 0, 'a failing address gets no more guesses');
  assert.equal(l.retryAfter('dave', '10.9.9.9', t0 + 10), 0, 'a clean address still logs in');
  l.fail('dave', '10.9.9.9', t0 + 11);
  assert.ok(l.retryAfter('dave', '10.9.9.9', t0 + 12) > 0, 'one guess per new address while under attack');
  // A success clears only its own account-and-address count.
  l.succeed('alice', '10.0.0.1');
  assert.ok(l.retryAfter('carol', '10.0.0.1', t0 + 10) > 0, 'a valid login does not reset the address');
});

test('login limiter: addresses are compared as networks (IPv4-mapped, IPv6 /64)', () => {
  assert.equal(addressKey('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(addressKey('10.0.0.1'), '10.0.0.1');
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
  assert.equal(addressKey(undefined), 'unknown');
  const l = new LoginLimiter({
    maxFailures: 2,
    maxFailuresPerAddress: 50,
    maxFailuresPerAccount: 50,
    windowMs: 60_000,
  });
  l.fail('alice', '2001:db8:1:2::a');
  l.fail('alice', '2001:db8:1:2::b');
  assert.ok(l.retryAfter('alice', '2001:db8:1:2::c') > 0, 'one /64 is one caller');
  assert.equal(l.retryAfter('alice', '2001:db8:1:3::c'), 0);
});

test('config: strict auth schema, errors name the problem', async () => {
  const { loadConfig, ConfigError } = await import('../config.js');
  const load = (auth: unknown) => loadConfig({ env: {}, flags: { auth } });
  assert.throws(
    () => load({ mode: 'token', tokn: {} }),
    (e: Error) => e instanceof ConfigError && /tokn/.test(e.message),
  );
  assert.throws(
    () => load({ mode: 'token', token: { trust: [{ issuer: 'x' }] } }),
    ConfigError,
    'a trusted issuer needs jwksUrl or pem',
  );
  assert.throws(() => load({ mode: 'token', token: { algorithm: 'HS256' } }), ConfigError);
  assert.throws(() => load({ mode: 'token', users: [{ name: 'a', passwordHash: 'plain' }] }), ConfigError);
  assert.throws(
    () => load({ mode: 'token', acl: [{ repositories: ['a'], subjects: ['x'], actions: ['fly'] }] }),
    ConfigError,
  );
  assert.equal(
    load({
      mode: 'token',
      token: { ttl: '10m' },
      acl: [{ repositories: ['a/**'], subjects: ['anonymous'], actions: ['pull'] }],
    }).auth.token?.ttl,
    '10m',
  );
  const env = loadConfig({ env: { BERTH_AUTH_MODE: 'token', BERTH_AUTH_TOKEN_SERVICE: 'reg' } });
  assert.equal(env.auth.mode, 'token');
  assert.equal(env.auth.token?.service, 'reg');
});

test('htpasswd file: bcrypt lines accepted, others skipped with a warning, reloaded on change', async (t) => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const bcrypt = (await import('bcryptjs')).default;
  const { Users } = await import('./users.js');
  const dir = await mkdtemp('/tmp/berth-htpasswd-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = `${dir}/htpasswd`;
  await writeFile(
    file,
    `alice:${bcrypt.hashSync('pw', 4).replace('$2b$', '$2y$')}\nbob:$apr1$abc$defghijklmnopqrstuvwx.\n`,
  );
  const warnings: string[] = [];
  const users = new Users(
    { mode: 'htpasswd', htpasswd: { path: file }, users: [{ name: 'alice', groups: ['dev'] }] },
    (w) => warnings.push(w),
  );
  assert.deepEqual(await users.check('alice', 'pw'), { name: 'alice', groups: ['dev'] });
  assert.equal(await users.check('alice', 'nope'), undefined);
  assert.equal(await users.check('bob', 'x'), undefined);
  assert.match(warnings.join('\n'), /htpasswd:2: skipped: only bcrypt/);
  assert.throws(() => new Users({ mode: 'htpasswd', htpasswd: { path: `${dir}/missing` } }), /htpasswd -B -c/);
});

test('config: http.publicUrl must be an http(s) URL that can sit in a quoted header value', async () => {
  const { loadConfig, ConfigError } = await import('../config.js');
  const load = (publicUrl: string) => loadConfig({ env: {}, flags: { http: { publicUrl } } });
  assert.equal(load('https://registry.example.com/').http.publicUrl, 'https://registry.example.com/');
  for (const bad of ['registry.example.com', 'https://x", realm="https://evil', 'https://a b', 'https://x?y'])
    assert.throws(() => load(bad), ConfigError, bad);
});

test('realm: a Host header is used only when it names the listener', async () => {
  const { hostNamesListener, listenerHost } = await import('./middleware.js');
  assert.ok(hostNamesListener('127.0.0.1:5000', '127.0.0.1', 5000, 'http'));
  assert.ok(hostNamesListener('localhost:5000', '::ffff:127.0.0.1', 5000, 'http'));
  assert.ok(hostNamesListener('[::1]:5000', '::1', 5000, 'http'));
  assert.ok(hostNamesListener('10.0.0.5', '10.0.0.5', 80, 'http'));
  assert.ok(!hostNamesListener('localhost:5000', '10.0.0.5', 5000, 'http'), 'localhost only on loopback');
  assert.ok(!hostNamesListener('evil.example:5000', '10.0.0.5', 5000, 'http'));
  assert.ok(!hostNamesListener('10.0.0.5:5001', '10.0.0.5', 5000, 'http'));
  assert.ok(!hostNamesListener('10.0.0.5', '10.0.0.5', 5000, 'https'));
  assert.equal(listenerHost('::ffff:10.0.0.5', 5000), '10.0.0.5:5000');
  assert.equal(listenerHost('fe80::1', 5000), '[fe80::1]:5000');
});
