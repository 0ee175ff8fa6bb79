// client/ under hostile conditions: a node:http proxy in front of distribution 2.8.2 that requires Bearer tokens
// (its own token endpoint, GET and OAuth2 POST), answers 429 with Retry-After, 500s twice, drops connections in
// the middle of a blob, and redirects blobs with 307 to another origin that must never see Authorization.
// Every copy must still complete with the same digests as the source.
import assert from 'node:assert/strict';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { copy, remoteSource, remoteTarget } from '../client/copy.js';
import { staticCredentials } from '../client/credentials.js';
import { OciLayout } from '../client/layout.js';
import { Client } from '../client/remote.js';
import { digestOf } from '../spec/digest.js';
import { startBerth } from './support/berth.js';
import { startDistribution, type Distribution } from './support/distribution.js';
import { makeMultiArchLayout } from './support/oci-layouts.js';
import { missingPeerFiles } from './support/peers.js';

type Hook = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

interface Proxy {
  host: string;
  server: Server;
  log: { method: string; url: string; auth?: string; range?: string }[];
  hook?: Hook;
}

function listen(server: Server): Promise<number> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as any).port)));
}

function forward(upstream: string, req: IncomingMessage, res: ServerResponse): void {
  const u = new URL(req.url!, upstream);
  const headers = { ...req.headers, host: u.host };
  delete headers.authorization;
  const up = httpRequest(u, { method: req.method, headers }, (ur) => {
    const h = { ...ur.headers };
    // Keep upload Locations pointing at the proxy, not distribution.
    if (h.location) h.location = h.location.replace(upstream, '');
    res.writeHead(ur.statusCode!, h);
    ur.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
}

async function startProxy(upstream: string): Promise<Proxy> {
  const p: Proxy = { host: '', server: createServer(), log: [] };
  p.server.on('request', async (req, res) => {
    p.log.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, range: req.headers.range });
    if (p.hook && (await p.hook(req, res))) return;
    forward(upstream, req, res);
  });
  p.host = `127.0.0.1:${await listen(p.server)}`;
  return p;
}

function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}

let dist: Distribution | undefined;
let work: string;
let index: string; // the multi-arch index digest seeded as src/img:v1
const skipReason = missingPeerFiles('distribution').length
  ? 'distribution (docker-registry) is not installed'
  : undefined;

