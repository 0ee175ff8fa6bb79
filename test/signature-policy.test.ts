// The registry's signature policy (config `signatures`), in process with htpasswd auth: signatures made by berth's
// signing library (cosign simple signing, cosign bundle, notation) through the HTTP API as a client would. Enforce:
// unsigned, wrongly signed and tampered images are refused by tag, by digest and on HEAD, with 403 DENIED naming
// the policy; signed ones and the platform images of a signed index pull; signatures and other artifacts stay
// readable; a pusher may read by digest (signing tools), a puller may not; a new signature takes effect at once.
// Audit: allowed, but logged, counted and audited. Config errors name the field.
// With real docker, containerd and cosign: test/signature-policy-peers.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { copy, remoteSource, remoteTarget } from '../client/copy.js';
import { Client } from '../client/remote.js';
import { signatureStore } from '../client/signatures.js';
import { type AuditEvent, createLogger, createRegistry, listen, loadConfig } from '../registry/index.js';
import {
  generateKeyPair,
  publicKeyPem,
  selfSignedCertificatePem,
  signImage,
  type SignOptions,
} from '../signing/index.js';
import { FsDriver } from '../storage/fs.js';
import { MemoryDriver } from '../storage/memory.js';
import { basic, user } from './support/auth-fixtures.js';
import { berth } from './support/builder-fixtures.js';
import { imageManifest, pushBlob, pushManifest, raw, sha256 } from './support/registry-client.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

async function start(t: TestContext, signatures: Record<string, unknown>) {
  const events: AuditEvent[] = [];
  const lines: string[] = [];
  const config = loadConfig({
    env: {},
    flags: {
      auth: {
        mode: 'htpasswd',
        users: [user('alice'), user('bob')],
        acl: [
          { repositories: ['**'], subjects: ['user:alice'], actions: ['pull', 'push', 'delete'] },
          { repositories: ['**'], subjects: ['user:bob'], actions: ['pull'] },
        ],
      },
      log: { level: 'warn', requests: false },
      signatures,
    },
  });
  const registry = createRegistry(
    config,
    new MemoryDriver(),
    createLogger('warn', false, (l) => lines.push(l)),
    {
      auditLog: { record: (e) => events.push(e), close: async () => {} },
    },
  );
  const server = await listen(registry.app, '127.0.0.1:0');
  t.after(() => server.close(1000));
  const host = new URL(server.url).host;
  const alice = new Client({ credentials: { get: async () => ({ username: 'alice', password: 'alice-pw' }) } });
  return { url: server.url, host, registry, events, lines, alice };
}

const AS = { alice: { authorization: basic('alice') }, bob: { authorization: basic('bob') } };

/** Pushes (as alice) an image with one tar layer; returns its descriptor. */
async function pushImage(url: string, name: string, tag: string, arch = 'amd64') {
  const put = (n: string, ref: string, body: Buffer, type = OCI_MANIFEST) =>
    raw(url, 'PUT', `/v2/${n}/manifests/${ref}`, {
      body,
      headers: { ...AS.alice, 'content-type': type, 'content-length': String(body.length) },
    });
  const blob = async (data: Buffer) => {
    const digest = sha256(data);
    const res = await raw(url, 'POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, {
      body: data,
      headers: { ...AS.alice, 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
    });
    assert.equal(res.status, 201, res.body.toString());
    return { digest, size: data.length };
  };
  const layer = await blob(randomBytes(256));
  const config = await blob(
    Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [] } })),
  );
  const body = imageManifest(config, [layer]);
  const res = await put(name, tag, body);
  assert.equal(res.status, 201, res.body.toString());
  return { mediaType: OCI_MANIFEST, digest: sha256(body), size: body.length, put };
}

