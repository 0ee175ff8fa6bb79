// The SBOM: SPDX 2.3 fields present and well-formed, files and npm packages listed as built, reproducible bytes,
// and the referrer artifact written to an OCI layout so `copy --referrers` carries it along.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copy } from '../client/copy.js';
import { OciLayout } from '../client/layout.js';
import { digestOf } from '../spec/digest.js';
import { OCI_EMPTY } from '../spec/media-types.js';
import { EMPTY_DESCRIPTOR, type Artifact } from './artifact.js';
import { build } from './build.js';
import { LockfileError, npmPackages } from './npm-lock.js';
import { writeLayout } from './outputs.js';
import { SPDX_JSON, buildSboms, spdxDocument, type SpdxDocument } from './sbom.js';

const SHA512_B64 = createHash('sha512').update('left-pad').digest('base64');
const LOCK = {
  name: 'demo',
  version: '1.0.0',
  lockfileVersion: 3,
  packages: {
    '': { name: 'demo', version: '1.0.0', dependencies: { 'left-pad': '^1.3.0', '@scope/util': '2' } },
    'node_modules/left-pad': {
      version: '1.3.0',
      resolved: 'https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz',
      integrity: `sha512-${SHA512_B64}`,
    },
    'node_modules/@scope/util': {
      version: '2.0.1',
      resolved: 'https://registry.npmjs.org/@scope/util/-/util-2.0.1.tgz',
    },
    'node_modules/@scope/util/node_modules/left-pad': { version: '1.3.0' },
    'node_modules/tap': { version: '18.0.0', dev: true },
    'node_modules/fsevents': { version: '2.3.3', devOptional: true, optional: true },
    'packages/local': { name: 'local', version: '0.0.1' },
    'node_modules/local': { resolved: 'packages/local', link: true },
  },
};

const FILES: Record<string, string> = {
  'app/index.js': 'console.log("hi")\n',
  'app/node_modules/left-pad/package.json': '{"name":"left-pad"}\n',
  'app/node_modules/left-pad/index.js': 'module.exports = 1\n',
};

function spec(compression = 'gzip'): string {
  return `apiVersion: berth/v1
kind: Image
compression: ${compression}
platforms: [linux/amd64, linux/arm64]
annotations: { org.opencontainers.image.title: demo }
layers:
  - name: deps
    files:
      - { src: "app/node_modules/**", dest: /srv/node_modules/ }
  - name: app
    files:
      - { src: app/index.js, dest: /srv/index.js }
      - { inline: "hello\\n", dest: /etc/motd }
      - { symlink: /etc/motd, dest: /motd }
      - { directory: /data }
`;
}

async function context(t: { after(fn: () => Promise<void>): void }, compression?: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-sbom-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [p, c] of Object.entries(FILES)) {
    await mkdir(join(dir, 'ctx', p, '..'), { recursive: true });
    await writeFile(join(dir, 'ctx', p), c);
  }
  await writeFile(join(dir, 'ctx', 'package-lock.json'), JSON.stringify(LOCK, null, 2));
  await writeFile(join(dir, 'ctx', 'berth.yaml'), spec(compression));
  return dir;
}

async function sboms(
  dir: string,
  cacheDir?: string,
): Promise<{ digests: string[]; artifacts: Artifact[]; result: Awaited<ReturnType<typeof build>> }> {
  const result = await build({ file: join(dir, 'ctx', 'berth.yaml'), cacheDir: join(dir, 'cache'), noGit: true });
  const artifacts = await buildSboms(result, { toolVersion: '9.9.9', contextDir: join(dir, 'ctx'), cacheDir });
  return { digests: artifacts.map((a) => a.manifest.digest), artifacts, result };
}

function documentOf(a: Artifact): { doc: SpdxDocument; bytes: Buffer } {
  const manifest = JSON.parse(a.manifest.bytes.toString('utf8'));
  const bytes = a.blobs.get(manifest.layers[0].digest)!;
  return { doc: JSON.parse(bytes.toString('utf8')), bytes };
}

const sha = (alg: string, s: string) => createHash(alg).update(s).digest('hex');

