import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseDigest,
  isDigest,
  digestOf,
  type DigestError,
  parseReference,
  formatReference,
  isValidName,
  isValidTag,
  parseManifest,
  type ManifestError,
  canonicalJson,
  parsePlatform,
  platformMatches,
  parseStrictJson,
  JsonError,
  OCI_MANIFEST,
  OCI_INDEX,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
} from './index.js';

const hex64 = 'a'.repeat(64);

test('digests: sha256 and sha512 parse; malformed and unsupported are told apart', () => {
  assert.equal(parseDigest(`sha256:${hex64}`).encoded, hex64);
  assert.equal(parseDigest(`sha512:${'b'.repeat(128)}`).algorithm, 'sha512');
  for (const bad of [
    `sha256:${'a'.repeat(63)}`,
    `sha256:${'A'.repeat(64)}`,
    'sha256:',
    ':abc',
    'nocolon',
    `sha512:${hex64}`,
  ]) {
    assert.throws(
      () => parseDigest(bad),
      (e: DigestError) => e.reason === 'malformed',
      bad,
    );
  }
  assert.throws(
    () => parseDigest(`md5:${'a'.repeat(32)}`),
    (e: DigestError) => e.reason === 'unsupported',
  );
  assert.equal(digestOf('hello'), 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
  assert.ok(isDigest(digestOf('x', 'sha512')));
});

test('names and tags follow the distribution grammar', () => {
  for (const ok of ['a', 'library/alpine', 'a.b/c_d/e__f/g-h', 'a--b', 'x'.repeat(255)]) assert.ok(isValidName(ok), ok);
  for (const bad of ['', 'A', 'a/', '/a', 'a//b', 'a/../b', '..', 'a_', '-a', 'a___b', 'x'.repeat(256), 'a%2fb'])
    assert.ok(!isValidName(bad), bad);
  for (const ok of ['latest', 'v1.2.3', '_x', 'A-b_c.d', 'a'.repeat(128)]) assert.ok(isValidTag(ok), ok);
  for (const bad of ['', '-x', '.x', 'a'.repeat(129), 'a:b', 'a/b']) assert.ok(!isValidTag(bad), bad);
});

test('references: host:port, nested names, tag and digest; docker.io normalisation', () => {
  const d = `sha256:${hex64}`;
  assert.deepEqual(parseReference(`localhost:5000/a/b:tag@${d}`), {
    registry: 'localhost:5000',
    repository: 'a/b',
    tag: 'tag',
    digest: d,
  });
  assert.deepEqual(parseReference('alpine'), {
    registry: 'docker.io',
    repository: 'library/alpine',
    tag: 'latest',
    digest: undefined,
  });
  assert.deepEqual(parseReference(`ghcr.io/o/r@${d}`), {
    registry: 'ghcr.io',
    repository: 'o/r',
    tag: undefined,
    digest: d,
  });
  assert.equal(parseReference('[::1]:5000/x:1').registry, '[::1]:5000');
  assert.equal(formatReference(parseReference('127.0.0.1:5000/x/y:z')), '127.0.0.1:5000/x/y:z');
  for (const bad of ['', 'UPPER/x', 'a/b:-bad', 'a@sha256:zz', 'a/b:t:u', 'x//y'])
    assert.throws(() => parseReference(bad), /invalid reference/, bad);
});

const desc = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${hex64}`, size: 2 };
const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc, layers: [] };

test('manifests: type from Content-Type or the document, blobs and subject extracted', () => {
  const p = parseManifest(Buffer.from(JSON.stringify(manifest)), OCI_MANIFEST);
  assert.equal(p.mediaType, OCI_MANIFEST);
  assert.deepEqual(p.blobs, [desc]);
  assert.equal(p.artifactType, desc.mediaType);
  const noType = { ...manifest } as Record<string, unknown>;
  delete noType.mediaType;
  assert.equal(parseManifest(Buffer.from(JSON.stringify(noType)), OCI_MANIFEST).mediaType, OCI_MANIFEST);
  const idx = parseManifest(
    Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ ...desc, mediaType: OCI_MANIFEST }], subject: desc })),
    'application/json',
  );
  assert.equal(idx.mediaType, OCI_INDEX);
  assert.equal(idx.subject?.digest, desc.digest);
  const docker = { schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: desc, layers: [] };
  assert.equal(parseManifest(Buffer.from(JSON.stringify(docker)), DOCKER_MANIFEST).mediaType, DOCKER_MANIFEST);
  const list = { schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: [] };
  assert.equal(parseManifest(Buffer.from(JSON.stringify(list)), null).mediaType, DOCKER_MANIFEST_LIST);
});

test('manifests: ambiguous and invalid documents are rejected with the field named', () => {
  const reject = (doc: unknown, type: string | null, re: RegExp) =>
    assert.throws(
      () => parseManifest(Buffer.from(typeof doc === 'string' ? doc : JSON.stringify(doc)), type),
      (e: ManifestError) => re.test(e.message),
    );
  reject({ ...manifest, manifests: [] }, OCI_MANIFEST, /ambiguous/);
  reject({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [], config: desc }, OCI_INDEX, /ambiguous/);
  reject(manifest, DOCKER_MANIFEST, /contradicts/);
  reject('{', OCI_MANIFEST, /not valid JSON/);
  reject([], OCI_MANIFEST, /JSON object/);
  reject({ schemaVersion: 1 }, null, /schema 1/);
  reject({ ...manifest, layers: [{ ...desc, size: -1 }] }, OCI_MANIFEST, /\/layers\/0\/size/);
  reject({ ...manifest, config: { ...desc, digest: 'nope' } }, OCI_MANIFEST, /\/config\/digest/);
  reject(manifest, 'text/plain', /unsupported manifest media type/);
});

test('canonical JSON sorts keys, drops undefined, refuses non-finite numbers', () => {
  assert.equal(
    canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: 1, y: undefined } }),
    '{"a":[true,null,"x"],"b":1,"c":{"z":1}}',
  );
  assert.throws(() => canonicalJson({ a: NaN }));
  // Integer-like keys sort as strings too ("10" < "9"), although JS objects list them first, numerically.
  assert.equal(
    canonicalJson({ b: { '9': 1, '10': 2, a: [undefined] }, '2': 'x' }),
    '{"2":"x","b":{"10":2,"9":1,"a":[null]}}',
  );
  assert.equal(canonicalJson({ s: 'é\u2028"\\' }), JSON.stringify({ s: 'é\u2028"\\' }));
  // Objects already in key order are written as they are (integer-like keys first is the right order here).
  assert.equal(
    canonicalJson({ '1': 1, '2': [{ a: 1, b: undefined }], a: { A: 1, a: 2 } }),
    '{"1":1,"2":[{"a":1}],"a":{"A":1,"a":2}}',
  );
  assert.equal(canonicalJson({ $x: 1, '5': 2 }), '{"$x":1,"5":2}');
});

test('platforms', () => {
  assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.throws(() => parsePlatform('linux'), /os\/arch/);
  for (const [bad, re] of [
    ['linux/../amd64', /"\.\." is not a valid architecture/],
    ['linux/./amd64', /"\." is not a valid architecture/],
    ['../linux/amd64', /"\.\." is not a valid os/],
    ['linux/amd64/..', /"\.\." is not a valid variant/],
    ['linux/amd64/', /"" is not a valid variant/],
    ['Linux/amd64', /"Linux" is not a valid os/],
    ['linux/-amd64', /"-amd64" is not a valid architecture/],
    ['linux/a/b/c', /expected os\/arch\[\/variant\]/],
  ] as const)
    assert.throws(() => parsePlatform(bad), re, bad);
  assert.deepEqual(parsePlatform('linux/ppc64le'), { os: 'linux', architecture: 'ppc64le' });
  assert.deepEqual(parsePlatform('wasip1/wasm'), { os: 'wasip1', architecture: 'wasm' });
  assert.ok(
    platformMatches({ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
  );
  assert.ok(!platformMatches({ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }));
});

test('strict JSON: bytes with more than one meaning are refused, with the place named', () => {
  const reject = (bytes: Buffer | string, re: RegExp) =>
    assert.throws(
      () => parseStrictJson(Buffer.from(bytes as string)),
      (e: JsonError) => e instanceof JsonError && re.test(e.message),
      String(bytes),
    );
  reject('{"a":1,"a":2}', /duplicate key "\/a"/);
  reject('{"layers":[{"size":1},{"size":2,"size":3}]}', /duplicate key "\/layers\/1\/size"/);
  reject('{"a":1,"\\u0061":2}', /duplicate key "\/a"/); // the same key, escaped
  reject('{"x":{"a/b":1,"a\\/b":2}}', /duplicate key "\/x\/a~1b"/);
  reject(
    Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
    /not valid UTF-8 \(first bad byte near offset [67]\)/,
  );
  reject(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{}')]), /byte order mark/);
  reject('{"a":["ok","\\ud800"]}', /"\/a\/1" has a lone surrogate/);
  reject('{"size":9007199254740993}', /beyond 2\^53/);
  reject('{"a":', /not valid JSON/);
  // Same keys in different objects, escaped strings that are keys' values, a surrogate pair, big floats: all fine.
  assert.deepEqual(
    parseStrictJson(Buffer.from('{"a":{"a":1},"b":[{"a":"\\"a\\""},{"a":"\\ud83d\\ude00"}],"c":1e300,"d":-0.5}')),
    {
      a: { a: 1 },
      b: [{ a: '"a"' }, { a: '😀' }],
      c: 1e300,
      d: -0.5,
    },
  );
  // parseManifest is strict only when asked (stored documents from before must still parse, e.g. for GC).
  const dup = Buffer.from(
    '{"schemaVersion":2,"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:' +
      'a'.repeat(64) +
      '","size":2},"layers":[]}',
  );
  assert.equal(parseManifest(dup, OCI_MANIFEST).mediaType, OCI_MANIFEST);
  assert.throws(() => parseManifest(dup, OCI_MANIFEST, { strict: true }), /manifest duplicate key "\/schemaVersion"/);
});