async function pushIndex(url: string, name: string, tag: string) {
  const a = await pushImage(url, name, `${tag}-amd64`, 'amd64');
  const b = await pushImage(url, name, `${tag}-arm64`, 'arm64');
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: a.digest, size: a.size, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: OCI_MANIFEST, digest: b.digest, size: b.size, platform: { os: 'linux', architecture: 'arm64' } },
      ],
    }),
  );
  const res = await a.put(name, tag, body, OCI_INDEX);
  assert.equal(res.status, 201, res.body.toString());
  return { index: { mediaType: OCI_INDEX, digest: sha256(body), size: body.length }, children: [a.digest, b.digest] };
}

function get(url: string, name: string, ref: string, who: keyof typeof AS = 'bob', method = 'GET') {
  return raw(url, method, `/v2/${name}/manifests/${ref}`, {
    headers: { ...AS[who], accept: `${OCI_MANIFEST}, ${OCI_INDEX}` },
  });
}

async function sign(
  alice: Client,
  host: string,
  name: string,
  subject: { mediaType: string; digest: string; size: number },
  o: SignOptions,
) {
  const repo = alice.repository(`${host}/${name}`, { push: true });
  return signImage(signatureStore(repo), subject as never, { dockerReference: `${host}/${name}`, ...o });
}

