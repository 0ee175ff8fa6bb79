// The known-digest fast path at the registry level (issue 6): a single POST `?digest=` and a monolithic PUT stream
// straight to the blob's final path and publish it only once the digest matched. Proven on the filesystem and on a
// real S3 server (SeaweedFS): a wrong digest or a client that disconnects mid-body leaves nothing visible — no blob,
// no link, no half-written object, no pending multipart upload — and a good push never copies inside the bucket.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { requirePeer } from './support/peers.js';
import { startS3Server, s3ServeConfig, S3_PEER, type S3Server } from './support/s3-server.js';
import { startBerth, type Berth } from './support/berth.js';
import { faultProxy } from './support/s3-fault-proxy.js';
import { raw, sha256 } from './support/registry-client.js';

const MiB = 1024 * 1024;

/** What a storage backend holds, for "nothing became visible" checks. */
interface Backend {
  berth: Berth;
  /** Every stored key/path under the storage root (objects, not "directories"), minus upload-session state. */
  stored(): Promise<string[]>;
  /** Half-written objects: multipart uploads begun and neither completed nor aborted (S3), temp files (fs). */
  pending(): Promise<string[]>;
  /** S3 requests that copied inside the bucket (CopyObject, UploadPartCopy). */
  copies(): number;
}

async function fsBackend(t: TestContext): Promise<Backend> {
  const berth = await startBerth(t);
  t.after(() => berth.stop());
  const walk = async (dir: string): Promise<string[]> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    const out: string[] = [];
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) out.push(...(await walk(path)));
      else out.push(path.slice(berth.root.length + 1));
    }
    return out;
  };
  return { berth, stored: () => walk(berth.root), pending: () => walk(join(berth.root, '_tmp')), copies: () => 0 };
}

async function s3Backend(t: TestContext): Promise<Backend | undefined> {
  if (!requirePeer(t, S3_PEER)) return undefined;
  const server: S3Server = await startS3Server();
  t.after(() => server.stop());
  // berth reaches S3 through a loopback proxy that notes every copy request.
  let copies = 0;
  const proxy = await faultProxy(server.endpoint, (_n, req) => {
    if (req.headers['x-amz-copy-source']) copies++;
    return undefined;
  });
  t.after(() => proxy.close());
  const config = s3ServeConfig(server, { endpoint: proxy.endpoint });
  const berth = await startBerth(t, { config });
  t.after(() => berth.stop());
  const s3 = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  t.after(() => s3.destroy());
  return {
    berth,
    stored: async () => {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const r = await s3.send(new ListObjectsV2Command({ Bucket: server.bucket, ContinuationToken: token }));
        keys.push(...(r.Contents ?? []).map((o) => o.Key!));
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
      return keys;
    },
    pending: async () =>
      ((await s3.send(new ListMultipartUploadsCommand({ Bucket: server.bucket }))).Uploads ?? []).map((u) => u.Key!),
    copies: () => copies,
  };
}

/** Stored things that are blobs or layer links (upload sessions and GC state are not "visible"). */
async function visible(b: Backend): Promise<string[]> {
  return (await b.stored()).filter((k) => /^blobs\/|\/_layers\//.test(k));
}

/** Sends `declared` bytes' worth of headers but only `sent` bytes of body, then drops the connection. */
function disconnectMidBody(
  base: string,
  method: 'POST' | 'PUT',
  path: string,
  declared: number,
  sent: number,
): Promise<void> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const req = request({
      host: url.hostname,
      port: url.port,
      method,
      path,
      headers: { 'Content-Length': String(declared), 'Content-Type': 'application/octet-stream' },
    });
    req.on('error', () => resolve());
    req.on('response', () => resolve()); // berth may answer early; either way the body stays short
    const chunk = randomBytes(MiB);
    let left = sent;
    const pump = () => {
      while (left > 0) {
        left -= MiB;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      // Give berth time to pass what it got on to storage, then vanish.
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 500);
    };
    pump();
  });
}

