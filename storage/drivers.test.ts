import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDriverSuite } from './driver-suite.js';
import { MemoryDriver } from './memory.js';
import { FsDriver } from './fs.js';
import { isSendable } from './driver.js';

runDriverSuite('memory', async () => ({ driver: new MemoryDriver() }));
runDriverSuite('filesystem', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-fs-'));
  return { driver: new FsDriver({ root }), cleanup: () => rm(root, { recursive: true, force: true }) };
});

describe('filesystem driver: a blob body sent with sendTo', () => {
  it('is exact through a real socket, and a client leaving mid-way closes the file (no descriptor left open)', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-fs-send-'));
    const d = new FsDriver({ root, fsync: false });
    // Descriptors of this process open on the blob's file.
    const blobFds = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(root);
        } catch {
          return false;
        }
      }).length;
    try {
      const data = randomBytes(6 * 1024 * 1024 + 1);
      await d.put('blob', data);
      // A slow consumer behind a real TCP socket, so sendTo meets backpressure.
      const server = createServer(async (_req, res) => {
        const body = await d.read('blob', { relay: true });
        assert.ok(isSendable(body));
        res.writeHead(200, { 'Content-Length': data.length });
        await body.sendTo(res).catch(() => {});
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      try {
        const got = await new Promise<Buffer>((resolve, reject) => {
          get(url, { agent: false }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => {
              chunks.push(c);
              if (chunks.length % 20 === 0) {
                res.pause();
                setTimeout(() => res.resume(), 20);
              }
            });
            res.on('end', () => resolve(Buffer.concat(chunks)));
          }).on('error', reject);
        });
        assert.ok(got.equals(data));
        await new Promise<void>((resolve, reject) => {
          get(url, { agent: false }, (res) => res.once('data', () => (res.destroy(), resolve()))).on('error', reject);
        });
        const t0 = Date.now();
        while (blobFds() > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
        assert.equal(blobFds(), 0, 'the file is closed');
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
