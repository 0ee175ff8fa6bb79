import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from './log.js';

const settle = () => new Promise((r) => setTimeout(r, 50));

test('JSON lines by default: ISO time, level label, fields', async () => {
  const lines: string[] = [];
  const log = createLogger('info', true, (l) => lines.push(l));
  log.info('hello', { a: 1 });
  log.debug('hidden');
  await settle();
  assert.equal(lines.length, 1);
  const o = JSON.parse(lines[0]);
  assert.deepEqual([o.level, o.msg, o.a], ['info', 'hello', 1]);
  assert.match(o.time, /^\d{4}-\d\d-\d\dT/);
});

test('pretty: one readable line per entry, fields (err included) on the same line, no colour unless asked', async () => {
  const out: string[] = [];
  const log = createLogger('info', true, (l) => out.push(l), { pretty: true });
  log.info('hello', { a: 1 });
  log.error('upload purge failed', { err: 'Error: EACCES' });
  await settle();
  const text = out.join('');
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, 2, text);
  assert.match(lines[0], /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: hello \{"a":1\}$/);
  assert.match(lines[1], /^\[\d\d:\d\d:\d\d\.\d{3}\] ERROR: upload purge failed \{"err":"Error: EACCES"\}$/);
  assert.doesNotMatch(text, /\x1b\[/);
});
