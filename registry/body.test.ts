import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { guardBody, BODY_TIMEOUT } from './body.js';

const sink = () => new Writable({ write: (_c, _e, cb) => cb() });

test('guardBody: a body that fails before anyone reads it fails the reader later — never an unhandled error', async () => {
  for (const fail of [
    (src: PassThrough) => src.destroy(new Error('client went away')),
    (src: PassThrough) => (src as unknown as Record<symbol, (e: Error) => void>)[BODY_TIMEOUT](new Error('timed out')),
  ]) {
    const src = new PassThrough();
    const body = guardBody(src);
    fail(src);
    await new Promise((r) => setTimeout(r, 20)); // an 'error' emitted to nobody would have crashed the test here
    await assert.rejects(pipeline(body, sink()), /client went away|timed out/);
  }
});

test('guardBody: a body already cut off when it is wrapped fails its reader instead of leaving it waiting', async () => {
  const src = new PassThrough();
  src.write('partial');
  src.destroy(); // the client left while the handler awaited storage, before it asked for the body
  await new Promise((r) => setImmediate(r));
  const body = guardBody(src);
  const read = pipeline(body, sink());
  const hung = new Promise((r) => setTimeout(() => r('hung'), 1000).unref());
  assert.notEqual(
    await Promise.race([
      read.then(
        () => 'ended',
        () => 'failed',
      ),
      hung,
    ]),
    'hung',
  );
  await assert.rejects(read, /ended early/);
});

test('guardBody: counts the bytes as they arrive against a limit; a refused or failed consumer drains its source instead of destroying it', async () => {
  const src = new PassThrough();
  const body = guardBody(src, { take: (_n, received) => (received > 10 ? new Error(`over: ${received}`) : undefined) });
  src.write('0123456789');
  src.write('x');
  await assert.rejects(pipeline(body, sink()), /over: 11/);
  assert.equal(src.destroyed, false, 'the request is not torn down under the answer');
  src.end('the rest is read and thrown away');
  await new Promise((r) => src.once('end', r));

  const ok = guardBody(Readable.from([Buffer.from('abc'), Buffer.from('def')]), { take: () => undefined });
  const chunks: Buffer[] = [];
  for await (const c of ok) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), 'abcdef');
});