test('signature policy, enforce: cosign, bundle and notation signatures; pushers read by digest', async (t) => {
  const dir = await mkdtemp('/tmp/berth-sigpol-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const trusted = generateKeyPair();
  const untrusted = generateKeyPair();
  const notary = generateKeyPair();
  const cert = selfSignedCertificatePem(notary, { subject: 'O=berth,CN=berth-test' });
  await writeFile(join(dir, 'cosign.pub'), publicKeyPem(trusted.publicKey));
  await writeFile(join(dir, 'notary.crt'), cert);
  const reg = await start(t, {
    policies: [
      { name: 'prod-signed', repositories: ['prod/**'], mode: 'enforce', keys: [join(dir, 'cosign.pub')] },
      { name: 'notary', repositories: ['notary/**'], mode: 'enforce', certificates: [join(dir, 'notary.crt')] },
    ],
  });
  const { url, host, alice } = reg;

  await t.test('unsigned: refused by tag, by digest and on HEAD, naming the policy', async () => {
    const img = await pushImage(url, 'prod/app', 'v1');
    const byTag = await get(url, 'prod/app', 'v1');
    assert.equal(byTag.status, 403);
    const err = byTag.json().errors[0];
    assert.equal(err.code, 'DENIED');
    assert.match(err.message, /signature policy "prod-signed"/);
    assert.match(err.message, /no signature/);
    const byDigest = await get(url, 'prod/app', img.digest);
    assert.equal(byDigest.status, 403);
    const head = await get(url, 'prod/app', 'v1', 'bob', 'HEAD');
    assert.equal(head.status, 403);
    // Repositories outside every policy are not affected.
    await pushImage(url, 'dev/app', 'v1');
    assert.equal((await get(url, 'dev/app', 'v1')).status, 200);
  });

  await t.test('a pusher reads by digest (what signing tools do), not by tag', async () => {
    const img = await pushImage(url, 'prod/tool', 'v1');
    assert.equal((await get(url, 'prod/tool', img.digest, 'alice')).status, 200);
    assert.equal((await get(url, 'prod/tool', img.digest, 'alice', 'HEAD')).status, 200);
    assert.equal((await get(url, 'prod/tool', 'v1', 'alice')).status, 403);
  });

  await t.test(
    'a pusher copies an unsigned image over an unsigned tag (berth copy): the refused HEAD is no error',
    async () => {
      const img = await pushImage(url, 'prod/copy', 'v1');
      const repo = alice.repository(`${host}/prod/copy`, { push: true });
      for (let i = 0; i < 2; i++) {
        const r = await copy(remoteSource(repo), img.digest, remoteTarget(repo), 'again');
        assert.equal(r.digest, img.digest);
      }
      assert.equal((await get(url, 'prod/copy', 'again')).status, 403);
    },
  );

  await t.test(
    'signed with the trusted key (cosign simple signing): pulls; the signature takes effect at once',
    async () => {
      const img = await pushImage(url, 'prod/app', 'v2');
      assert.equal((await get(url, 'prod/app', 'v2')).status, 403, 'cached as unsigned first');
      await sign(alice, host, 'prod/app', img, { format: 'cosign', privateKey: trusted.privateKey });
      const ok = await get(url, 'prod/app', 'v2');
      assert.equal(ok.status, 200, ok.body.toString());
      assert.equal((await get(url, 'prod/app', img.digest)).status, 200);
      // The signature itself is readable by anyone who may pull (cosign verify reads it by tag).
      const sig = await get(url, 'prod/app', `sha256-${img.digest.slice(7)}.sig`);
      assert.equal(sig.status, 200);
    },
  );

  await t.test('signed with the trusted key as a sigstore bundle referrer: pulls', async () => {
    const img = await pushImage(url, 'prod/bundle', 'v1');
    await sign(alice, host, 'prod/bundle', img, { format: 'cosign-bundle', privateKey: trusted.privateKey });
    assert.equal((await get(url, 'prod/bundle', 'v1')).status, 200);
  });

  await t.test('signed with another key: refused as invalid', async () => {
    const img = await pushImage(url, 'prod/other', 'v1');
    await sign(alice, host, 'prod/other', img, { format: 'cosign', privateKey: untrusted.privateKey });
    const res = await get(url, 'prod/other', 'v1');
    assert.equal(res.status, 403);
    assert.match(res.json().errors[0].message, /does not match any trusted key/);
    assert.equal(res.json().errors[0].detail.result, 'invalid');
  });

  await t.test("a signature copied onto another image's tag does not sign it", async () => {
    const signed = await pushImage(url, 'prod/swap', 'good');
    const r = await sign(alice, host, 'prod/swap', signed, { format: 'cosign', privateKey: trusted.privateKey });
    const other = await pushImage(url, 'prod/swap', 'bad');
    // Put the good image's signature manifest under the other image's .sig tag.
    const sigManifest = await get(url, 'prod/swap', r.manifest, 'alice');
    const moved = await pushManifest(url, 'prod/swap', `sha256-${other.digest.slice(7)}.sig`, sigManifest.body);
    assert.equal(moved.status, 401, 'anonymous cannot push');
    const res = await raw(url, 'PUT', `/v2/prod/swap/manifests/sha256-${other.digest.slice(7)}.sig`, {
      body: sigManifest.body,
      headers: { ...AS.alice, 'content-type': OCI_MANIFEST, 'content-length': String(sigManifest.body.length) },
    });
    assert.equal(res.status, 201);
    const pulled = await get(url, 'prod/swap', 'bad');
    assert.equal(pulled.status, 403);
    assert.match(pulled.json().errors[0].message, /signs sha256:/);
    assert.equal((await get(url, 'prod/swap', 'good')).status, 200);
  });

  await t.test("a signed index: the index and its platforms' manifests by digest pull", async () => {
    const { index, children } = await pushIndex(url, 'prod/multi', 'v1');
    assert.equal((await get(url, 'prod/multi', children[0])).status, 403);
    await sign(alice, host, 'prod/multi', index, { format: 'cosign', privateKey: trusted.privateKey });
    assert.equal((await get(url, 'prod/multi', 'v1')).status, 200);
    for (const child of children) assert.equal((await get(url, 'prod/multi', child)).status, 200);
  });

  await t.test(
    'notation: a signature chaining to the trusted certificate pulls; cosign keys do not count there',
    async () => {
      const img = await pushImage(url, 'notary/app', 'v1');
      await sign(alice, host, 'notary/app', img, { format: 'cosign', privateKey: trusted.privateKey });
      assert.equal((await get(url, 'notary/app', 'v1')).status, 403);
      await sign(alice, host, 'notary/app', img, {
        format: 'notation',
        privateKey: notary.privateKey,
        certificates: [new (await import('node:crypto')).X509Certificate(cert)],
      });
      const res = await get(url, 'notary/app', 'v1');
      assert.equal(res.status, 200, res.body.toString());
      // The notation signature (a referrer) is readable by a puller.
      const list = await raw(url, 'GET', `/v2/notary/app/referrers/${img.digest}`, { headers: AS.bob });
      const sig = list.json().manifests[0];
      assert.equal((await get(url, 'notary/app', sig.digest)).status, 200);
    },
  );

  await t.test('refusals are audited and counted', async () => {
    const denied = reg.events.filter((e) => e.event === 'signature.policy');
    assert.ok(denied.length >= 3);
    assert.ok(denied.every((e) => e.outcome === 'denied' && e.name && e.digest && e.repository));
    assert.equal(denied[0].actor, 'bob');
    const stats = reg.registry.signatures!.stats().policies['prod-signed'];
    assert.ok(
      stats.checks.unsigned >= 3 && stats.checks.invalid >= 1 && stats.checks.verified >= 3,
      JSON.stringify(stats),
    );
    const metrics = await reg.registry.metrics!.render();
    assert.match(
      metrics.body,
      /berth_signature_checks_total\{policy="prod-signed",mode="enforce",result="unsigned"\} \d+/,
    );
  });
});

test('signature policy, audit: unsigned pulls go through, logged, audited and counted', async (t) => {
  const key = generateKeyPair();
  const reg = await start(t, {
    policies: [{ name: 'watch', repositories: ['**'], mode: 'audit', keys: [publicKeyPem(key.publicKey)] }],
  });
  await pushImage(reg.url, 'any/app', 'v1');
  assert.equal((await get(reg.url, 'any/app', 'v1')).status, 200);
  const e = reg.events.find((x) => x.event === 'signature.policy');
  assert.equal(e?.outcome, 'failure');
  assert.equal(e?.name, 'watch');
  assert.ok(reg.lines.some((l) => /would refuse an unverified image/.test(l) && /"policy":"watch"/.test(l)));
  assert.equal(reg.registry.signatures!.stats().policies.watch.checks.unsigned, 1);
});

test('signature policy config: unreadable keys and missing trust material are named', async () => {
  const make = (signatures: unknown) => () =>
    createRegistry(loadConfig({ env: {}, flags: { signatures } }), new MemoryDriver(), createLogger('silent', false));
  assert.throws(
    make({ policies: [{ name: 'p', repositories: ['**'], mode: 'enforce', keys: ['/nonexistent/cosign.pub'] }] }),
    /signatures\.policies\[0\] \(p\)\.keys\[0\]: cannot read \/nonexistent\/cosign\.pub/,
  );
  assert.throws(
    make({
      policies: [{ name: 'p', repositories: ['**'], mode: 'enforce', keys: ['-----BEGIN PUBLIC KEY-----\nxx'] }],
    }),
    /signatures\.policies\[0\] \(p\)\.keys\[0\] is not a PEM public key/,
  );
  assert.throws(
    () =>
      loadConfig({
        env: {},
        flags: { signatures: { policies: [{ name: 'p', repositories: ['**'], mode: 'enforce' }] } },
      }),
    /signatures/,
  );
  assert.throws(
    () =>
      loadConfig({
        env: {},
        flags: { signatures: { policies: [{ name: 'p', repositories: ['**'], mode: 'block', keys: ['k'] }] } },
      }),
    /mode/,
  );
  // `berth config check` reads the trust material too, as serve would.
  const dir = await mkdtemp('/tmp/berth-sigpol-check-');
  const file = join(dir, 'berth.yaml');
  await writeFile(
    file,
    'signatures:\n  policies:\n    - { name: p, repositories: ["**"], mode: audit, keys: [/nonexistent.pub] }\n',
  );
  const r = await berth(['config', 'check', '--config', file]);
  await rm(dir, { recursive: true, force: true });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /signatures\.policies\[0\] \(p\)\.keys\[0\]: cannot read \/nonexistent\.pub/);
});

