// Signatures with the real tools, both directions, on a berth registry over plain HTTP:
//  - berth signs (cosign simple signing, cosign bundle, notation JWS) → cosign v2, cosign v3 and notation verify;
//  - cosign v2/v3 and notation sign → `berth verify` succeeds;
//  - a tampered payload (a signature rewritten to claim another image), a wrong key and an unsigned image are
//    refused by every verifier.
// Keys cross too: cosign signs with a key `berth key generate` encrypted, berth signs with one cosign generated.
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '../client/remote.js';
import { signatureStore } from '../client/signatures.js';
import { signatureTag } from '../signing/index.js';
import { digestOf, type Digest } from '../spec/digest.js';
import type { ImageManifest } from '../spec/manifest.js';
import { startBerth, type Berth } from './support/berth.js';
import { startDistribution } from './support/distribution.js';
import { ok, requirePeer, run, type RunResult } from './support/peers.js';
import { imageManifest } from './support/registry-client.js';

const BIN = fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const PASSWORD = 'correct horse';

let reg: Berth;
let dir: string;
/** HOME for cosign and XDG_CONFIG_HOME for notation: nothing read from or written to the real user's config. */
let env: Record<string, string>;
/** notation's config dir (trust store, trust policy, its own test keys). */
let notationDir: string;

before(async () => {
  reg = await startBerth(undefined);
  dir = await mkdtemp(join(tmpdir(), 'berth-sign-'));
  env = { HOME: dir, XDG_CONFIG_HOME: join(dir, 'xdg'), COSIGN_PASSWORD: PASSWORD, SIGSTORE_NO_CACHE: 'true' };
  // berth's key pairs: the signer's (encrypted, as cosign writes them, with a certificate) and a stranger's.
  ok(
    await berth([
      'key',
      'generate',
      '-o',
      join(dir, 'berth'),
      '--cert',
      '--subject',
      'C=US,ST=WA,O=berth,CN=berth signer',
    ]),
  );
  ok(await berth(['key', 'generate', '-o', join(dir, 'other'), '--plain', '--cert', '--subject', 'someone else']));
  // A strict trust policy whose only trust store holds berth's certificate.
  notationDir = join(dir, 'xdg', 'notation');
  await mkdir(join(notationDir, 'truststore', 'x509', 'ca', 'berth'), { recursive: true });
  await writeFile(
    join(notationDir, 'truststore', 'x509', 'ca', 'berth', 'berth.crt'),
    await readFile(join(dir, 'berth.crt')),
  );
  await writeFile(
    join(notationDir, 'trustpolicy.json'),
    JSON.stringify({
      version: '1.0',
      trustPolicies: [
        {
          name: 'berth',
          registryScopes: ['*'],
          signatureVerification: { level: 'strict' },
          trustStores: ['ca:berth'],
          trustedIdentities: ['x509.subject: C=US, ST=WA, O=berth, CN=berth signer'],
        },
        {
          // A CA-issued signer (the "notation with a certificate chain" test): only its root is trusted.
          name: 'pki',
          registryScopes: [`${reg.host}/sign/pki`],
          signatureVerification: { level: 'strict' },
          trustStores: ['ca:pki'],
          trustedIdentities: ['*'],
        },
      ],
    }),
  );
  // An empty sigstore trusted root: cosign v3 verifies key-based bundles offline against it.
  await writeFile(
    join(dir, 'trusted_root.json'),
    JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1' }),
  );
});
after(async () => {
  await reg?.stop();
  await rm(reg.root, { recursive: true, force: true });
  await rm(dir, { recursive: true, force: true });
});

function berth(args: string[], extra: Record<string, string> = {}): Promise<RunResult> {
  return run(process.execPath, [BIN, ...args], { env: { ...env, ...extra } });
}

const tool = (name: string, args: string[]) => run(name, args, { env, timeoutMs: 120_000 });

/** A small distinct image pushed to `repo:tag`; returns `host/repo@digest`. */
async function image(repo: string, tag: string, on: { host: string } = reg): Promise<{ ref: string; digest: Digest }> {
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, tag });
  const r = new Client({ insecure: true }).repository(`${on.host}/${repo}`, { push: true });
  const cfg = await r.pushBytes(Buffer.from(config));
  const manifest = imageManifest({ digest: cfg.digest, size: cfg.size }, []);
  const { digest } = await r.putManifest(tag, manifest, 'application/vnd.oci.image.manifest.v1+json');
  return { ref: `${on.host}/${repo}@${digest}`, digest };
}

