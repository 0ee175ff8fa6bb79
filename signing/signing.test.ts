// The formats against each other in memory: sign → verify in all three, and the refusals (tampered payload, wrong
// key, unsigned, another image's signature). The real cosign and notation are in test/signing.test.ts.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { digestOf, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex } from '../spec/manifest.js';
import { OCI_INDEX, OCI_MANIFEST } from '../spec/media-types.js';
import {
  encryptPrivateKey,
  generateKeyPair,
  loadPrivateKey,
  loadPublicKey,
  privateKeyPem,
  publicKeyPem,
  selfSignedCertificatePem,
  signImage,
  signatureTag,
  verifyImage,
  type SignatureWriter,
} from './index.js';
import { open, seal } from './secretbox.js';

/** A repository in memory; `referrersApi: false` behaves like a registry without the referrers API. */
function memoryRepo(referrersApi = true) {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, { bytes: Buffer; mediaType: string; digest: Digest }>();
  const store: SignatureWriter = {
    async manifest(ref) {
      return manifests.get(ref);
    },
    async blob(desc) {
      const b = blobs.get(desc.digest);
      if (!b) throw new Error(`blob ${desc.digest} unknown`);
      return b;
    },
    async referrers(digest, artifactType) {
      let list: Descriptor[] = [];
      if (referrersApi) {
        for (const [ref, m] of manifests) {
          if (!ref.startsWith('sha256:')) continue;
          const doc = JSON.parse(m.bytes.toString());
          if (doc.subject?.digest === digest)
            list.push({
              mediaType: m.mediaType,
              digest: m.digest,
              size: m.bytes.length,
              artifactType: doc.artifactType,
            });
        }
      } else {
        const idx = manifests.get(digest.replace(':', '-'));
        list = idx ? (JSON.parse(idx.bytes.toString()) as ImageIndex).manifests : [];
      }
      return artifactType ? list.filter((d) => d.artifactType === artifactType) : list;
    },
    async putBlob(bytes) {
      const digest = digestOf(bytes);
      blobs.set(digest, Buffer.from(bytes));
      return { digest, size: bytes.length };
    },
    async putManifest(reference, bytes, mediaType) {
      const digest = digestOf(bytes);
      const m = { bytes: Buffer.from(bytes), mediaType, digest };
      manifests.set(reference, m);
      manifests.set(digest, m);
      return { digest, subjectAccepted: referrersApi && !!JSON.parse(bytes.toString()).subject };
    },
    async addReferrerFallback(subject, referrer) {
      const tag = subject.replace(':', '-');
      const idx: ImageIndex = manifests.has(tag)
        ? JSON.parse(manifests.get(tag)!.bytes.toString())
        : { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
      idx.manifests.push(referrer);
      await store.putManifest(tag, Buffer.from(JSON.stringify(idx)), OCI_INDEX);
    },
  };
  return { store, blobs, manifests };
}

async function image(repo: ReturnType<typeof memoryRepo>, text = 'x'): Promise<Descriptor> {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, text }));
  const r = await repo.store.putManifest('latest', bytes, OCI_MANIFEST);
  return { mediaType: OCI_MANIFEST, digest: r.digest, size: bytes.length };
}

const pair = generateKeyPair();
const other = generateKeyPair();
const cert = new X509Certificate(selfSignedCertificatePem(pair, { subject: 'C=US,ST=WA,O=berth,CN=berth test' }));
const otherCert = new X509Certificate(selfSignedCertificatePem(other, { subject: 'someone else' }));

