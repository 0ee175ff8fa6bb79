// Crash safety: kill -9 the server in the middle of blob uploads and manifest/tag writes, restart it, and check that
// every tag resolves to a complete manifest, every blob re-hashes to its digest, no partial blob is visible, and an
// interrupted chunked upload can be resumed (GET status → continue) or is cleanly unknown.
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBerth, type Berth } from './support/berth.js';
import { raw, sha256, imageManifest, pushManifest } from './support/registry-client.js';

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c);
  return h.digest('hex');
}

/** Pushes blob + manifest + tag in a loop until the server dies. */
async function worker(base: string, id: number, stop: { dead: boolean }): Promise<void> {
  for (let n = 0; !stop.dead; n++) {
    try {
      const name = `crash/w${id}`;
      const data = randomBytes(randomInt(1, 3 * 1024 * 1024));
      const digest = sha256(data);
      const loc = (await raw(base, 'POST', `/v2/${name}/blobs/uploads/`)).header('location')!;
      const cut = Math.floor(data.length / 2);
      await raw(base, 'PATCH', loc, { body: data.subarray(0, cut), headers: { 'Content-Range': `0-${cut - 1}` } });
      await raw(base, 'PUT', `${loc}?digest=${digest}`, {
        body: data.subarray(cut),
        headers: { 'Content-Range': `${cut}-${data.length - 1}` },
      });
      const config = Buffer.from(
        JSON.stringify({ architecture: 'amd64', os: 'linux', n, id, rootfs: { type: 'layers', diff_ids: [] } }),
      );
      const configDigest = sha256(config);
      await raw(base, 'POST', `/v2/${name}/blobs/uploads/?digest=${configDigest}`, { body: config });
      const manifest = imageManifest({ digest: configDigest, size: config.length }, [{ digest, size: data.length }]);
      await pushManifest(base, name, `t${n % 5}`, manifest);
      await pushManifest(base, 'crash/shared', 'latest', manifest).catch(() => {});
    } catch {
      return; // the server was killed under us
    }
  }
}

async function verifyStorage(berth: Berth): Promise<{ blobs: number; tags: number }> {
  // 1. Every blob file in storage hashes to its own digest: nothing partial is ever published.
  let blobs = 0;
  const blobRoot = join(berth.root, 'blobs', 'sha256');
  for (const prefix of await readdir(blobRoot).catch(() => [])) {
    for (const hex of await readdir(join(blobRoot, prefix))) {
      // A kill between creating a blob's directory and renaming its data into it leaves an empty directory: the
      // blob is simply not there.
      if (!existsSync(join(blobRoot, prefix, hex, 'data'))) continue;
      assert.equal(await hashFile(join(blobRoot, prefix, hex, 'data')), hex, `blob ${hex} is corrupt`);
      blobs++;
    }
  }
  // 2. Every tag in every repository resolves to a complete manifest whose blobs are all there.
  let tags = 0;
  const catalog = (await raw(berth.url, 'GET', '/v2/_catalog')).json().repositories as string[];
  for (const repo of catalog) {
    const list = await raw(berth.url, 'GET', `/v2/${repo}/tags/list`);
    for (const tag of list.json().tags ?? []) {
      const m = await raw(berth.url, 'GET', `/v2/${repo}/manifests/${tag}`);
      assert.equal(m.status, 200, `${repo}:${tag} does not resolve: ${m.body}`);
      assert.equal(sha256(m.body), m.header('docker-content-digest'));
      const doc = JSON.parse(m.body.toString());
      for (const d of [doc.config, ...doc.layers]) {
        const b = await raw(berth.url, 'GET', `/v2/${repo}/blobs/${d.digest}`);
        assert.equal(b.status, 200, `${repo}:${tag} references missing blob ${d.digest}`);
        assert.equal(sha256(b.body), d.digest);
        assert.equal(b.body.length, d.size);
      }
      tags++;
    }
  }
  return { blobs, tags };
}

test('kill -9 during uploads and manifest/tag writes leaves everything whole or absent', async (t) => {
  const berth = await startBerth(t);
  let totalTags = 0;
  for (let round = 0; round < 4; round++) {
    // An upload that will be interrupted: its first chunk is stored before the crash.
    const resumable = randomBytes(6 * 1024 * 1024);
    const loc = (await raw(berth.url, 'POST', '/v2/crash/resume/blobs/uploads/')).header('location')!;
    const first = 2 * 1024 * 1024;
    assert.equal(
      (
        await raw(berth.url, 'PATCH', loc, {
          body: resumable.subarray(0, first),
          headers: { 'Content-Range': `0-${first - 1}` },
        })
      ).status,
      202,
    );
    const stop = { dead: false };
    const workers = Array.from({ length: 6 }, (_, i) => worker(berth.url, i, stop));
    // The second chunk is in flight when the server dies.
    const inflight = raw(berth.url, 'PATCH', loc, {
      body: resumable.subarray(first),
      headers: { 'Content-Range': `${first}-${resumable.length - 1}` },
    }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, randomInt(150, 900)));
    await berth.kill();
    stop.dead = true;
    await Promise.all([...workers, inflight]);
    await berth.restart();

    const { tags } = await verifyStorage(berth);
    totalTags = tags;

    // The interrupted upload: resume from where the server says it is, or find it cleanly unknown.
    const status = await raw(berth.url, 'GET', loc);
    if (status.status === 204) {
      const end = Number(/^0-(\d+)$/.exec(status.header('range') ?? '')?.[1]);
      const offset = end + 1;
      assert.ok(offset >= first && offset <= resumable.length, `resume offset ${offset}`);
      const rest = resumable.subarray(offset);
      const put = await raw(berth.url, 'PUT', `${loc}?digest=${sha256(resumable)}`, {
        body: rest,
        headers: rest.length ? { 'Content-Range': `${offset}-${resumable.length - 1}` } : {},
      });
      assert.equal(put.status, 201, put.body.toString());
      const got = await raw(berth.url, 'GET', `/v2/crash/resume/blobs/${sha256(resumable)}`);
      assert.equal(sha256(got.body), sha256(resumable));
    } else {
      assert.equal(status.status, 404);
      assert.equal(status.json().errors[0].code, 'BLOB_UPLOAD_UNKNOWN');
    }
  }
  assert.ok(totalTags > 0, 'the workload wrote tags before the crashes');
});