function repo(t: TestContext): string {
  return `sign/${t.name
    .replace(/[^a-z0-9]+/gi, '-')
    .toLowerCase()
    .replace(/^-|-$/g, '')}`;
}

/** A verifier said no — for the reason expected, not because of some other error. */
function _refused(r: RunResult, why: RegExp): void {
  assert.notEqual(r.code, 0, `${r.command} accepted it:\n${r.stdout}`);
  assert.match(r.stderr, why, r.command);
}

/** berth verify's JSON result and exit code. */
async function berthVerify(ref: string, trust: string[]): Promise<{ code: number; result: any }> {
  const r = await berth(['verify', ref, ...trust, '--json']);
  assert.ok(r.code === 0 || r.code === 7, `${r.command}: ${r.code}\n${r.stderr}`);
  return { code: r.code, result: JSON.parse(r.stdout) };
}

/**
 * The tampering a registry-side attacker can do: copy the signature artifacts of `from` onto `to`, with the signed
 * payload rewritten to name `to` (the signature bytes untouched).
 */
async function forge(repoName: string, from: Digest, to: Digest, format: 'cosign' | 'bundle' | 'notation') {
  const repo = new Client({ insecure: true }).repository(`${reg.host}/${repoName}`, { push: true });
  const store = signatureStore(repo);
  const swap = (s: string) => s.replaceAll(from, to).replaceAll(from.slice(7), to.slice(7));
  if (format === 'cosign') {
    const m = (await store.manifest(signatureTag(from)))!;
    const doc = JSON.parse(m.bytes.toString()) as ImageManifest;
    for (const l of doc.layers) {
      const payload = Buffer.from(swap((await store.blob(l, 1 << 20)).toString()));
      Object.assign(l, await store.putBlob(payload));
    }
    await store.putManifest(signatureTag(to), Buffer.from(JSON.stringify(doc)), m.mediaType);
    return;
  }
  const artifactType =
    format === 'bundle' ? 'application/vnd.dev.sigstore.bundle.v0.3+json' : 'application/vnd.cncf.notary.signature';
  for (const d of await store.referrers(from, artifactType)) {
    const m = (await store.manifest(d.digest))!;
    const doc = JSON.parse(m.bytes.toString()) as ImageManifest;
    const layer = doc.layers[0];
    const text = (await store.blob(layer, 1 << 20)).toString();
    let forged: string;
    if (format === 'bundle') {
      const b = JSON.parse(text);
      b.dsseEnvelope.payload = Buffer.from(swap(Buffer.from(b.dsseEnvelope.payload, 'base64').toString())).toString(
        'base64',
      );
      forged = JSON.stringify(b);
    } else {
      const j = JSON.parse(text);
      j.payload = Buffer.from(swap(Buffer.from(j.payload, 'base64url').toString())).toString('base64url');
      forged = JSON.stringify(j);
    }
    Object.assign(layer, await store.putBlob(Buffer.from(forged)));
    const head = (await repo.headManifest(to))!;
    doc.subject = { mediaType: head.mediaType, digest: to, size: head.size };
    const bytes = Buffer.from(JSON.stringify(doc));
    await store.putManifest(digestOf(bytes), bytes, m.mediaType);
  }
}

