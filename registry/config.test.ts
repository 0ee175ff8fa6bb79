import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, envOverrides, parseDuration } from './config.js';

test('defaults: :5000 and ./data', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.http.addr, ':5000');
  assert.equal(c.storage.filesystem?.root, './data');
  assert.equal(c.storage.delete, true);
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
  assert.throws(() => envOverrides({ BERTH_STORAGE_DELETE: 'maybe' }), /BERTH_STORAGE_DELETE: expected true or false/);
});

test('file < env < flags, and clear errors naming the key', async () => {
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
  await writeFile(file, 'storage:\n  delet: false\n');
  assert.throws(
    () => loadConfig({ file, env: {} }),
    /berth\.yaml: storage: must NOT have additional properties "delet"/,
  );
  await writeFile(file, 'storage:\n  uploadPurge: { age: soon }\n');
  assert.throws(() => loadConfig({ file, env: {} }), /storage\.uploadPurge\.age: must match pattern/);
  await writeFile(file, 'http: [\n');
  assert.throws(() => loadConfig({ file, env: {} }), /invalid YAML/);
  assert.throws(() => loadConfig({ file: join(dir, 'missing.yaml'), env: {} }), /cannot read config file .*ENOENT/);
  await writeFile(file, 'storage:\n  filesystem: { root: /a }\n  s3: { bucket: b }\n');
  assert.throws(() => loadConfig({ file, env: {} }), /choose one of storage\.filesystem or storage\.s3/);
});

test('durations', () => {
  assert.equal(parseDuration('1500ms'), 1500);
  assert.equal(parseDuration('10m'), 600_000);
  assert.throws(() => parseDuration('10 minutes'), /invalid duration/);
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