// The SPDX 2.3 JSON schema's required fields and closed property sets (spdx-spec schemas/spdx-schema-2-3.json),
// restated for the fields berth writes; plus the ID and relationship rules of spdx 2.3 chapters 3, 7, 8 and 11.
const DOC_KEYS = [
  'SPDXID',
  'creationInfo',
  'dataLicense',
  'name',
  'spdxVersion',
  'documentNamespace',
  'packages',
  'files',
  'relationships',
];
const PACKAGE_KEYS = [
  'SPDXID',
  'name',
  'versionInfo',
  'downloadLocation',
  'filesAnalyzed',
  'packageVerificationCode',
  'checksums',
  'externalRefs',
  'primaryPackagePurpose',
  'licenseConcluded',
  'licenseDeclared',
  'copyrightText',
  'comment',
];
const FILE_KEYS = ['SPDXID', 'fileName', 'checksums', 'comment'];
const ALGORITHMS = new Set(['SHA1', 'SHA256', 'SHA384', 'SHA512']);
const HEX_LENGTH: Record<string, number> = { SHA1: 40, SHA256: 64, SHA384: 96, SHA512: 128 };

function assertSpdx23(doc: any): void {
  for (const k of ['SPDXID', 'creationInfo', 'dataLicense', 'name', 'spdxVersion'])
    assert.ok(k in doc, `document has ${k}`);
  for (const k of Object.keys(doc)) assert.ok(DOC_KEYS.includes(k), `document key ${k} is an SPDX 2.3 field`);
  assert.equal(doc.spdxVersion, 'SPDX-2.3');
  assert.equal(doc.dataLicense, 'CC0-1.0');
  assert.equal(doc.SPDXID, 'SPDXRef-DOCUMENT');
  assert.match(doc.documentNamespace, /^https:\/\/[^#\s]+$/);
  assert.match(doc.creationInfo.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.deepEqual(Object.keys(doc.creationInfo).sort(), ['created', 'creators']);
  const ids = new Set<string>(['SPDXRef-DOCUMENT']);
  const checksums = (list: any[]) => {
    for (const c of list) {
      assert.ok(ALGORITHMS.has(c.algorithm), c.algorithm);
      assert.match(c.checksumValue, new RegExp(`^[0-9a-f]{${HEX_LENGTH[c.algorithm]}}$`));
    }
  };
  for (const p of doc.packages) {
    for (const k of ['SPDXID', 'downloadLocation', 'name']) assert.ok(k in p, `package has ${k}`);
    for (const k of Object.keys(p)) assert.ok(PACKAGE_KEYS.includes(k), `package key ${k}`);
    // spdx 2.3 §7.9: a package whose files were analysed carries its verification code.
    if (p.filesAnalyzed !== false)
      assert.match(p.packageVerificationCode.packageVerificationCodeValue, /^[0-9a-f]{40}$/);
    checksums(p.checksums ?? []);
    for (const r of p.externalRefs ?? [])
      assert.deepEqual(Object.keys(r).sort(), ['referenceCategory', 'referenceLocator', 'referenceType']);
    ids.add(p.SPDXID);
  }
  for (const f of doc.files) {
    for (const k of ['SPDXID', 'checksums', 'fileName']) assert.ok(k in f, `file has ${k}`);
    for (const k of Object.keys(f)) assert.ok(FILE_KEYS.includes(k), `file key ${k}`);
    assert.ok(
      f.checksums.some((c: any) => c.algorithm === 'SHA1'),
      'spdx 2.3 §8.4: every file has a SHA1',
    );
    assert.match(f.fileName, /^\.\//);
    checksums(f.checksums);
    ids.add(f.SPDXID);
  }
  assert.equal(ids.size, 1 + doc.packages.length + doc.files.length, 'SPDX IDs are unique');
  for (const id of ids) assert.match(id, /^SPDXRef-[A-Za-z0-9.-]+$/);
  for (const r of doc.relationships) {
    assert.ok(
      ids.has(r.spdxElementId) && ids.has(r.relatedSpdxElement),
      `relationship ${JSON.stringify(r)} names known elements`,
    );
  }
  assert.ok(
    doc.relationships.some((r: any) => r.spdxElementId === 'SPDXRef-DOCUMENT' && r.relationshipType === 'DESCRIBES'),
  );
}

test('one SPDX 2.3 document per platform image, with the built files, the npm packages and reproducible fields', async (t) => {
  const dir = await context(t);
  const { artifacts, result } = await sboms(dir);
  assert.equal(artifacts.length, 2);
  for (const [i, a] of artifacts.entries()) {
    const image = result.images[i];
    assert.equal(a.subject.digest, image.manifest.digest);
    const { doc } = documentOf(a);
    assertSpdx23(doc);
    assert.equal(doc.creationInfo.created, '1970-01-01T00:00:00Z', 'the build epoch, not the clock');
    assert.deepEqual(doc.creationInfo.creators, ['Tool: berth-9.9.9']);
    assert.ok(doc.documentNamespace.endsWith(image.manifest.digest.replace(':', '-')));
    const imagePkg = doc.packages.find((p) => p.SPDXID === 'SPDXRef-Image')!;
    assert.equal(imagePkg.versionInfo, image.manifest.digest);
    assert.equal(
      imagePkg.externalRefs![0].referenceLocator,
      `pkg:oci/demo@sha256%3A${image.manifest.digest.slice(7)}?arch=${image.platform.architecture}&os=linux`,
    );

    // Regular files only (no directories, symlinks), in layer order, with checksums of their bytes.
    const expected: [string, string][] = [
      ['./srv/node_modules/left-pad/index.js', FILES['app/node_modules/left-pad/index.js']],
      ['./srv/node_modules/left-pad/package.json', FILES['app/node_modules/left-pad/package.json']],
      ['./etc/motd', 'hello\n'],
      ['./srv/index.js', FILES['app/index.js']],
    ];
    assert.deepEqual(
      doc.files.map((f) => f.fileName),
      expected.map((e) => e[0]),
    );
    for (const [k, [, content]] of expected.entries()) {
      assert.deepEqual(doc.files[k].checksums, [
        { algorithm: 'SHA1', checksumValue: sha('sha1', content) },
        { algorithm: 'SHA256', checksumValue: sha('sha256', content) },
      ]);
    }
    assert.match(doc.files[0].comment!, new RegExp(`layer deps \\(${image.layers[0].layer.descriptor.digest}\\)`));
    const contains = doc.relationships
      .filter((r) => r.spdxElementId === 'SPDXRef-Image' && r.relationshipType === 'CONTAINS')
      .map((r) => r.relatedSpdxElement);
    for (const f of doc.files) assert.ok(contains.includes(f.SPDXID), `${f.fileName} is contained`);

    // npm: production packages once per name@version; dev-only ones and workspace links left out.
    const npm = doc.packages.filter((p) => p.SPDXID.startsWith('SPDXRef-npm-'));
    assert.deepEqual(
      npm.map((p) => `${p.name}@${p.versionInfo}`),
      ['@scope/util@2.0.1', 'fsevents@2.3.3', 'left-pad@1.3.0', 'local@0.0.1'],
    );
    const leftPad = npm.find((p) => p.name === 'left-pad')!;
    assert.deepEqual(leftPad.checksums, [
      { algorithm: 'SHA512', checksumValue: Buffer.from(SHA512_B64, 'base64').toString('hex') },
    ]);
    assert.equal(leftPad.downloadLocation, 'https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz');
    assert.equal(leftPad.externalRefs![0].referenceLocator, 'pkg:npm/left-pad@1.3.0');
    assert.equal(
      npm.find((p) => p.name === '@scope/util')!.externalRefs![0].referenceLocator,
      'pkg:npm/%40scope/util@2.0.1',
    );
    // left-pad's package.json is in the deps layer: the image contains it; the others are only pinned.
    const relOf = (id: string) => doc.relationships.find((r) => r.relatedSpdxElement === id)!.relationshipType;
    assert.equal(relOf(leftPad.SPDXID), 'CONTAINS');
    assert.equal(relOf(npm.find((p) => p.name === 'fsevents')!.SPDXID), 'DEPENDS_ON');
  }
});

test('the SBOM bytes are reproducible: a fresh copy of the inputs, cold or warm file-list cache, zstd layers', async (t) => {
  const a = await context(t);
  const b = await context(t);
  const first = await sboms(a, join(a, 'cache'));
  const again = await sboms(a, join(a, 'cache'));
  const fresh = await sboms(b);
  assert.deepEqual(again.digests, first.digests, 'warm cache');
  assert.deepEqual(fresh.digests, first.digests, 'another copy, no cache');
  assert.deepEqual(documentOf(fresh.artifacts[0]).bytes, documentOf(first.artifacts[0]).bytes);
  const z = await sboms(await context(t, 'zstd'));
  assert.notDeepEqual(z.digests, first.digests, 'another image, another SBOM');
  assert.deepEqual(
    documentOf(z.artifacts[0]).doc.files.map((f) => f.checksums),
    documentOf(first.artifacts[0]).doc.files.map((f) => f.checksums),
    'same files read back from zstd layers',
  );
});

test('the artifact manifest: artifactType, empty config, the document as its one layer, the image as subject', async (t) => {
  const { artifacts, result } = await sboms(await context(t));
  const a = artifacts[0];
  const m = JSON.parse(a.manifest.bytes.toString('utf8'));
  assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(m.artifactType, SPDX_JSON);
  assert.deepEqual(m.config, EMPTY_DESCRIPTOR);
  assert.equal(m.config.mediaType, OCI_EMPTY);
  assert.equal(a.blobs.get(m.config.digest)!.toString(), '{}');
  assert.equal(m.layers.length, 1);
  assert.equal(m.layers[0].mediaType, SPDX_JSON);
  assert.equal(m.layers[0].digest, digestOf(a.blobs.get(m.layers[0].digest)!));
  assert.deepEqual(m.subject, {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: result.images[0].manifest.digest,
    size: result.images[0].manifest.bytes.length,
  });
  assert.equal(m.annotations['org.opencontainers.image.created'], '1970-01-01T00:00:00Z');
  assert.equal(a.manifest.digest, digestOf(a.manifest.bytes));
});

test('an OCI layout output lists the SBOMs as referrers, and copy --referrers carries them on', async (t) => {
  const dir = await context(t);
  const { artifacts, result } = await sboms(dir);
  const out = join(dir, 'out');
  const w = await writeLayout(result, `${out}:v1`, artifacts);
  assert.equal(w.referrers, 2);
  const layout = await OciLayout.open(out);
  for (const [i, img] of result.images.entries()) {
    const refs = await layout.referrers(img.manifest.digest);
    assert.deepEqual(
      refs.map((r) => [r.digest, r.artifactType]),
      [[artifacts[i].manifest.digest, SPDX_JSON]],
    );
  }
  assert.equal((await layout.find()).digest, result.root.digest, "the image is still the layout's one image");
  // Writing again adds nothing twice.
  assert.equal((await writeLayout(result, `${out}:v1`, artifacts)).referrers, 0);
  assert.equal((await layout.index()).manifests.length, 3);

  const copied = join(dir, 'copied');
  const r = await copy(layout, 'v1', await OciLayout.create(copied), 'v1', { referrers: true });
  assert.equal(r.referrers, 2);
  const back = await OciLayout.open(copied);
  const sbom = await back.referrers(result.images[1].manifest.digest);
  assert.equal(sbom.length, 1);
  const m = JSON.parse((await back.manifest(sbom[0].digest)).bytes.toString('utf8'));
  const doc = JSON.parse(await readFile(back.blobPath(m.layers[0].digest), 'utf8'));
  assert.equal(doc.spdxVersion, 'SPDX-2.3');
});

test('a base image is its own package, and the image a DESCENDANT_OF it', () => {
  const digest = `sha256:${'a'.repeat(64)}` as const;
  const base = `sha256:${'b'.repeat(64)}` as const;
  const doc = spdxDocument({
    toolVersion: '1.0.0',
    created: '2024-01-01T00:00:00Z',
    image: { name: 'app', digest, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    base: { name: 'registry.example:5000/team/base:1.2', digest: base },
    layers: [],
    npm: [],
  });
  assertSpdx23(doc);
  const pkg = doc.packages.find((p) => p.SPDXID === 'SPDXRef-BaseImage')!;
  assert.equal(pkg.versionInfo, base);
  assert.equal(
    pkg.externalRefs![0].referenceLocator,
    `pkg:oci/base@sha256%3A${'b'.repeat(64)}?repository_url=registry.example%3A5000/team/base&tag=1.2`,
  );
  assert.deepEqual(
    doc.relationships.find((r) => r.relatedSpdxElement === 'SPDXRef-BaseImage'),
    { spdxElementId: 'SPDXRef-Image', relationshipType: 'DESCENDANT_OF', relatedSpdxElement: 'SPDXRef-BaseImage' },
  );
  assert.equal(doc.name, 'app linux/arm64/v8');
  // No files: the verification code of the empty set (SHA-1 of "").
  assert.equal(doc.packages[0].packageVerificationCode!.packageVerificationCodeValue, sha('sha1', ''));
});

test('npm lockfiles: v1 dependency trees are read too; broken ones are clear errors', () => {
  const v1 = {
    lockfileVersion: 1,
    dependencies: {
      a: {
        version: '1.0.0',
        integrity: 'sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=',
        dependencies: { b: { version: '2.0.0' } },
      },
      t: { version: '3.0.0', dev: true },
    },
  };
  assert.deepEqual(npmPackages(JSON.stringify(v1)), [
    { name: 'a', version: '1.0.0', path: 'node_modules/a', integrity: 'sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=' },
    { name: 'b', version: '2.0.0', path: 'node_modules/a/node_modules/b' },
  ]);
  assert.throws(
    () => npmPackages('{'),
    (e: Error) => e instanceof LockfileError && /package-lock.json: not JSON/.test(e.message),
  );
  assert.throws(
    () => npmPackages('{"name":"x"}', 'npm-shrinkwrap.json'),
    /npm-shrinkwrap.json: neither a "packages" map nor "dependencies"/,
  );
  assert.deepEqual(npmPackages(JSON.stringify({ lockfileVersion: 3, packages: { '': {} } })), []);
});
