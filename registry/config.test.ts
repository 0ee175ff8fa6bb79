import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadConfig, envOverrides, configDefaults, envName, ConfigError } from './config.js';
import { defaultsYaml, effectiveYaml } from './config-doc.js';

test('defaults come from the schema: :5000 and ./data', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.http.addr, ':5000');
  assert.equal(c.storage.filesystem?.root, './data');
  assert.equal(c.storage.delete, true);
  assert.equal(c.storage.maxManifestBytes, 5 * 1024 * 1024);
  assert.deepEqual(c.gc, { enabled: false, interval: '24h', grace: '1h', deleteUntagged: false, concurrency: 32 });
  assert.equal(c.log.format, 'auto');
  assert.equal(c.auth.mode, 'none');
  // Defaults inside an optional section apply when the section is there.
  const t = loadConfig({ env: {}, flags: { auth: { mode: 'token', token: {} } } });
  assert.deepEqual(t.auth.token, {
    realm: '/token',
    service: 'berth',
    issuer: 'berth',
    algorithm: 'ES256',
    ttl: '5m',
    refreshTtl: '30d',
  });
  // S3 instead of the default filesystem: no filesystem section appears.
  assert.equal(loadConfig({ env: {}, flags: { storage: { s3: { bucket: 'b' } } } }).storage.filesystem, undefined);
});

test('BERTH_* variables map onto nested camelCase keys and are typed', () => {
  assert.deepEqual(
    envOverrides({
      BERTH_HTTP_ADDR: '127.0.0.1:1',
      BERTH_STORAGE_S3_FORCE_PATH_STYLE: 'true',
      BERTH_STORAGE_S3_BUCKET: 'b',
      BERTH_DEBUG: '1',
    }),
    {
      http: { addr: '127.0.0.1:1' },
      storage: { s3: { forcePathStyle: true, bucket: 'b' } },
    },
  );
  assert.deepEqual(envOverrides({ BERTH_STORAGE_MAXMANIFESTBYTES: '2048' }), { storage: { maxManifestBytes: 2048 } });
  assert.equal(envName(['storage', 's3', 'forcePathStyle']), 'BERTH_STORAGE_S3_FORCE_PATH_STYLE');
  assert.throws(() => envOverrides({ BERTH_STORAGE_DELETE: 'maybe' }), /BERTH_STORAGE_DELETE: expected true or false/);
  // A size with a unit from the environment, like in the file.
  assert.equal(loadConfig({ env: { BERTH_STORAGE_MAX_MANIFEST_BYTES: '8MiB' } }).storage.maxManifestBytes, 8 << 20);
});

test('a BERTH_* variable that names no key is an error, with did-you-mean', () => {
  assert.throws(
    () => loadConfig({ env: { BERTH_LOG_LEVL: 'debug' } }),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message.startsWith('BERTH_LOG_LEVL: no config key has this name; did you mean BERTH_LOG_LEVEL?'),
  );
  assert.throws(() => loadConfig({ env: { BERTH_STORAGE_S3_BUKET: 'b' } }), /did you mean BERTH_STORAGE_S3_BUCKET\?/);
  // The tool's own variables are not config keys and are left alone.
  assert.equal(loadConfig({ env: { BERTH_DEBUG: '1', BERTH_TOOLS: '/opt' } }).http.addr, ':5000');
  // A bad value names the variable and the key.
  assert.throws(
    () => loadConfig({ env: { BERTH_LOG_LEVEL: 'verbose' } }),
    /^Error: BERTH_LOG_LEVEL: log\.level: "verbose" is not allowed; use one of debug, info, warn, error, silent$/,
  );
});

test('file < env < flags', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-config-'));
  const file = join(dir, 'berth.yaml');
  await writeFile(file, 'http:\n  addr: ":6000"\nstorage:\n  delete: false\n');
  const c = loadConfig({
    file,
    env: { BERTH_HTTP_ADDR: ':7000' },
    flags: { storage: { filesystem: { root: '/srv' } } },
  });
  assert.equal(c.http.addr, ':7000');
  assert.equal(c.storage.delete, false);
  assert.equal(c.storage.filesystem?.root, '/srv');
});