describe('berth signs, notation verifies', () => {
  it('signed verifies; unsigned, forged and untrusted are refused (notation and berth)', async (t) => {
    if (!requirePeer(t, 'notation')) return;
    const name = repo(t);
    const signed = await image(name, 'signed');
    const unsigned = await image(name, 'unsigned');
    const forged = await image(name, 'forged');
    ok(
      await berth([
        'sign',
        signed.ref,
        '--key',
        join(dir, 'berth.key'),
        '--cert',
        join(dir, 'berth.crt'),
        '--format',
        'notation',
      ]),
    );
    await forge(name, signed.digest, forged.digest, 'notation');

    const nv = (ref: string) => tool('notation', ['verify', '--insecure-registry', ref]);
    ok(await nv(signed.ref));
    const none = await nv(unsigned.ref);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /no signature is associated/);
    const bad = await nv(forged.ref);
    assert.notEqual(bad.code, 0, 'notation accepted a forged payload');
    assert.match(bad.stderr, /signature verification failed/);

    assert.equal((await berthVerify(signed.ref, ['--cert', join(dir, 'berth.crt')])).code, 0);
    const wrong = await berthVerify(signed.ref, ['--cert', join(dir, 'other.crt')]);
    assert.equal(wrong.code, 7);
    assert.match(wrong.result.signatures[0].error, /trusted certificate/);
    const f = await berthVerify(forged.ref, ['--cert', join(dir, 'berth.crt')]);
    assert.equal(f.code, 7);
    assert.match(f.result.signatures[0].error, /does not match/);
    assert.deepEqual((await berthVerify(unsigned.ref, ['--cert', join(dir, 'berth.crt')])).result.signatures, []);
  });

  it('a certificate chain (root CA → signer, made by openssl): notation and berth trust the root only', async (t) => {
    if (!requirePeer(t, 'notation', 'openssl')) return;
    const pki = join(dir, 'pki');
    await mkdir(pki, { recursive: true });
    await writeFile(
      join(pki, 'leaf.ext'),
      'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n',
    );
    const ssl = (args: string[]) => run('openssl', args, { cwd: pki }).then(ok);
    await ssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'root.key']);
    await ssl([
      'req',
      '-x509',
      '-new',
      '-key',
      'root.key',
      '-subj',
      '/C=US/ST=WA/O=pki/CN=root',
      '-days',
      '30',
      '-addext',
      'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      'root.crt',
    ]);
    await ssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'leaf.key']); // SEC 1 PEM
    await ssl(['req', '-new', '-key', 'leaf.key', '-subj', '/C=US/ST=WA/O=pki/CN=signer', '-out', 'leaf.csr']);
    await ssl([
      'x509',
      '-req',
      '-in',
      'leaf.csr',
      '-CA',
      'root.crt',
      '-CAkey',
      'root.key',
      '-CAcreateserial',
      '-days',
      '10',
      '-extfile',
      'leaf.ext',
      '-out',
      'leaf.crt',
    ]);
    await writeFile(
      join(pki, 'chain.pem'),
      Buffer.concat([await readFile(join(pki, 'leaf.crt')), await readFile(join(pki, 'root.crt'))]),
    );
    await mkdir(join(notationDir, 'truststore', 'x509', 'ca', 'pki'), { recursive: true });
    await writeFile(
      join(notationDir, 'truststore', 'x509', 'ca', 'pki', 'root.crt'),
      await readFile(join(pki, 'root.crt')),
    );

    const img = await image('sign/pki', 'v1');
    ok(
      await berth([
        'sign',
        img.ref,
        '--key',
        join(pki, 'leaf.key'),
        '--cert',
        join(pki, 'chain.pem'),
        '--format',
        'notation',
      ]),
    );
    ok(await tool('notation', ['verify', '--insecure-registry', img.ref]));
    const good = await berthVerify(img.ref, ['--cert', join(pki, 'root.crt')]);
    assert.equal(good.code, 0, JSON.stringify(good.result));
    assert.match(good.result.signatures[0].signer, /CN=signer/);
    // Trusting the signer's certificate alone is not trusting its chain's root.
    const leafOnly = await berthVerify(img.ref, ['--cert', join(pki, 'leaf.crt')]);
    assert.equal(leafOnly.code, 7);
    assert.match(leafOnly.result.signatures[0].error, /does not lead to a trusted certificate/);
  });

  it('notation signs (its own test key, RSA) and berth verifies', async (t) => {
    if (!requirePeer(t, 'notation')) return;
    const name = repo(t);
    const img = await image(name, 'v1');
    ok(await tool('notation', ['cert', 'generate-test', '--default', 'notation-peer']));
    ok(await tool('notation', ['sign', '--insecure-registry', img.ref]));
    const cert = join(notationDir, 'localkeys', 'notation-peer.crt');
    const good = await berthVerify(img.ref, ['--cert', cert]);
    assert.equal(good.code, 0, JSON.stringify(good.result));
    assert.equal(good.result.signatures[0].format, 'notation');
    assert.match(good.result.signatures[0].signer, /CN=notation-peer/);
    assert.equal((await berthVerify(img.ref, ['--cert', join(dir, 'berth.crt')])).code, 7);
  });
});