/** Polls until `check` holds (storage cleanup after a disconnect is asynchronous), or fails with its last message. */
async function eventually(check: () => Promise<void>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

for (const kind of ['filesystem', 's3'] as const) {
  test(`known-digest fast path on ${kind}: only verified blobs ever become visible`, async (t) => {
    const b = kind === 's3' ? await s3Backend(t) : await fsBackend(t);
    if (!b) return;
    const { url } = b.berth;
    // 40 MiB: on S3 a multipart upload of several parts, so "complete only when the digest matches" is what is tested.
    const data = randomBytes(40 * MiB + 7);
    const wrong = sha256(randomBytes(16));
    const nothingVisible = async (what: string) => {
      assert.deepEqual(await visible(b), [], `${what}: no blob or link is stored`);
      assert.deepEqual(await b.pending(), [], `${what}: no multipart upload is left pending`);
      for (const d of [sha256(data), wrong])
        assert.equal((await raw(url, 'HEAD', `/v2/fast/path/blobs/${d}`)).status, 404, `${what}: HEAD ${d}`);
    };
    const lengthOf = { 'Content-Length': String(data.length), 'Content-Type': 'application/octet-stream' };

    await t.test('single POST with a wrong digest: DIGEST_INVALID, nothing visible', async () => {
      const res = await raw(url, 'POST', `/v2/fast/path/blobs/uploads/?digest=${wrong}`, {
        body: data,
        headers: lengthOf,
      });
      assert.equal(res.status, 400, res.body.toString());
      assert.equal(res.json().errors[0].code, 'DIGEST_INVALID');
      await nothingVisible('single POST, wrong digest');
    });

    await t.test('monolithic PUT with a wrong digest: DIGEST_INVALID, session gone, nothing visible', async () => {
      const loc = (await raw(url, 'POST', '/v2/fast/path/blobs/uploads/')).header('location')!;
      const res = await raw(url, 'PUT', `${loc}?digest=${wrong}`, { body: data, headers: lengthOf });
      assert.equal(res.status, 400, res.body.toString());
      assert.equal(res.json().errors[0].code, 'DIGEST_INVALID');
      assert.equal((await raw(url, 'GET', loc)).status, 404, 'the session was removed');
      await nothingVisible('monolithic PUT, wrong digest');
    });

    await t.test('a client that disconnects mid-body leaves nothing visible', async () => {
      await disconnectMidBody(
        url,
        'POST',
        `/v2/fast/path/blobs/uploads/?digest=${sha256(data)}`,
        data.length,
        36 * MiB,
      );
      const loc = (await raw(url, 'POST', '/v2/fast/path/blobs/uploads/')).header('location')!;
      await disconnectMidBody(url, 'PUT', `${loc}?digest=${sha256(data)}`, data.length, 36 * MiB);
      await eventually(() => nothingVisible('disconnect mid-body'));
      // The session outlives a broken PUT, so the client can try again; this one gives up.
      assert.equal((await raw(url, 'GET', loc)).status, 204);
      assert.equal((await raw(url, 'DELETE', loc)).status, 204);
    });

    await t.test('good pushes land under the final key, without any copy inside the storage', async () => {
      const res = await raw(url, 'POST', `/v2/fast/path/blobs/uploads/?digest=${sha256(data)}`, {
        body: data,
        headers: lengthOf,
      });
      assert.equal(res.status, 201, res.body.toString());
      const other = randomBytes(20 * MiB + 1);
      const loc = (await raw(url, 'POST', '/v2/fast/path/blobs/uploads/')).header('location')!;
      const put = await raw(url, 'PUT', `${loc}?digest=${sha256(other)}`, {
        body: other,
        headers: { 'Content-Length': String(other.length) },
      });
      assert.equal(put.status, 201, put.body.toString());
      for (const blob of [data, other])
        assert.equal(sha256((await raw(url, 'GET', `/v2/fast/path/blobs/${sha256(blob)}`)).body), sha256(blob));
      // Pushing known content again only verifies the body (and links it into another repository).
      const again = await raw(url, 'POST', `/v2/fast/other/blobs/uploads/?digest=${sha256(data)}`, {
        body: data,
        headers: lengthOf,
      });
      assert.equal(again.status, 201, again.body.toString());
      assert.equal(
        (await raw(url, 'HEAD', `/v2/fast/other/blobs/${sha256(data)}`)).header('content-length'),
        String(data.length),
      );
      assert.equal(b.copies(), 0, 'no CopyObject / UploadPartCopy');
      assert.deepEqual(await b.pending(), []);
      assert.deepEqual(
        (await b.stored()).filter((k) => /(^|\/)uploads\//.test(k)),
        [],
        'no upload session is left behind',
      );
    });
  });
}