test('signature policy on a mirror: the upstream signatures are fetched through the cache', async (t) => {
  const key = generateKeyPair();
  const plain = async (flags: Record<string, unknown>, fs = false) => {
    const root = await mkdtemp('/tmp/berth-sigpol-mirror-');
    const driver = fs ? new FsDriver({ root, fsync: false }) : new MemoryDriver();
    const registry = createRegistry(loadConfig({ env: {}, flags }), driver, createLogger('silent', false));
    const server = await listen(registry.app, '127.0.0.1:0');
    t.after(async () => {
      registry.proxy?.close();
      await server.close(1000);
      await rm(root, { recursive: true, force: true });
    });
    return server.url;
  };
  const upstream = await plain({});
  const mirror = await plain(
    {
      proxy: { upstreams: [{ name: 'up', url: upstream, prefix: 'up', tagTtl: '0s', allowPrivateNetworks: true }] },
      signatures: {
        policies: [
          { name: 'upstream-signed', repositories: ['up/**'], mode: 'enforce', keys: [publicKeyPem(key.publicKey)] },
        ],
      },
    },
    true,
  );
  const upHost = new URL(upstream).host;
  const client = new Client({ credentials: { get: async () => undefined } });
  const push = async (tag: string) => {
    const layer = await pushBlob(upstream, 'team/app', randomBytes(128));
    const configJson = JSON.stringify({ architecture: 'amd64', os: 'linux', n: tag });
    const config = await pushBlob(upstream, 'team/app', configJson);
    const body = imageManifest({ digest: config, size: configJson.length }, [{ digest: layer, size: 128 }]);
    assert.equal((await pushManifest(upstream, 'team/app', tag, body)).status, 201);
    return { mediaType: OCI_MANIFEST, digest: sha256(body), size: body.length };
  };
  const signed = await push('signed');
  await push('unsigned');
  await sign(client, upHost, 'team/app', signed, { format: 'cosign', privateKey: key.privateKey });
  const viaMirror = (ref: string) => raw(mirror, 'GET', `/v2/up/team/app/manifests/${ref}`);
  const ok = await viaMirror('signed');
  assert.equal(ok.status, 200, ok.body.toString());
  const refused = await viaMirror('unsigned');
  assert.equal(refused.status, 403);
  assert.match(refused.json().errors[0].message, /signature policy "upstream-signed"/);
});