describe('berth signs, cosign verifies', () => {
  const v2 = (args: string[]) =>
    tool('cosign', ['verify', '--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry', ...args]);
  const v3 = (args: string[]) =>
    tool('cosign3', [
      'verify',
      '--insecure-ignore-tlog',
      '--allow-insecure-registry',
      '--allow-http-registry',
      '--trusted-root',
      join(dir, 'trusted_root.json'),
      ...args,
    ]);

  it('simple signing: cosign v2 verifies; wrong key, unsigned and forged are refused', async (t) => {
    if (!requirePeer(t, 'cosign')) return;
    const name = repo(t);
    const signed = await image(name, 'signed');
    const unsigned = await image(name, 'unsigned');
    const forged = await image(name, 'forged');
    ok(await berth(['sign', signed.ref, '--key', join(dir, 'berth.key')]));
    await forge(name, signed.digest, forged.digest, 'cosign');
    const out = ok(await v2(['--key', join(dir, 'berth.pub'), signed.ref]));
    assert.match(out, /docker-manifest-digest/);
    _refused(await v2(['--key', join(dir, 'other.pub'), signed.ref]), /no matching signatures: invalid signature/);
    const none = await v2(['--key', join(dir, 'berth.pub'), unsigned.ref]);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /no signatures found/);
    _refused(await v2(['--key', join(dir, 'berth.pub'), forged.ref]), /no matching signatures: invalid signature/);

    assert.equal((await berthVerify(signed.ref, ['--key', join(dir, 'berth.pub')])).code, 0);
    assert.equal((await berthVerify(signed.ref, ['--key', join(dir, 'other.pub')])).code, 7);
    const f = await berthVerify(forged.ref, ['--key', join(dir, 'berth.pub')]);
    assert.equal(f.code, 7);
    assert.match(f.result.signatures[0].error, /does not match any trusted key/);
  });

  it('bundle referrer: cosign v3 verifies; wrong key, unsigned and forged are refused', async (t) => {
    if (!requirePeer(t, 'cosign3')) return;
    const name = repo(t);
    const signed = await image(name, 'signed');
    const unsigned = await image(name, 'unsigned');
    const forged = await image(name, 'forged');
    ok(await berth(['sign', signed.ref, '--key', join(dir, 'berth.key'), '--format', 'cosign-bundle']));
    await forge(name, signed.digest, forged.digest, 'bundle');
    ok(await v3(['--key', join(dir, 'berth.pub'), signed.ref]));
    _refused(await v3(['--key', join(dir, 'other.pub'), signed.ref]), /signatures do not match threshold/);
    _refused(await v3(['--key', join(dir, 'berth.pub'), unsigned.ref]), /no signatures found/);
    _refused(await v3(['--key', join(dir, 'berth.pub'), forged.ref]), /signatures do not match threshold/);

    assert.equal((await berthVerify(signed.ref, ['--key', join(dir, 'berth.pub')])).code, 0);
    const f = await berthVerify(forged.ref, ['--key', join(dir, 'berth.pub')]);
    assert.equal(f.code, 7);
    assert.match(f.result.signatures[0].error, /not signed by any trusted key/);
  });
});

describe('a registry without the referrers API (distribution 2.8)', () => {
  it('berth keeps the referrers tag index; notation and cosign v3 find the signatures through it', async (t) => {
    if (!requirePeer(t, 'distribution', 'notation', 'cosign3')) return;
    const dist = await startDistribution({ logLevel: 'warn' });
    t.after(() => dist.stop());
    const img = await image('sign/fallback', 'v1', dist);
    const r = JSON.parse(
      ok(
        await berth([
          'sign',
          img.ref,
          '--key',
          join(dir, 'berth.key'),
          '--cert',
          join(dir, 'berth.crt'),
          '--format',
          'cosign-bundle,notation',
          '--json',
        ]),
      ),
    );
    assert.deepEqual(
      r.signatures.map((s: any) => [s.format, s.fallback]),
      [
        ['cosign-bundle', true],
        ['notation', true],
      ],
    );
    ok(await tool('notation', ['verify', '--insecure-registry', img.ref]));
    ok(
      await tool('cosign3', [
        'verify',
        '--insecure-ignore-tlog',
        '--allow-insecure-registry',
        '--allow-http-registry',
        '--trusted-root',
        join(dir, 'trusted_root.json'),
        '--key',
        join(dir, 'berth.pub'),
        img.ref,
      ]),
    );
    const v = await berthVerify(img.ref, ['--key', join(dir, 'berth.pub'), '--cert', join(dir, 'berth.crt')]);
    assert.deepEqual(v.result.signatures.map((s: any) => [s.format, s.verified]).sort(), [
      ['cosign-bundle', true],
      ['notation', true],
    ]);
  });
});

