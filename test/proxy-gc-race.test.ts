// A mirrored manifest is stored through the same path as a pushed one (ManifestStore.adopt): bracketed by the GC
// protocol (storage/gc.ts), so a GC sweeping the manifest's bytes while the mirror stores it can't leave a tag
// pointing at nothing; and with its referrer entry, so the mirror lists it in the referrers API like a push would.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { createRegistry, createLogger, listen, loadConfig, type RunningServer } from '../registry/index.js';
import { GarbageCollector, GcGuard } from '../storage/gc.js';
import { paths } from '../storage/index.js';
import { MemoryDriver } from '../storage/memory.js';
import { imageManifest, pushBlob, pushManifest, raw, sha256 } from './support/registry-client.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** Everything written so far counts as older than the grace window. */
const LATER = { graceMs: 1_000, now: () => Date.now() + 60_000 };

/** A driver whose deletes of one path wait for `release`: a sweep frozen just before it takes that object. */
class PausingDriver extends MemoryDriver {
  pauseOn?: string;
  reached?: () => void;
  paused?: Promise<void>;
  override async delete(path: string): Promise<void> {
    if (path === this.pauseOn && this.paused) {
      this.reached?.();
      await this.paused;
    }
    return super.delete(path);
  }
}

async function serve(t: TestContext, driver: MemoryDriver, proxy?: object): Promise<RunningServer> {
  const config = loadConfig({ env: {}, flags: proxy ? { proxy } : {} });
  const registry = createRegistry(config, driver, createLogger('silent', false));
  const server = await listen(registry.app, '127.0.0.1:0');
  t.after(async () => {
    registry.proxy?.close();
    await server.close(1000);
  });
  return server;
}

async function pushImage(base: string, name: string, tag: string, seed: string, extra: Record<string, unknown> = {}) {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', seed }));
  const configDigest = await pushBlob(base, name, config);
  const manifest = imageManifest({ digest: configDigest, size: config.length }, [], extra);
  const res = await pushManifest(base, name, tag, manifest);
  assert.equal(res.status, 201, res.body.toString());
  return { manifest, digest: sha256(manifest) };
}

test('a mirrored manifest is protected from a concurrent GC like a pushed one, and keeps its referrer entry', async (t) => {
  const upstream = await serve(t, new MemoryDriver());
  const img = await pushImage(upstream.url, 'library/app', 'v1', 'one');
  const driver = new PausingDriver();
  const mirror = await serve(t, driver, {
    upstreams: [{ name: 'up', url: upstream.url, prefix: 'up.example', allowPrivateNetworks: true }],
  });
  const local = 'up.example/library/app';

  await t.test('GC sweeping the manifest bytes while the mirror stores them again', async () => {
    const first = await raw(mirror.url, 'GET', '/v2/up.example/library/app/manifests/v1', {
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(first.status, 200, first.body.toString());
    // The cached copy is deleted (as eviction does): its bytes are garbage for the next GC.
    const del = await raw(mirror.url, 'DELETE', `/v2/up.example/library/app/manifests/${img.digest}`);
    assert.equal(del.status, 403, 'a mirror refuses deletes');
    await driver.delete(paths.tag(local, 'v1'));
    await driver.delete(paths.manifestRevision(local, img.digest));

    let release!: () => void;
    driver.pauseOn = paths.blobData(img.digest).replace(/\/data$/, ''); // GC deletes the blob's directory
    driver.paused = new Promise((r) => (release = r));
    const reached = new Promise<void>((r) => (driver.reached = r));
    const gc = new GarbageCollector(driver).run(LATER);
    await reached; // the sweep re-statted the manifest bytes and is about to delete them
    assert.equal((await new GcGuard(driver).state()).phase, 'sweep');
    // A client pulls the tag now: the mirror fetches the manifest again and stores it while the sweep runs.
    const pull = raw(mirror.url, 'GET', '/v2/up.example/library/app/manifests/v1', {
      headers: { accept: OCI_MANIFEST },
    });
    setTimeout(release, 300);
    const [res, result] = await Promise.all([pull, gc]);
    driver.paused = undefined;
    assert.equal(result.blobs, 1, 'the sweep did delete the old bytes');
    assert.equal(res.status, 200, res.body.toString());
    assert.ok(res.body.equals(img.manifest));
    // What the mirror stored must still be whole: the tag, the revision link and the bytes they point at.
    assert.equal((await driver.get(paths.tag(local, 'v1')))?.toString(), img.digest);
    assert.ok(await driver.stat(paths.manifestRevision(local, img.digest)), 'revision link');
    assert.ok(
      (await driver.get(paths.blobData(img.digest)))?.equals(img.manifest),
      'the tag points at bytes the sweep deleted',
    );
  });

  await t.test('a mirrored manifest with a subject is listed in the referrers API', async () => {
    const sig = await pushImage(upstream.url, 'library/app', 'sig', 'sig', {
      artifactType: 'application/vnd.example.sig',
      subject: { mediaType: OCI_MANIFEST, digest: img.digest, size: img.manifest.length },
    });
    const got = await raw(mirror.url, 'GET', `/v2/up.example/library/app/manifests/${sig.digest}`);
    assert.equal(got.status, 200, got.body.toString());
    const list = await raw(mirror.url, 'GET', `/v2/up.example/library/app/referrers/${img.digest}`);
    assert.equal(list.status, 200, list.body.toString());
    const digests = list
      .json<{ manifests: Array<{ digest: string; artifactType?: string }> }>()
      .manifests.map((m) => [m.digest, m.artifactType]);
    assert.deepEqual(digests, [[sig.digest, 'application/vnd.example.sig']]);
  });
});