test('signature policy: signatures brought by berth copy --referrers and by push replication count', async (t) => {
  const key = generateKeyPair();
  const reg = await start(t, {
    policies: [
      { name: 'prod-signed', repositories: ['prod/**'], mode: 'enforce', keys: [publicKeyPem(key.publicKey)] },
    ],
  });
  // The source: another registry (no policy) that signs there and replicates prod/** to the enforcing one as alice.
  const source = createRegistry(
    loadConfig({
      env: {},
      flags: {
        log: { level: 'warn', requests: false },
        replication: [
          {
            name: 'to-enforced',
            url: reg.url,
            username: 'alice',
            password: 'alice-pw',
            allowPrivateNetworks: true,
            repositories: ['prod/**'],
            backoff: '100ms',
            maxBackoff: '500ms',
          },
        ],
      },
    }),
    new MemoryDriver(),
    createLogger('silent', false),
  );
  const srcServer = await listen(source.app, '127.0.0.1:0');
  await source.start();
  t.after(async () => {
    await source.stop();
    await srcServer.close(1000);
  });
  const srcUrl = srcServer.url;
  const srcHost = new URL(srcUrl).host;
  const anon = new Client({ credentials: { get: async () => undefined } });

  await t.test('berth copy --referrers: cosign simple signing and bundle referrer both count at once', async () => {
    const simple = await pushImage(srcUrl, 'copy/simple', 'v1');
    const bundled = await pushImage(srcUrl, 'copy/bundled', 'v1');
    await pushImage(srcUrl, 'copy/unsigned', 'v1');
    await sign(anon, srcHost, 'copy/simple', simple, { format: 'cosign', privateKey: key.privateKey });
    await sign(anon, srcHost, 'copy/bundled', bundled, { format: 'cosign-bundle', privateKey: key.privateKey });
    for (const [from, to] of [
      ['copy/simple', 'prod/copied-simple'],
      ['copy/bundled', 'prod/copied-bundle'],
      ['copy/unsigned', 'prod/copied-unsigned'],
    ]) {
      const src = anon.repository(`${srcHost}/${from}`);
      const dst = reg.alice.repository(`${reg.host}/${to}`, { push: true });
      const r = await copy(remoteSource(src), 'v1', remoteTarget(dst), 'v1', { referrers: true });
      assert.equal(r.referrers, from === 'copy/unsigned' ? 0 : 1, `${from}: signatures copied`);
    }
    const simplePull = await get(reg.url, 'prod/copied-simple', 'v1');
    assert.equal(simplePull.status, 200, simplePull.body.toString());
    assert.equal((await get(reg.url, 'prod/copied-bundle', 'v1')).status, 200);
    assert.equal((await get(reg.url, 'prod/copied-bundle', bundled.digest)).status, 200);
    // Control: the same copy of an unsigned image is refused, so the copied signatures are what let the others in.
    const refused = await get(reg.url, 'prod/copied-unsigned', 'v1');
    assert.equal(refused.status, 403);
    assert.equal(refused.json().errors[0].detail.result, 'unsigned');
  });

  await t.test('push replication: the replicated signature lets the replicated image pull', async () => {
    const signed = await pushImage(srcUrl, 'prod/replicated', 'v1');
    const bundled = await pushImage(srcUrl, 'prod/replicated', 'v2');
    await pushImage(srcUrl, 'prod/replicated', 'unsigned');
    await sign(anon, srcHost, 'prod/replicated', signed, { format: 'cosign', privateKey: key.privateKey });
    await sign(anon, srcHost, 'prod/replicated', bundled, { format: 'cosign-bundle', privateKey: key.privateKey });
    const deadline = Date.now() + 30_000;
    const status = async (ref: string) => (await get(reg.url, 'prod/replicated', ref)).status;
    while ((await status('v1')) !== 200 || (await status('v2')) !== 200) {
      assert.ok(Date.now() < deadline, 'the replicated signed images never became pullable');
      await new Promise((r) => setTimeout(r, 200));
    }
    // The unsigned image arrived too (its owner, alice, reads it by digest), and is refused to pullers.
    const tags = await raw(reg.url, 'GET', '/v2/prod/replicated/tags/list', { headers: AS.bob });
    assert.ok(tags.json().tags.includes('unsigned'), JSON.stringify(tags.json()));
    assert.equal(await status('unsigned'), 403);
  });
});