describe('berth signs, the other cosign reads it too', () => {
  it('cosign v3 reads simple signing (--new-bundle-format=false); cosign v2 reads bundles (--new-bundle-format)', async (t) => {
    if (!requirePeer(t, 'cosign', 'cosign3')) return;
    const name = repo(t);
    const simple = await image(name, 'simple');
    const bundled = await image(name, 'bundled');
    ok(await berth(['sign', simple.ref, '--key', join(dir, 'berth.key')]));
    ok(await berth(['sign', bundled.ref, '--key', join(dir, 'berth.key'), '--format', 'cosign-bundle']));
    const common = ['verify', '--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry'];
    const key = ['--key', join(dir, 'berth.pub')];
    ok(await tool('cosign3', [...common, ...key, '--new-bundle-format=false', simple.ref]));
    const root = ['--trusted-root', join(dir, 'trusted_root.json')];
    ok(await tool('cosign', [...common, ...key, '--new-bundle-format', ...root, bundled.ref]));
    _refused(
      await tool('cosign', [...common, '--key', join(dir, 'other.pub'), '--new-bundle-format', ...root, bundled.ref]),
      /signatures do not match threshold|no matching/,
    );
  });
});

describe('cosign signs, berth verifies', () => {
  it('cosign v2 (simple signing) with a berth-generated encrypted key; berth with a cosign-generated key', async (t) => {
    if (!requirePeer(t, 'cosign')) return;
    const name = repo(t);
    const a = await image(name, 'a');
    const b = await image(name, 'b');
    const sign = ['sign', '--yes', '--tlog-upload=false', '--allow-insecure-registry', '--allow-http-registry'];
    ok(await tool('cosign', [...sign, '--key', join(dir, 'berth.key'), a.ref]));
    const r = await berthVerify(a.ref, ['--key', join(dir, 'berth.pub')]);
    assert.equal(r.code, 0, JSON.stringify(r.result));
    assert.equal(r.result.signatures[0].format, 'cosign');
    assert.equal((await berthVerify(a.ref, ['--key', join(dir, 'other.pub')])).code, 7);

    // berth appends its signature to the `.sig` image cosign wrote; cosign then finds both.
    ok(await berth(['sign', a.ref, '--key', join(dir, 'other.key')]));
    const sigTag = await new Client({ insecure: true })
      .repository(`${reg.host}/${name}`)
      .getManifest(signatureTag(a.digest));
    assert.equal((JSON.parse(sigTag.bytes.toString()) as ImageManifest).layers.length, 2);
    const v2 = ['verify', '--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry'];
    ok(await tool('cosign', [...v2, '--key', join(dir, 'other.pub'), a.ref]));
    ok(await tool('cosign', [...v2, '--key', join(dir, 'berth.pub'), a.ref]));

    // cosign's own key pair: berth decrypts cosign's private key and signs; cosign verifies.
    const keyDir = join(dir, 'cosign-keys');
    await mkdir(keyDir, { recursive: true });
    ok(await run('cosign', ['generate-key-pair'], { env, cwd: keyDir }));
    ok(await berth(['sign', b.ref, '--key', join(keyDir, 'cosign.key')]));
    ok(
      await tool('cosign', [
        'verify',
        '--insecure-ignore-tlog',
        '--allow-insecure-registry',
        '--allow-http-registry',
        '--key',
        join(keyDir, 'cosign.pub'),
        b.ref,
      ]),
    );
    const wrongPassword = await berth(['sign', b.ref, '--key', join(keyDir, 'cosign.key')], { COSIGN_PASSWORD: 'no' });
    assert.equal(wrongPassword.code, 1);
    assert.match(wrongPassword.stderr, /wrong password \(COSIGN_PASSWORD\)/);
  });

  it('cosign v3 (bundle referrer) and berth verifies', async (t) => {
    if (!requirePeer(t, 'cosign3')) return;
    const name = repo(t);
    const img = await image(name, 'v1');
    ok(
      await tool('cosign3', [
        'sign',
        '--yes',
        '--tlog-upload=false',
        '--use-signing-config=false',
        '--allow-insecure-registry',
        '--allow-http-registry',
        '--key',
        join(dir, 'berth.key'),
        img.ref,
      ]),
    );
    const r = await berthVerify(img.ref, ['--key', join(dir, 'berth.pub')]);
    assert.equal(r.code, 0, JSON.stringify(r.result));
    assert.deepEqual(
      r.result.signatures.map((s: any) => [s.format, s.verified]),
      [['cosign-bundle', true]],
    );
    assert.equal((await berthVerify(img.ref, ['--key', join(dir, 'other.pub')])).code, 7);
  });
});