describe('signing formats (in memory)', () => {
  for (const referrersApi of [true, false]) {
    it(`sign then verify, all three formats (referrers API: ${referrersApi})`, async () => {
      const repo = memoryRepo(referrersApi);
      const img = await image(repo);
      const common = { privateKey: pair.privateKey, dockerReference: 'localhost:5000/app', certificates: [cert] };
      for (const format of ['cosign', 'cosign-bundle', 'notation'] as const) {
        const r = await signImage(repo.store, img, { format, ...common });
        if (format !== 'cosign') assert.equal(r.fallback, !referrersApi);
      }
      const res = await verifyImage(repo.store, img.digest, { keys: [pair.publicKey], certificates: [cert] });
      assert.equal(res.verified, true);
      assert.deepEqual(res.signatures.map((s) => [s.format, s.verified]).sort(), [
        ['cosign', true],
        ['cosign-bundle', true],
        ['notation', true],
      ]);
      assert.match(res.signatures.find((s) => s.format === 'notation')!.signer!, /CN=berth test/);
    });
  }

  it('refuses wrong keys, unsigned images and tampered payloads', async () => {
    const repo = memoryRepo();
    const img = await image(repo);
    const unsigned = await image(repo, 'y');
    const common = { privateKey: pair.privateKey, dockerReference: 'localhost:5000/app', certificates: [cert] };
    for (const format of ['cosign', 'cosign-bundle', 'notation'] as const)
      await signImage(repo.store, img, { format, ...common });

    const wrong = await verifyImage(repo.store, img.digest, { keys: [other.publicKey], certificates: [otherCert] });
    assert.equal(wrong.verified, false);
    assert.equal(wrong.signatures.length, 3);
    for (const s of wrong.signatures) assert.match(s.error!, /trusted/);

    const none = await verifyImage(repo.store, unsigned.digest, { keys: [pair.publicKey], certificates: [cert] });
    assert.deepEqual(none, { digest: unsigned.digest, verified: false, signatures: [] });

    // Tamper: every stored signature artifact blob gets one byte changed (same digest key: the source lies).
    for (const [d, b] of repo.blobs) {
      if (b.length > 2)
        repo.blobs.set(
          d,
          Buffer.from(b.toString().replace('sha256:', 'sha256:0').replace('"payload":"e', '"payload":"f')),
        );
    }
    const tampered = await verifyImage(repo.store, img.digest, { keys: [pair.publicKey], certificates: [cert] });
    assert.equal(tampered.verified, false, JSON.stringify(tampered));
  });

  it('a signature moved onto another image does not verify it', async () => {
    const repo = memoryRepo();
    const a = await image(repo, 'a');
    const b = await image(repo, 'b');
    await signImage(repo.store, a, { format: 'cosign', privateKey: pair.privateKey, dockerReference: 'r/a' });
    const sig = repo.manifests.get(signatureTag(a.digest))!;
    repo.manifests.set(signatureTag(b.digest), sig);
    const res = await verifyImage(repo.store, b.digest, { keys: [pair.publicKey] });
    assert.equal(res.verified, false);
    assert.match(res.signatures[0].error!, /signs sha256:/);
  });

  it('cosign simple signing appends a layer per signature', async () => {
    const repo = memoryRepo();
    const img = await image(repo);
    await signImage(repo.store, img, { format: 'cosign', privateKey: pair.privateKey, dockerReference: 'r/a' });
    await signImage(repo.store, img, { format: 'cosign', privateKey: other.privateKey, dockerReference: 'r/a' });
    const doc = JSON.parse(repo.manifests.get(signatureTag(img.digest))!.bytes.toString());
    assert.equal(doc.layers.length, 2);
    const res = await verifyImage(repo.store, img.digest, { keys: [other.publicKey] });
    assert.deepEqual(
      res.signatures.map((s) => s.verified),
      [false, true],
    );
  });
});

describe('keys', () => {
  it("cosign's encrypted private key round-trips, and a wrong password is refused", () => {
    const pemText = encryptPrivateKey(pair.privateKey, 'hunter2');
    assert.match(pemText, /^-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n/);
    const doc = JSON.parse(Buffer.from(pemText.split('\n').slice(1, -2).join(''), 'base64').toString());
    assert.deepEqual(doc.kdf.params, { N: 65536, r: 8, p: 1 });
    const back = loadPrivateKey(pemText, 'hunter2');
    assert.equal(privateKeyPem(back), privateKeyPem(pair.privateKey));
    assert.throws(() => loadPrivateKey(pemText, 'wrong'), /wrong password/);
    assert.throws(() => loadPrivateKey(pemText, undefined), /COSIGN_PASSWORD/);
    assert.equal(publicKeyPem(loadPublicKey(publicKeyPem(pair.publicKey))), publicKeyPem(pair.publicKey));
  });

  it('the self-signed certificate is a code-signing leaf over the key', () => {
    assert.equal(cert.ca, false);
    assert.equal(cert.subject, 'C=US\nST=WA\nO=berth\nCN=berth test');
    // self-issued and self-signed (OpenSSL's checkIssued wants keyCertSign, which a leaf must not have)
    assert.equal(cert.issuer, cert.subject);
    assert.equal(cert.verify(pair.publicKey), true);
    assert.equal(cert.checkPrivateKey(pair.privateKey), true);
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.3']);
  });

  it('secretbox matches Go x/crypto/nacl/secretbox', () => {
    // Generated with golang.org/x/crypto v0.58.0 secretbox.Seal for these inputs.
    const k = Buffer.alloc(32).map((_, i) => (i * 7 + 1) & 255);
    const n = Buffer.alloc(24).map((_, i) => (200 - i) & 255);
    const m = Buffer.alloc(150).map((_, i) => (i * 13) & 255);
    const want =
      '54c2a7fcfce330c8db7d2394ad280d8dc2f731df00df692f9b7ea8a146ab3cc7600612bdbe7e5a6f87d6040a7715bd751dc581d5b188d928779dcf0d994c5e1f375107ff4f838ffc24e530cf88b9a8441e336cdad4cc0fd10187d6ca5ff63d03717d9faa1d606c80ccc6390e1dfacb19ccb5bf670a1ccb338caca2a630ed287cb8471667c46d60cb4fd6d4df382e5cc12d84b75e78aa7123cf0347a9fa71313e5cfd41431647';
    const box = seal(m, n, k);
    assert.equal(box.toString('hex'), want);
    assert.deepEqual(open(box, n, k), m);
    box[20] ^= 1;
    assert.equal(open(box, n, k), undefined);
  });
});