test('errors name file:line:col, the key path and the fix', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-config-'));
  const file = join(dir, 'berth.yaml');
  const err = async (text: string, env: NodeJS.ProcessEnv = {}) => {
    await writeFile(file, text);
    try {
      loadConfig({ file, env });
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      return e.message.replace(file, 'berth.yaml');
    }
    assert.fail(`no error for:\n${text}`);
  };
  assert.equal(
    await err('storage:\n  delet: false\n'),
    'berth.yaml:2:3: storage.delet: unknown key "delet"; did you mean "delete"? ' +
      '(keys here: filesystem, s3, delete, maxManifestBytes, uploadPurge, uploadSessions)',
  );
  assert.match(await err('htp:\n  addr: ":1"\n'), /^berth\.yaml:1:1: htp: unknown key "htp"; did you mean "http"\?/);
  assert.equal(
    await err('log:\n  level: verbose\n'),
    'berth.yaml:2:10: log.level: "verbose" is not allowed; use one of debug, info, warn, error, silent',
  );
  assert.equal(
    await err('storage:\n  uploadPurge: { age: soon }\n'),
    'berth.yaml:2:23: storage.uploadPurge.age: "soon" is not a duration; ' +
      'use a duration such as 90s, 10m, 1h30m, 24h or 30d (units ns, us, ms, s, m, h, d)',
  );
  assert.equal(
    await err('quotas:\n  - namespace: team-a\n    maxBytes: 10 gigs\n'),
    'berth.yaml:3:15: quotas[0].maxBytes: "10 gigs" is not a size; ' +
      'use a size such as 512MB, 10GiB or 1048576 (bytes; units kB, MB, GB, TB or KiB, MiB, GiB, TiB)',
  );
  assert.equal(
    await err('auth:\n  mode: htpasswd\n  htpasswd: {}\n'),
    'berth.yaml:3:13: auth.htpasswd: missing key "path" (the htpasswd file)',
  );
  assert.equal(await err('http:\n  addr: 5000\n'), 'berth.yaml:2:9: http.addr: expected a string, got 5000');
  assert.match(
    await err('http:\n  addr: "localhost"\n'),
    /^berth\.yaml:2:9: http\.addr: "localhost" is not valid \(listen address/,
  );
  // YAML syntax errors show the line and where in it.
  const yamlErr = await err('storage:\n  delete: true\n  delete: false\n');
  assert.equal(yamlErr, 'berth.yaml:3:3: invalid YAML: Map keys must be unique\n  3 |   delete: false\n    |   ^');
  assert.match(await err('http: [\n'), /^berth\.yaml:\d+:\d+: invalid YAML: /);
  assert.equal(
    await err('- a\n- b\n'),
    'berth.yaml:1:1: the config must be a mapping of sections (http:, storage:, auth:, …)',
  );
  // The same value from a variable or a flag names that instead of the file.
  assert.throws(
    () => loadConfig({ env: {}, flags: { http: { addr: 'x' } }, flagNames: { 'http.addr': '--addr' } }),
    /^Error: --addr: http\.addr: "x" is not valid/,
  );
  assert.throws(() => loadConfig({ file: join(dir, 'missing.yaml'), env: {} }), /cannot read config file .*ENOENT/);
  await writeFile(file, 'storage:\n  filesystem: { root: /a }\n  s3: { bucket: b }\n');
  assert.throws(
    () => loadConfig({ file, env: {} }),
    /berth\.yaml:3:7: storage: choose one of storage\.filesystem or storage\.s3/,
  );
});