test('signature policy: verdicts are cached by digest for cacheTtl (a removed signature passes until it expires)', async (t) => {
  const key = generateKeyPair();
  const reg = await start(t, {
    cacheTtl: '2s',
    policies: [{ name: 'cached', repositories: ['prod/**'], mode: 'enforce', keys: [publicKeyPem(key.publicKey)] }],
  });
  const img = await pushImage(reg.url, 'prod/cache', 'v1');
  const signed = await sign(reg.alice, reg.host, 'prod/cache', img, { format: 'cosign', privateKey: key.privateKey });
  assert.equal((await get(reg.url, 'prod/cache', 'v1')).status, 200);
  const checks = () => reg.registry.signatures!.stats().policies.cached.checks.verified;
  const before = checks();
  // The signature goes away; the verdict for this digest is reused, by tag and by digest, until cacheTtl is over.
  const del = await raw(reg.url, 'DELETE', `/v2/prod/cache/manifests/${signed.manifest}`, { headers: AS.alice });
  assert.equal(del.status, 202, del.body.toString());
  assert.equal((await get(reg.url, 'prod/cache', 'v1')).status, 200, 'served from the cached verdict');
  assert.equal((await get(reg.url, 'prod/cache', img.digest)).status, 200);
  assert.equal(checks(), before + 2, 'each pull counts, as a cache hit');
  await new Promise((r) => setTimeout(r, 2_300));
  const after = await get(reg.url, 'prod/cache', 'v1');
  assert.equal(after.status, 403, 'verified again once the cached verdict expired');
  assert.equal(after.json().errors[0].detail.result, 'unsigned');
});
