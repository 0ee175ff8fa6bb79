import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { MemoryDriver } from '../storage/memory.js';
import { createLogger, createRegistry, loadConfig } from './index.js';

const silent = createLogger('silent', false);
type R = ReturnType<typeof createRegistry>;
const exists = (r: R, id: string) =>
  r.store.uploads.get(id, 'lc/repo').then(
    () => true,
    () => false,
  );

function registryWith(flags: Record<string, unknown>) {
  const config = loadConfig({ env: {}, flags: { storage: { filesystem: { root: '/nonexistent' } }, ...flags } });
  return createRegistry(config, new MemoryDriver(), silent);
}

test('start() schedules the upload purge the config turns on, stop() ends it', async (t) => {
  const registry = registryWith({ storage: { uploadPurge: { enabled: true, age: '1ms', interval: '20ms' } } });
  t.after(() => registry.stop());
  const before = await registry.store.uploads.start('lc/repo');
  await sleep(60);
  assert.ok(await exists(registry, before.id), 'nothing runs before start()');
  registry.start();
  registry.start(); // idempotent: one schedule, not two
  await sleep(120);
  assert.equal(await exists(registry, before.id), false, 'the abandoned upload was purged');
  registry.stop();
  const after = await registry.store.uploads.start('lc/repo');
  await sleep(120);
  assert.ok(await exists(registry, after.id), 'nothing runs after stop()');
});

test('a registry whose config turns the purge off schedules none', async (t) => {
  const registry = registryWith({ storage: { uploadPurge: { enabled: false, age: '1ms', interval: '20ms' } } });
  t.after(() => registry.stop());
  registry.start();
  const upload = await registry.store.uploads.start('lc/repo');
  await sleep(120);
  assert.ok(await exists(registry, upload.id));
});
