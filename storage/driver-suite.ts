// The ONE driver test suite: every driver (memory, filesystem, S3) runs exactly these cases.
// Usage in a *.test.ts: runDriverSuite('fs', async () => ({ driver, cleanup }))
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { randomBytes, createHash } from 'node:crypto';
import { NotFoundError, OffsetMismatchError, isSendable, type Driver } from './driver.js';
import { listFiles } from './browse.js';

export interface DriverFixture {
  driver: Driver;
  cleanup?: () => Promise<void>;
}

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

/** A stream that yields `data` in pieces and then fails, like a client that disconnects mid-body. */
function failingStream(data: Buffer): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(data);
      } else this.destroy(new Error('client went away'));
    },
  });
}

export function runDriverSuite(label: string, make: () => Promise<DriverFixture>): void {
  describe(`driver suite: ${label}`, () => {
    let fx: DriverFixture;
    let d: Driver;
    const p = (s: string) => `suite-${label}/${s}`;
    before(async () => {
      fx = await make();
      d = fx.driver;
    });
    after(async () => {
      await d.delete(`suite-${label}`);
      await fx.cleanup?.();
      await d.close?.();
    });

    it('put/get/stat round-trip and missing objects', async () => {
      await d.put(p('a/b/small'), 'hello');
      assert.equal((await d.get(p('a/b/small')))?.toString(), 'hello');
      assert.equal((await d.stat(p('a/b/small')))?.size, 5);
      assert.equal(await d.get(p('a/b/missing')), undefined);
      assert.equal(await d.stat(p('a/b/missing')), undefined);
      await assert.rejects(d.read(p('a/b/missing')), NotFoundError);
    });

    it('put replaces atomically', async () => {
      await d.put(p('r/x'), 'one');
      await d.put(p('r/x'), 'two two');
      assert.equal((await d.get(p('r/x')))?.toString(), 'two two');
    });

    it('putStream stores a large streamed object and reads ranges', async () => {
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const n = await d.putStream(p('big/obj'), Readable.from([data.subarray(0, 1000), data.subarray(1000)]), {
        sha256: createHash('sha256').update(data).digest('hex'),
        size: data.length,
      });
      assert.equal(n, data.length);
      assert.deepEqual(await readAll(await d.read(p('big/obj'))), data);
      assert.deepEqual(await readAll(await d.read(p('big/obj'), { start: 10, end: 19 })), data.subarray(10, 20));
      assert.deepEqual(await readAll(await d.read(p('big/obj'), { start: data.length - 5 })), data.subarray(-5));
    });

    it('a read for relaying (a blob GET) gives the same bytes, by sendTo when the body offers it, and the same errors', async () => {
      const data = randomBytes(2 * 1024 * 1024 + 3);
      await d.putStream(p('relay/obj'), Readable.from([data]));
      const viaRelay = async (opts: { start?: number; end?: number }) => {
        const body = await d.read(p('relay/obj'), { ...opts, relay: true });
        if (!isSendable(body)) return readAll(body);
        const chunks: Buffer[] = [];
        // A copy per chunk: the buffers a Sendable writes are reused once each write completed.
        await body.sendTo(new Writable({ write: (c: Buffer, _e, cb) => void (chunks.push(Buffer.from(c)), cb()) }));
        return Buffer.concat(chunks);
      };
      assert.deepEqual(await viaRelay({}), data);
      assert.deepEqual(await viaRelay({ start: 1000, end: 1999 }), data.subarray(1000, 2000));
      assert.deepEqual(await viaRelay({ start: data.length - 7 }), data.subarray(-7));
      await assert.rejects(d.read(p('relay/missing'), { relay: true }), NotFoundError);
    });

    it('a failed putStream leaves nothing (or the previous object) visible', async () => {
      await assert.rejects(d.putStream(p('fail/obj'), failingStream(randomBytes(1000))));
      assert.equal(await d.stat(p('fail/obj')), undefined);
      await d.put(p('fail/old'), 'old');
      await assert.rejects(d.putStream(p('fail/old'), failingStream(randomBytes(1000))));
      assert.equal((await d.get(p('fail/old')))?.toString(), 'old');
    });

    it('putStream publishes only what verify accepts, and calls it after the whole body', async () => {
      // 1000 bytes and 17 MiB: on S3 one PutObject and a multipart upload (completed only when verify passes).
      for (const data of [randomBytes(1000), randomBytes(17 * 1024 * 1024 + 3)]) {
        let seen: number | undefined;
        const veto = (n: number) => {
          seen = n;
          throw new Error('digest mismatch');
        };
        await assert.rejects(d.putStream(p('verify/new'), Readable.from([data]), { verify: veto }), /digest mismatch/);
        assert.equal(seen, data.length, 'verify saw every byte');
        assert.equal(await d.stat(p('verify/new')), undefined, 'nothing visible after a veto');
        await d.put(p('verify/old'), 'old');
        await assert.rejects(
          d.putStream(p('verify/old'), Readable.from([data]), { verify: async () => veto(0) }),
          /digest mismatch/,
        );
        assert.equal((await d.get(p('verify/old')))?.toString(), 'old', 'a vetoed replace keeps the previous object');
        // A body that breaks never reaches verify.
        let called = false;
        await assert.rejects(d.putStream(p('verify/new'), failingStream(data), { verify: () => void (called = true) }));
        assert.equal(called, false);
        assert.equal(await d.stat(p('verify/new')), undefined);
        assert.equal(
          await d.putStream(p('verify/new'), Readable.from([data]), { verify: (n) => assert.equal(n, data.length) }),
          data.length,
        );
        assert.deepEqual(await d.get(p('verify/new')), data);
        await d.delete(p('verify'));
      }
    });

    it('append enforces offsets, is readable while growing, and moves atomically', async () => {
      const a = randomBytes(100),
        b = randomBytes(6 * 1024 * 1024),
        c = randomBytes(10);
      assert.equal(await d.append(p('up/data'), 0, Readable.from([a])), 100);
      assert.equal((await d.stat(p('up/data')))?.size, 100);
      await assert.rejects(d.append(p('up/data'), 50, Readable.from([c])), OffsetMismatchError);
      await assert.rejects(d.append(p('up/data'), 101, Readable.from([c])), OffsetMismatchError);
      assert.equal(await d.append(p('up/data'), 100, Readable.from([b])), 100 + b.length);
      assert.equal(await d.append(p('up/data'), 100 + b.length, Readable.from([c])), 110 + b.length);
      const all = Buffer.concat([a, b, c]);
      assert.deepEqual(await readAll(await d.read(p('up/data'))), all);
      assert.deepEqual(await readAll(await d.read(p('up/data'), { start: 95, end: 104 })), all.subarray(95, 105));
      await d.move(p('up/data'), p('final/blob'));
      assert.equal(await d.stat(p('up/data')), undefined);
      assert.deepEqual(await readAll(await d.read(p('final/blob'))), all);
    });

    it('a failed append leaves the object as it was before that append', async () => {
      await d.append(p('up2/data'), 0, Readable.from([Buffer.from('0123456789')]));
      await assert.rejects(d.append(p('up2/data'), 10, failingStream(randomBytes(500))));
      assert.equal((await d.stat(p('up2/data')))?.size, 10);
      assert.equal(await d.append(p('up2/data'), 10, Readable.from([Buffer.from('ab')])), 12);
      assert.equal((await d.get(p('up2/data')))?.toString(), '0123456789ab');
    });

    it('concurrent appends at the same offset: exactly one wins', async () => {
      const results = await Promise.allSettled(
        [1, 2, 3, 4].map((i) => d.append(p('race/data'), 0, Readable.from([Buffer.alloc(1000, i)]))),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      assert.equal((await d.stat(p('race/data')))?.size, 1000);
    });

    it('list returns sorted direct children; delete removes objects and prefixes', async () => {
      await d.put(p('ls/b'), '1');
      await d.put(p('ls/a/x'), '2');
      await d.put(p('ls/a/y'), '3');
      await d.put(p('ls/c/d/e'), '4');
      assert.deepEqual(await d.list(p('ls')), ['a', 'b', 'c']);
      assert.deepEqual(await d.list(p('ls/a')), ['x', 'y']);
      assert.deepEqual(await d.list(p('ls/nothing')), []);
      await d.delete(p('ls/a'));
      assert.deepEqual(await d.list(p('ls')), ['b', 'c']);
      await d.delete(p('ls/b'));
      await d.delete(p('ls/never-there'));
      assert.deepEqual(await d.list(p('ls')), ['c']);
    });

    it('listFiles (or its list + stat fallback) gives direct child objects with size and mtime', async () => {
      const before = Date.now() - 2_000;
      await d.put(p('lf/b'), '12345');
      await d.put(p('lf/a'), '1');
      await d.put(p('lf/sub/x'), 'not a direct child object');
      const files = await listFiles(d, p('lf'));
      assert.deepEqual(
        files.map((f) => [f.name, f.size]),
        [
          ['a', 1],
          ['b', 5],
        ],
      );
      for (const f of files) assert.ok(f.modified.getTime() >= before, `${f.name} mtime ${f.modified.toISOString()}`);
      assert.deepEqual(await listFiles(d, p('lf/nothing')), []);
      // A version, when given, changes with every replace (readers reuse bytes they read under the same version).
      if (files[1].version !== undefined) {
        await d.put(p('lf/b'), '67890');
        const again = await listFiles(d, p('lf'));
        assert.notEqual(again[1].version, files[1].version);
        assert.equal(again[0].version, files[0].version);
      }
    });

    it('move with a size publishes only an object of exactly that size', async () => {
      await d.append(p('sized/data'), 0, Readable.from([Buffer.from('0123456789')]));
      await assert.rejects(d.move(p('sized/data'), p('sized/final'), { size: 8 }), OffsetMismatchError);
      assert.equal(await d.stat(p('sized/final')), undefined, 'nothing moved');
      assert.equal((await d.stat(p('sized/data')))?.size, 10);
      await d.move(p('sized/data'), p('sized/final'), { size: 10 });
      assert.equal((await d.get(p('sized/final')))?.toString(), '0123456789');
      await assert.rejects(d.move(p('sized/data'), p('sized/other'), { size: 10 }), NotFoundError);
    });

    it('move of a missing object throws NotFoundError', async () => {
      await assert.rejects(d.move(p('nope/data'), p('nope/final')), NotFoundError);
    });

    it('rejects unsafe paths', async () => {
      for (const bad of ['../etc/passwd', '/abs', 'a//b', 'a/./b', 'a/../b']) {
        await assert.rejects(d.get(bad));
      }
    });
  });
}
