// Shared by the web UI's end-to-end test (test/ui.test.ts) and its bench (bench/ui.ts): filling a registry fast over
// its own HTTP API (no storage writes behind its back), and a headless Chromium (Debian's `chromium`, driven by
// puppeteer-core; nothing is downloaded).
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import puppeteer, { type Browser } from 'puppeteer-core';

export const CHROMIUM = '/usr/bin/chromium';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

export interface BulkOptions {
  /** Repository that gets `tags` tags (`t-00000`…), each on its own manifest. */
  tagRepo?: string;
  tags?: number;
  /** `repos` repositories named `<repoPrefix>0000`…, one tagged manifest each. */
  repoPrefix?: string;
  repos?: number;
  /** Requests in flight. */
  concurrency?: number;
  /** Extra headers (Authorization) for every request. */
  headers?: Record<string, string>;
}

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
}

function _digest(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

async function _pool<T>(items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function _expect(res: Response, status: number, what: string): Promise<void> {
  if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

/**
 * Pushes `tags` manifests into one repository and one manifest into each of `repos` repositories, by plain
 * distribution-spec requests: the two blobs once (monolithic POST), cross-repository mounts, manifest PUTs.
 */
export async function fillBulk(url: string, o: BulkOptions = {}): Promise<{ tagRepo: string; repoNames: string[] }> {
  const tagRepo = o.tagRepo ?? 'bulk/tags';
  const headers = o.headers ?? {};
  const limit = o.concurrency ?? 48;
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
  );
  const layer = gzipSync(Buffer.from('bulk layer for the web UI test\n'));
  const blobs: Desc[] = [
    { mediaType: 'application/vnd.oci.image.config.v1+json', digest: _digest(config), size: config.length },
    { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: _digest(layer), size: layer.length },
  ];
  for (const [i, data] of [config, layer].entries()) {
    const res = await fetch(`${url}/v2/${tagRepo}/blobs/uploads/?digest=${blobs[i].digest}`, {
      method: 'POST',
      body: new Uint8Array(data),
      headers: { ...headers, 'content-type': 'application/octet-stream' },
    });
    await _expect(res, 201, `blob upload to ${tagRepo}`);
  }
  const manifest = (note: string) =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: blobs[0],
        layers: [blobs[1]],
        annotations: { 'org.example.note': note },
      }),
    );
  const put = async (repo: string, tag: string, body: Buffer) =>
    _expect(
      await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
        method: 'PUT',
        body: new Uint8Array(body),
        headers: { ...headers, 'content-type': OCI_MANIFEST },
      }),
      201,
      `manifest ${repo}:${tag}`,
    );
  const tags = Array.from({ length: o.tags ?? 0 }, (_, i) => `t-${String(i).padStart(5, '0')}`);
  await _pool(tags, limit, (tag) => put(tagRepo, tag, manifest(tag)));
  const repoNames = Array.from(
    { length: o.repos ?? 0 },
    (_, i) => `${o.repoPrefix ?? 'many/r-'}${String(i).padStart(4, '0')}`,
  );
  await _pool(repoNames, limit, async (repo) => {
    for (const b of blobs) {
      const res = await fetch(`${url}/v2/${repo}/blobs/uploads/?mount=${b.digest}&from=${tagRepo}`, {
        method: 'POST',
        headers,
      });
      await _expect(res, 201, `mount into ${repo}`);
    }
    await put(repo, 'v1', manifest(repo));
  });
  return { tagRepo, repoNames };
}

export function launchChromium(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root (CI and dev machines here) cannot use Chromium's sandbox; /dev/shm is small in containers.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run'],
  });
}