before(async () => {
  if (skipReason) {
    if (process.env.CI === 'true') throw new Error(skipReason);
    return;
  }
  dist = await startDistribution();
  work = await mkdtemp(join(tmpdir(), 'berth-faults-'));
  const li = await makeMultiArchLayout(join(work, 'layout'));
  index = li.index.digest;
  const c = new Client();
  await copy(
    await OciLayout.open(li.dir),
    'latest',
    remoteTarget(c.repository(`${dist.host}/src/img`, { push: true })),
    'v1',
  );
});
after(async () => {
  await dist?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const fast = { backoffMs: 20 };

async function copyThrough(proxy: Proxy, dstName: string, client = new Client(fast)) {
  const src = client.repository(`${proxy.host}/src/img:v1`);
  const dst = new Client(fast).repository(`${dist!.host}/${dstName}`, { push: true });
  const r = await copy(remoteSource(src), 'v1', remoteTarget(dst), 'v1');
  assert.equal(r.digest, index, 'the copied index has the source digest');
  // Re-read from the destination: identical bytes all the way down.
  const back = await new Client().repository(`${dist!.host}/${dstName}`).getManifest('v1');
  assert.equal(back.digest, index);
  return r;
}

test('429 with Retry-After and 500 twice: the copy waits, retries and completes', { skip: skipReason }, async () => {
  const proxy = await startProxy(dist!.url);
  const seen = new Map<string, number>();
  let waitedFrom = 0;
  let retriedAfter = 0;
  proxy.hook = (req, res) => {
    const key = `${req.method} ${req.url}`;
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    if (req.url!.includes('/manifests/v1') && n === 1) {
      waitedFrom = Date.now();
      res.writeHead(429, { 'retry-after': '1', 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}');
      return true;
    }
    if (req.url!.includes('/manifests/v1') && n === 2) retriedAfter = Date.now() - waitedFrom;
    if (req.url!.includes('/blobs/') && req.method === 'GET' && n <= 2) {
      res.writeHead(500).end('boom');
      return true;
    }
    return false;
  };
  try {
    await copyThrough(proxy, 'dst/retry');
    assert.ok(retriedAfter >= 900, `Retry-After: 1 honoured (waited ${retriedAfter} ms)`);
    const blobGets = [...seen.entries()].filter(([k]) => k.startsWith('GET') && k.includes('/blobs/'));
    assert.ok(
      blobGets.length >= 2 && blobGets.every(([, n]) => n === 3),
      `each blob GET tried 3 times: ${JSON.stringify(blobGets)}`,
    );
  } finally {
    await stop(proxy.server);
  }
});

test('a connection dropped mid-blob resumes with Range and the digest still verifies', {
  skip: skipReason,
}, async () => {
  const proxy = await startProxy(dist!.url);
  let dropped = 0;
  proxy.hook = (req, res) => {
    if (req.method !== 'GET' || !req.url!.includes('/blobs/') || req.headers.range || dropped >= 1) return false;
    // Forward the real blob but cut the socket after ~100 KiB.
    const u = new URL(req.url!, dist!.url);
    httpRequest(u, (ur) => {
      const size = Number(ur.headers['content-length']);
      if (size < 200_000) {
        res.writeHead(ur.statusCode!, ur.headers);
        ur.pipe(res);
        return;
      }
      dropped++;
      res.writeHead(200, ur.headers);
      let sent = 0;
      ur.on('data', (c: Buffer) => {
        if (sent > 100_000) return;
        res.write(c);
        sent += c.length;
        if (sent > 100_000) {
          ur.destroy();
          res.socket?.destroy();
        }
      });
    }).end();
    return true;
  };
  try {
    await copyThrough(proxy, 'dst/resume');
    assert.equal(dropped, 1);
    const ranged = proxy.log.filter((l) => l.range);
    assert.ok(
      ranged.length >= 1 && /^bytes=\d+-$/.test(ranged[0].range!),
      `resumed with Range: ${JSON.stringify(ranged)}`,
    );
    assert.notEqual(ranged[0].range, 'bytes=0-');
  } finally {
    await stop(proxy.server);
  }
});

/** Adds Docker token auth to the proxy: a Bearer challenge on /v2/ and a token endpoint at /token. */
function withTokenAuth(proxy: Proxy, opts: { post: boolean }) {
  const tokens = { issued: 0, posts: 0, gets: 0, scopes: [] as string[] };
  const realm = `http://${proxy.host}/token`;
  return {
    tokens,
    hook: (async (req, res) => {
      const u = new URL(req.url!, 'http://x');
      if (u.pathname === '/token') {
        let form = new URLSearchParams(u.search);
        if (req.method === 'POST') {
          tokens.posts++;
          if (!opts.post) {
            res.writeHead(404).end();
            return true;
          }
          let body = '';
          for await (const c of req) body += c;
          form = new URLSearchParams(body);
          const ok =
            form.get('grant_type') === 'password' &&
            form.get('username') === 'alice' &&
            form.get('password') === 's3cret';
          if (!ok) {
            res.writeHead(401).end();
            return true;
          }
          tokens.scopes.push(...(form.get('scope') ?? '').split(' '));
        } else {
          tokens.gets++;
          const basic = Buffer.from(`alice:s3cret`).toString('base64');
          if (req.headers.authorization !== `Basic ${basic}`) {
            res.writeHead(401).end();
            return true;
          }
          tokens.scopes.push(...form.getAll('scope'));
        }
        tokens.issued++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ token: `tok-${tokens.issued}`, access_token: `tok-${tokens.issued}`, expires_in: 300 }),
        );
        return true;
      }
      if (!/^Bearer tok-\d+$/.test(req.headers.authorization ?? '')) {
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="${realm}",service="proxy"`,
          'docker-distribution-api-version': 'registry/2.0',
          'content-type': 'application/json',
        });
        res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return true;
      }
      return false;
    }) as Hook,
  };
}

for (const post of [true, false]) {
  test(`Bearer token auth via ${post ? 'OAuth2 POST' : 'GET (POST answers 404: fallback)'}, token reused across requests`, {
    skip: skipReason,
  }, async () => {
    const proxy = await startProxy(dist!.url);
    const auth = withTokenAuth(proxy, { post });
    proxy.hook = auth.hook;
    try {
      const client = new Client({
        ...fast,
        credentials: staticCredentials({ [proxy.host]: { username: 'alice', password: 's3cret' } }),
      });
      await copyThrough(proxy, `dst/auth-${post ? 'post' : 'get'}`, client);
      assert.equal(auth.tokens.issued, 1, 'one token serves the whole pull (cached until expiry)');
      assert.equal(post ? auth.tokens.posts : auth.tokens.gets, 1);
      assert.ok(auth.tokens.scopes.includes('repository:src/img:pull'), JSON.stringify(auth.tokens.scopes));
      const v2 = proxy.log.filter((l) => l.url.startsWith('/v2/src/'));
      assert.ok(
        v2.every((l) => l.auth === 'Bearer tok-1'),
        'every registry request carried the bearer token',
      );
    } finally {
      await stop(proxy.server);
    }
  });
}

test('wrong or missing credentials fail with a message that names berth login', { skip: skipReason }, async () => {
  const proxy = await startProxy(dist!.url);
  proxy.hook = withTokenAuth(proxy, { post: true }).hook;
  try {
    const bad = new Client({
      ...fast,
      credentials: staticCredentials({ [proxy.host]: { username: 'alice', password: 'nope' } }),
    });
    await assert.rejects(bad.repository(`${proxy.host}/src/img`).getManifest('v1'), /refused \(401\).*berth login/);
    const none = new Client({ ...fast, credentials: staticCredentials({}) });
    await assert.rejects(none.repository(`${proxy.host}/src/img`).getManifest('v1'), /berth login/);
  } finally {
    await stop(proxy.server);
  }
});

test('a 307 to another origin (object storage) never receives Authorization', { skip: skipReason }, async () => {
  const proxy = await startProxy(dist!.url);
  const auth = withTokenAuth(proxy, { post: true });
  const storageSeen: (string | undefined)[] = [];
  const storage = createServer((req, res) => {
    storageSeen.push(req.headers.authorization);
    forward(dist!.url, req, res);
  });
  const storagePort = await listen(storage);
  proxy.hook = async (req, res) => {
    if (await auth.hook(req, res)) return true;
    if (req.method === 'GET' && req.url!.includes('/blobs/sha256:')) {
      res.writeHead(307, { location: `http://localhost:${storagePort}${req.url}` }).end();
      return true;
    }
    return false;
  };
  try {
    const client = new Client({
      ...fast,
      credentials: staticCredentials({ [proxy.host]: { username: 'alice', password: 's3cret' } }),
    });
    await copyThrough(proxy, 'dst/redirect', client);
    assert.ok(storageSeen.length >= 2, 'blobs were fetched from the storage origin');
    assert.deepEqual(
      storageSeen.filter((a) => a !== undefined),
      [],
      'no Authorization reached the other host',
    );
  } finally {
    await stop(proxy.server);
    await stop(storage);
  }
});

/**
 * A proxy in front of `upstream` that lets the `nth` PATCH deliver `cutAt` bytes, then drops both connections
 * (the registry may keep what arrived, or drop the session), so the client must ask where the session stands.
 */
function cutPatch(proxy: Proxy, upstream: string, nth: number, cutAt: number) {
  const state = { patches: 0, cut: 0 };
  proxy.hook = (req, res) => {
    if (req.method !== 'PATCH' || ++state.patches !== nth) return false;
    state.cut++;
    const u = new URL(req.url!, upstream);
    const up = httpRequest(u, { method: 'PATCH', headers: { ...req.headers, host: u.host } });
    up.on('error', () => {});
    up.on('response', (r) => r.resume());
    let sent = 0;
    req.on('data', (c: Buffer) => {
      if (sent >= cutAt) return;
      up.write(c);
      sent += c.length;
      if (sent >= cutAt) {
        // Give the registry a moment to store what it got, then fail the upload on both sides.
        setTimeout(() => {
          up.destroy();
          res.socket?.destroy();
        }, 300);
      }
    });
    return true;
  };
  return state;
}

const MiB = 1 << 20;
for (const peer of ['distribution', 'berth'] as const) {
  for (const mode of ['chunked', 'streamed'] as const) {
    // Chunked: two 4 MiB chunks are committed when the third is cut; berth keeps the session, so the upload goes
    // on at 8 MiB. Streamed: berth drops the failed PATCH's bytes (reports 0): start over on the same session.
    // distribution 2.8.2 cancels a session whose PATCH failed (404): start over with a new one.
    const resumes = mode === 'chunked' && peer === 'berth';
    const expected = resumes ? `continues at 8 MiB` : 'starts over';
    test(`an upload cut mid-PATCH (${mode}) against ${peer}: asks the session, ${expected}, digest intact`, {
      skip: skipReason,
    }, async () => {
      const registry = peer === 'berth' ? await startBerth(undefined) : undefined;
      const upstream = registry?.url ?? dist!.url;
      const proxy = await startProxy(upstream);
      const state = mode === 'chunked' ? cutPatch(proxy, upstream, 3, 2 * MiB) : cutPatch(proxy, upstream, 1, 4 * MiB);
      try {
        const blob = randomBytes(20 * MiB); // above the monolithic limit
        const digest = digestOf(blob);
        const opened: number[] = [];
        let progress = 0;
        const client = new Client({ ...fast, chunkSize: mode === 'chunked' ? 4 * MiB : undefined });
        const repo = client.repository(`${proxy.host}/dst/resume-${mode}`, { push: true });
        const source = (offset: number) => {
          opened.push(offset);
          return Readable.from([blob.subarray(offset, offset + MiB), blob.subarray(offset + MiB)]);
        };
        assert.equal(
          await repo.pushBlob({ digest, size: blob.length }, source, { onBytes: (n) => (progress += n) }),
          'uploaded',
        );
        assert.equal(state.cut, 1);
        assert.ok(
          proxy.log.some((l) => l.method === 'GET' && l.url.includes('/blobs/uploads/')),
          'asked the session for its offset',
        );
        const posts = proxy.log.filter((l) => l.method === 'POST').length;
        if (resumes) {
          assert.deepEqual(
            opened,
            [0, 4 * MiB, 8 * MiB, 8 * MiB, 12 * MiB, 16 * MiB],
            'resumed at the registry offset, not from zero',
          );
          assert.equal(posts, 1, 'the same session went on');
        } else {
          assert.equal(opened.filter((o) => o === 0).length, 2, `started over: ${opened}`);
          assert.equal(posts, peer === 'distribution' ? 2 : 1);
        }
        assert.equal(progress, blob.length, 'progress rewound to the resume offset');
        const back = await new Client()
          .repository(`${upstream.replace('http://', '')}/dst/resume-${mode}`)
          .getBlobBytes({ digest, size: blob.length }, 32 * MiB);
        assert.ok(back.equals(blob));
      } finally {
        await stop(proxy.server);
        await registry?.stop();
      }
    });
  }
}

test('a source that sends different bytes: the registry refuses them and the error names the source', {
  skip: skipReason,
}, async () => {
  const proxy = await startProxy(dist!.url);
  proxy.hook = (req, res) => {
    if (req.method !== 'GET' || !req.url!.includes('/blobs/sha256:')) return false;
    httpRequest(new URL(req.url!, dist!.url), (ur) => {
      res.writeHead(ur.statusCode!, ur.headers);
      let first = true;
      ur.on('data', (c: Buffer) => {
        if (first) c = Buffer.concat([Buffer.from([c[0] ^ 0xff]), c.subarray(1)]);
        first = false;
        res.write(c);
      });
      ur.on('end', () => res.end());
    }).end();
    return true;
  };
  try {
    const src = new Client(fast).repository(`${proxy.host}/src/img:v1`);
    const dst = new Client(fast).repository(`${dist!.host}/dst/corrupt`, { push: true });
    await assert.rejects(
      copy(remoteSource(src), 'v1', remoteTarget(dst), 'v1'),
      /do not match that digest; the source is corrupt/,
    );
    assert.equal(await dst.headManifest('v1'), undefined);
  } finally {
    await stop(proxy.server);
  }
});