test('sizes with units become byte counts', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-config-'));
  const file = join(dir, 'berth.yaml');
  await writeFile(file, 'storage:\n  maxManifestBytes: 8MiB\nquotas:\n  - { namespace: a, maxBytes: 10GB }\n');
  const c = loadConfig({ file, env: {} });
  assert.equal(c.storage.maxManifestBytes, 8 * 1024 * 1024);
  assert.equal(c.quotas?.[0].maxBytes, 10_000_000_000);
  await writeFile(file, 'storage:\n  maxManifestBytes: 1KB\n');
  assert.throws(() => loadConfig({ file, env: {} }), /berth\.yaml:2:21: storage\.maxManifestBytes: must be >= 1024/);
});

test('`config defaults` loads back to exactly the defaults; every key is documented', async () => {
  const text = defaultsYaml();
  const dir = await mkdtemp(join(tmpdir(), 'berth-config-'));
  const file = join(dir, 'defaults.yaml');
  await writeFile(file, text);
  assert.deepEqual(loadConfig({ file, env: {} }), configDefaults());
  for (const line of text.split('\n')) assert.ok(line.length <= 120, `line too long: ${line}`);
  // Keys without a default are there, commented out, with their description above.
  assert.match(text, /\n {2}# the URL clients use, .*\n {2}# publicUrl:\n/);
  assert.match(text, /\n {2}# an S3-compatible bucket .*\n {2}# s3:\n {4}# bucket:\n/);
  assert.match(text, /\nhttp:\n {2}# listen address: .*\n {2}addr: :5000\n/);
  assert.match(text, /\n {2}# one of: debug, info, warn, error, silent\n {2}level: info\n/);
});

test('`config check` output redacts every secret', () => {
  const hash = `$2b$10$${'a'.repeat(53)}`;
  const c = loadConfig({
    env: { BERTH_STORAGE_S3_SECRET_ACCESS_KEY: 's3cret' },
    flags: {
      storage: { s3: { bucket: 'b', accessKeyId: 'AKIA1' } },
      auth: { mode: 'htpasswd', users: [{ name: 'alice', passwordHash: hash }] },
      webhooks: [{ url: 'https://hooks.example.com', secret: 'hmac-key' }],
      proxy: { upstreams: [{ name: 'hub', url: 'https://registry-1.docker.io', username: 'u', password: 'pw' }] },
    },
  });
  const text = effectiveYaml(c);
  for (const secret of ['s3cret', hash, 'hmac-key', 'pw']) assert.ok(!text.includes(secret), `${secret} printed`);
  const back = parse(text);
  assert.equal(back.storage.s3.secretAccessKey, '<redacted>');
  assert.equal(back.storage.s3.accessKeyId, 'AKIA1');
  assert.equal(back.auth.users[0].passwordHash, '<redacted>');
  assert.equal(back.proxy.upstreams[0].username, 'u');
  assert.equal(back.http.addr, ':5000');
});

test('relative http.tls and audit.output paths in a config file are relative to its directory; env values are not', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-config-'));
  const file = join(dir, 'berth.yaml');
  await writeFile(
    file,
    'http:\n  tls: { certificate: tls/tls.crt, key: /abs/tls.key, clientCAs: ../cas.pem }\naudit: { enabled: true, output: logs/audit.jsonl }\n',
  );
  const c = loadConfig({ file, env: {} });
  assert.equal(c.http.tls?.certificate, join(dir, 'tls/tls.crt'));
  assert.equal(c.http.tls?.key, '/abs/tls.key');
  assert.equal(c.http.tls?.clientCAs, join(dir, '../cas.pem'));
  assert.equal(c.audit?.output, join(dir, 'logs/audit.jsonl'));
  const fromEnv = loadConfig({ file, env: { BERTH_HTTP_TLS_KEY: 'rel.key', BERTH_AUDIT_OUTPUT: 'stdout' } });
  assert.equal(fromEnv.http.tls?.key, 'rel.key');
  assert.equal(fromEnv.audit?.output, 'stdout');
});