describe('berth build --sign', () => {
  it('signs the index and each platform image, attaches SLSA provenance, leaves the digests alone', async (t) => {
    const name = repo(t);
    const ctx = join(dir, 'build-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(
      join(ctx, 'berth.yaml'),
      [
        'apiVersion: berth/v1',
        'kind: Image',
        'base: scratch',
        'platforms: [linux/amd64, linux/arm64]',
        'layers:',
        '  - name: app',
        '    files:',
        `      - { inline: "signed build\\n", dest: /etc/motd }`,
      ].join('\n'),
    );
    const build = async (tag: string, extra: string[]) =>
      JSON.parse(
        ok(
          await berth([
            'build',
            '-f',
            join(ctx, 'berth.yaml'),
            '--no-cache',
            '--push',
            `${reg.host}/${name}:${tag}`,
            '--json',
            ...extra,
          ]),
        ),
      );
    const plain = await build('plain', []);
    const signed = await build('signed', ['--sign', join(dir, 'berth.key')]);
    // Reproducible: signing adds referrers, never changes an image.
    assert.equal(signed.digest, plain.digest);
    assert.deepEqual(
      signed.images.map((i: any) => i.digest),
      plain.images.map((i: any) => i.digest),
    );
    for (const img of signed.images)
      assert.equal(img.referrers.length, 3, 'a signature, a provenance and an SBOM attestation per image');

    const at = (d: string) => `${reg.host}/${name}@${d}`;
    for (const d of [signed.digest, ...signed.images.map((i: any) => i.digest)]) {
      const r = await berthVerify(at(d), ['--key', join(dir, 'berth.pub')]);
      assert.equal(r.code, 0, `${d}: ${JSON.stringify(r.result)}`);
      assert.equal((await berthVerify(at(d), ['--key', join(dir, 'other.pub')])).code, 7);
    }
    assert.equal((await berthVerify(`${reg.host}/${name}:plain`, ['--key', join(dir, 'berth.pub')])).code, 0);

    // The provenance itself: read it back through the referrers API and check what it names.
    const repository = new Client({ insecure: true }).repository(`${reg.host}/${name}`);
    const store = signatureStore(repository);
    const amd64 = signed.images.find((i: any) => i.platform === 'linux/amd64');
    const prov = (await store.referrers(amd64.digest)).find(
      (d) => d.annotations?.['dev.sigstore.bundle.predicateType'] === 'https://slsa.dev/provenance/v1',
    );
    assert.ok(prov, 'no provenance referrer');
    const m = JSON.parse((await store.manifest(prov.digest))!.bytes.toString()) as ImageManifest;
    const bundle = JSON.parse((await store.blob(m.layers[0], 1 << 20)).toString());
    const st = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString());
    assert.equal(st.subject[0].digest.sha256, amd64.digest.slice(7));
    assert.equal(st.predicate.buildDefinition.externalParameters.platform, 'linux/amd64');
    assert.match(st.predicate.buildDefinition.externalParameters.spec.digest.sha256, /^[0-9a-f]{64}$/);
    assert.ok(st.predicate.runDetails.builder.version.berth);
    assert.equal(st.predicate.buildDefinition.resolvedDependencies.at(-1).name, 'context');
    // The SBOM, attested: the same SPDX document as the unsigned SBOM referrer, as a signed in-toto predicate.
    const sbomAtt = (await store.referrers(amd64.digest)).find(
      (d) => d.annotations?.['dev.sigstore.bundle.predicateType'] === 'https://spdx.dev/Document',
    );
    assert.ok(sbomAtt, 'no SBOM attestation referrer');
    const sm = JSON.parse((await store.manifest(sbomAtt.digest))!.bytes.toString()) as ImageManifest;
    const sbundle = JSON.parse((await store.blob(sm.layers[0], 1 << 20)).toString());
    const sst = JSON.parse(Buffer.from(sbundle.dsseEnvelope.payload, 'base64').toString());
    assert.equal(sst.subject[0].digest.sha256, amd64.digest.slice(7));
    const spdxRef = (await store.referrers(amd64.digest, 'application/spdx+json'))[0];
    const spdxManifest = JSON.parse((await store.manifest(spdxRef.digest))!.bytes.toString()) as ImageManifest;
    assert.deepEqual(sst.predicate, JSON.parse((await store.blob(spdxManifest.layers[0], 1 << 20)).toString()));

    if (!requirePeer(t, 'cosign3')) return;
    const common = ['--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry'];
    const trust = ['--trusted-root', join(dir, 'trusted_root.json'), '--key', join(dir, 'berth.pub')];
    ok(await tool('cosign3', ['verify', ...common, ...trust, at(signed.digest)]));
    const out = ok(
      await tool('cosign3', ['verify-attestation', ...common, ...trust, '--type', 'slsaprovenance1', at(amd64.digest)]),
    );
    assert.match(out, /slsa\.dev\/provenance\/v1|payload/);
    ok(await tool('cosign3', ['verify-attestation', ...common, ...trust, '--type', 'spdxjson', at(amd64.digest)]));
    const other = await tool('cosign3', [
      'verify-attestation',
      ...common,
      '--trusted-root',
      join(dir, 'trusted_root.json'),
      '--key',
      join(dir, 'other.pub'),
      '--type',
      'slsaprovenance1',
      at(amd64.digest),
    ]);
    _refused(other, /signatures do not match threshold/);
  });
});

describe('command line', () => {
  it('refuses what it cannot do, with the fix, before touching the registry', async (t) => {
    const name = repo(t);
    const img = await image(name, 'v1');
    const cases: [string[], number, RegExp, Record<string, string>?][] = [
      [['sign', img.ref], 2, /--key FILE is required/],
      [['sign', img.ref, '--key', join(dir, 'berth.key'), '--format', 'gpg'], 2, /--format "gpg": expected one of/],
      [['sign', img.ref, '--key', join(dir, 'berth.key'), '--format', 'notation'], 2, /needs --cert FILE/],
      [
        ['sign', img.ref, '--key', join(dir, 'berth.key')],
        1,
        /wrong password \(COSIGN_PASSWORD\)/,
        { COSIGN_PASSWORD: 'x' },
      ],
      [['sign', img.ref, '--key', join(dir, 'berth.pub')], 1, /not a usable private key/],
      [['sign', img.ref, '--key', join(dir, 'missing.key')], 4, /--key .*missing\.key: no such file/],
      [['verify', img.ref], 2, /give --key FILE .* and\/or --cert FILE/],
      [['verify', img.ref, '--key', join(dir, 'berth.pub'), '--format', 'notation'], 2, /needs --cert FILE/],
      [['key', 'generate', '-o', join(dir, 'berth')], 1, /exists; pass --force/],
      [
        ['build', '--sign', join(dir, 'berth.key'), '--docker-archive', join(dir, 'x.tar')],
        2,
        /--sign needs --push or --oci-layout/,
      ],
      [['key', 'generate', '-o', join(dir, 'fresh'), '--cert', '--subject', 'C=USA,CN=x'], 1, /two-letter country/],
    ];
    for (const [args, code, message, extra] of cases) {
      const r = await berth(args, extra);
      assert.equal(r.code, code, `${r.command}: ${r.stderr}`);
      assert.match(r.stderr, message, r.command);
    }
    const noPassword = await run(process.execPath, [BIN, 'key', 'generate', '-o', join(dir, 'nopw')], {
      env: { ...env, COSIGN_PASSWORD: undefined },
    });
    assert.equal(noPassword.code, 2);
    assert.match(noPassword.stderr, /set COSIGN_PASSWORD/);
    // Nothing was signed by the failed attempts.
    const tags: string[] = [];
    for await (const tag of new Client({ insecure: true }).repository(`${reg.host}/${name}`).tags()) tags.push(tag);
    assert.deepEqual(tags, ['v1']);
    assert.equal((await stat(join(dir, 'berth.key'))).mode & 0o777, 0o600);
  });
});
