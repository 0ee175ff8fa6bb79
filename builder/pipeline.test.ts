// The build pipeline as a library: runBuild() to an OCI layout gives byte-for-byte what `berth build` writes,
// reports what it did as events, honours and writes berth.lock, and its errors name options, never CLI flags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { berth, writeTree } from '../test/support/builder-fixtures.js';
import { build } from './build.js';
import { readLock } from './lock.js';
import { dockerArchiveOutput, ociLayoutOutput, OutputError, registryOutput, writeArchive } from './outputs.js';
import { runBuild, type PipelineEvent } from './pipeline.js';
import { BuildOptionError } from './spec.js';
import { Client } from '../client/remote.js';
import { ContentMismatchError } from '../client/verify.js';

const SPEC = `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
layers:
  - name: bin
    files:
      - { src: "dist/{arch}/app", dest: /usr/local/bin/app, mode: "0755" }
  - name: static
    properties: { uid: 101, gid: 101 }
    files:
      - { src: "static/**", dest: /srv/static/ }
      - { inline: "built by berth\\n", dest: /etc/motd }
config: { entrypoint: [/usr/local/bin/app], env: { PORT: "8080" } }
annotations: { org.opencontainers.image.title: pipeline }
`;

const FILES = {
  'berth.yaml': SPEC,
  'dist/amd64/app': '#!/bin/sh\necho amd64\n',
  'dist/arm64/app': '#!/bin/sh\necho arm64\n',
  'static/index.html': '<h1>hi</h1>\n',
  // The SBOM lists the context's npm packages: the lockfile makes it part of what must match.
  'package-lock.json': JSON.stringify({
    name: 'x',
    version: '1.0.0',
    lockfileVersion: 3,
    packages: { '': { name: 'x', version: '1.0.0' } },
  }),
};

async function context(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-pipeline-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeTree(dir, FILES);
  return dir;
}

/** Every file of a directory tree, by relative path. */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    out[relative(dir, p)] = (await readFile(p)).toString('base64');
  }
  return out;
}

test('runBuild to an OCI layout writes exactly what `berth build --oci-layout` writes (images, SBOM referrers, index.json)', async (t) => {
  const dir = await context(t);
  const events: PipelineEvent[] = [];
  const r = await runBuild({
    file: join(dir, 'berth.yaml'),
    cacheDir: join(dir, 'cache-api'),
    outputs: [ociLayoutOutput(join(dir, 'api:v1'))],
    toolVersion: JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')).version,
    onEvent: (e) => events.push(e),
  });
  const cli = await berth(
    ['build', '-f', join(dir, 'berth.yaml'), '--cache', join(dir, 'cache-cli'), '--oci-layout', join(dir, 'cli:v1')],
    {
      env: { SOURCE_DATE_EPOCH: undefined },
    },
  );
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(cli.stdout.trim(), r.build.root.digest);
  const api = await tree(join(dir, 'api'));
  assert.deepEqual(api, await tree(join(dir, 'cli')));
  assert.ok(Object.keys(api).length > 10, 'the layout holds manifests, configs, layers and SBOMs');

  assert.equal(r.sboms.length, 2, 'one SBOM per platform image');
  assert.deepEqual(
    r.outputs.map((o) => [o.output.kind, o.digest]),
    [['oci-layout', r.build.root.digest]],
  );
  const types = events.map((e) => e.type);
  assert.equal(types.filter((x) => x === 'layer').length, 4);
  assert.equal(types.filter((x) => x === 'layer-start').length, 4, 'each layer announces its start');
  // After the layers: the output announced, the SBOMs (made while its blobs are copied), then the output finished.
  assert.deepEqual(
    types.filter((x) => !x.startsWith('layer')),
    ['output-start', 'sbom', 'sbom', 'output'],
  );
});

test('SBOMs are made while the blobs are copied; when they cannot be made, the tag is left where it was', async (t) => {
  const dir = await context(t);
  const cacheDir = join(dir, 'cache');
  const out = join(dir, 'out');
  const first = await runBuild({ file: join(dir, 'berth.yaml'), cacheDir, outputs: [ociLayoutOutput(`${out}:v1`)] });
  const index = () => readFile(join(out, 'index.json'), 'utf8');
  const before = await index();
  assert.ok(before.includes(first.build.root.digest));
  // A changed file and a lockfile the SBOM cannot read: the image builds, its SBOM fails.
  await writeFile(join(dir, 'static/index.html'), '<h1>changed</h1>\n');
  await writeFile(join(dir, 'package-lock.json'), '{ not json');
  await assert.rejects(
    runBuild({ file: join(dir, 'berth.yaml'), cacheDir, outputs: [ociLayoutOutput(`${out}:v1`)] }),
    /package-lock\.json: not JSON/,
  );
  assert.equal(await index(), before, 'v1 still names the first build; no new manifest is listed');
});

test('runBuild: checkReproducible builds twice and reports it; lock "write" pins the base it built from', async (t) => {
  const { dir, base } = await baseAndChild(t, 'platforms: [linux/arm64]\n');
  const events: PipelineEvent[] = [];
  const child = await runBuild({
    file: join(dir, 'child.yaml'),
    cacheDir: join(dir, 'cache'),
    client: new Client({}),
    lock: 'write',
    checkReproducible: true,
    noGit: true,
    onEvent: (e) => events.push(e),
  });
  assert.deepEqual(
    events.map((e) => e.type),
    ['reproducible', 'lock'],
    'no outputs, so no SBOM is made',
  );
  assert.equal(child.build.base?.digest, base.build.root.digest);
  assert.deepEqual((await readLock(join(dir, 'child.yaml')))?.base, {
    ref: `oci-layout:${join(dir, 'base')}:v1`,
    digest: base.build.root.digest,
  });
});

test('runBuild with sign: the provenance names the spec, the base by digest, the context and berth; rebuilt, the same', async (t) => {
  const { dir, base } = await baseAndChild(
    t,
    'platforms: [linux/amd64, linux/arm64]\nlayers:\n  - name: extra\n    files:\n      - { inline: "child\\n", dest: /etc/child }\n',
  );
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signedBuild = (out: string) =>
    runBuild({
      file: join(dir, 'child.yaml'),
      cacheDir: join(dir, 'cache'),
      client: new Client({}),
      outputs: [ociLayoutOutput(join(dir, out))],
      noGit: true,
      toolVersion: '9.9.9-test',
      sign: { privateKey, publicKey },
    });
  const a = await signedBuild('a:v1');
  const b = await signedBuild('b:v1');
  // Reproducible: the same image digests (the signatures differ: ECDSA is randomized; the statements do not).
  assert.equal(a.build.root.digest, b.build.root.digest);
  const spec = createHash('sha256')
    .update(await readFile(join(dir, 'child.yaml')))
    .digest('hex');
  const statement = (x: typeof a, platform: string, predicateType: string) => {
    const img = x.build.images.find((i) => `${i.platform.os}/${i.platform.architecture}` === platform)!;
    const att = x.attestations.find(
      (s) =>
        s.subject.digest === img.manifest.digest &&
        JSON.parse(s.manifest.bytes.toString()).annotations['dev.sigstore.bundle.predicateType'] === predicateType,
    );
    assert.ok(att, `no ${predicateType} attestation for ${platform}`);
    const layer = JSON.parse(att.manifest.bytes.toString()).layers[0];
    const bundle = JSON.parse(att.blobs.get(layer.digest)!.toString());
    return { img, st: JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString()) };
  };
  for (const platform of ['linux/amd64', 'linux/arm64']) {
    const { img, st } = statement(a, platform, 'https://slsa.dev/provenance/v1');
    assert.deepEqual(st.subject, [{ name: platform, digest: { sha256: img.manifest.digest.slice(7) } }]);
    const def = st.predicate.buildDefinition;
    assert.deepEqual(def.externalParameters.spec.digest, { sha256: spec });
    assert.equal(def.externalParameters.platform, platform);
    const [baseDep, ctx] = def.resolvedDependencies;
    assert.equal(baseDep.name, 'base');
    assert.equal(`sha256:${baseDep.digest.sha256}`, base.build.root.digest, 'the base, by digest');
    assert.equal(ctx.name, 'context');
    assert.deepEqual(
      ctx.annotations.layers.map((l: { digest: string }) => l.digest),
      img.layers.map((l) => l.layer.descriptor.digest),
    );
    assert.deepEqual(st.predicate.runDetails.builder.version, { berth: '9.9.9-test' });
    // The rebuild states exactly the same.
    assert.deepEqual(statement(b, platform, 'https://slsa.dev/provenance/v1').st, st);
    // The SBOM is attested as well, about the same image.
    const sbom = statement(a, platform, 'https://spdx.dev/Document').st;
    assert.equal(sbom.subject[0].digest.sha256, img.manifest.digest.slice(7));
    assert.equal(sbom.predicate.spdxVersion, 'SPDX-2.3');
  }
  // Never as a platform of the index: the index lists the two images only.
  const index = JSON.parse(a.build.root.bytes.toString());
  assert.deepEqual(index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture).sort(), [
    'amd64',
    'arm64',
  ]);
});

test('builder errors name the option at fault, never a CLI flag', async (t) => {
  const dir = await context(t);
  const file = join(dir, 'berth.yaml');
  const noFlag = (e: Error) => assert.doesNotMatch(e.message, /--[a-z]/, e.message);

  await assert.rejects(
    build({ file, cacheDir: join(dir, 'cache'), platforms: [{ os: 'linux', architecture: 's390x' }], noGit: true }),
    (e: Error) => {
      assert.ok(e instanceof BuildOptionError && e.option === 'platforms', String(e));
      assert.match(e.message, /linux\/s390x is not in the platforms of .*berth\.yaml \(linux\/amd64, linux\/arm64\)/);
      noFlag(e);
      return true;
    },
  );

  await writeFile(join(dir, 'berth.lock'), '{');
  await assert.rejects(runBuild({ file }), (e: Error) => {
    assert.ok(e instanceof BuildOptionError && e.option === 'lock', String(e));
    noFlag(e);
    return true;
  });
  await rm(join(dir, 'berth.lock'));

  assert.throws(
    () => registryOutput(`localhost:5000/a@sha256:${'0'.repeat(64)}`, new Client({})),
    (e: Error) => {
      assert.ok(e instanceof OutputError && e.output.kind === 'registry', String(e));
      noFlag(e);
      return true;
    },
  );

  const result = await build({ file, cacheDir: join(dir, 'cache'), noGit: true });
  for (const platform of [undefined, { os: 'linux', architecture: 's390x' }]) {
    await assert.rejects(writeArchive(result, join(dir, 'a.tar'), [], platform), (e: Error) => {
      assert.ok(e instanceof OutputError && e.output.kind === 'docker-archive', String(e));
      assert.match(e.message, /linux\/amd64, linux\/arm64/);
      noFlag(e);
      return true;
    });
  }
  // Picking a platform makes it work; the report names the image written.
  const r = await runBuild({
    file,
    cacheDir: join(dir, 'cache'),
    outputs: [dockerArchiveOutput(join(dir, 'a.tar'), { platform: { os: 'linux', architecture: 'arm64' } })],
    noGit: true,
  });
  assert.equal(r.outputs[0].digest, r.build.images[1].manifest.digest);
  assert.equal(r.sboms.length, 0, 'a docker-archive holds no referrers, so no SBOM is made');
});

/** The context's image built into the OCI layout `base:v1`, and child.yaml on that base with `rest` appended. */
async function baseAndChild(t: Parameters<typeof context>[0], rest: string) {
  const dir = await context(t);
  const base = await runBuild({
    file: join(dir, 'berth.yaml'),
    cacheDir: join(dir, 'cache'),
    outputs: [ociLayoutOutput(join(dir, 'base:v1'))],
    noGit: true,
  });
  await writeFile(
    join(dir, 'child.yaml'),
    `apiVersion: berth/v1\nkind: Image\nbase: oci-layout:${join(dir, 'base')}:v1\n${rest}`,
  );
  return { dir, base };
}

test('an OCI layout links the layers this build wrote unread, and reads a layer its cache already held', async (t) => {
  const dir = await context(t);
  const cacheDir = join(dir, 'cache');
  const first = await runBuild({ file: join(dir, 'berth.yaml'), cacheDir, outputs: [ociLayoutOutput(join(dir, 'a'))] });
  const layers = first.build.images.flatMap((i) => i.layers.map((l) => l.layer.descriptor));
  assert.equal(layers.length, 4);
  assert.ok(
    layers.every((d) => first.build.source.localFileVerified?.(d)),
    'a layer built now was hashed as it was written',
  );
  // A cached blob changed on disk (a new file under its name: the first layout's hard link keeps the good bytes).
  const victim = first.build.blobs.path(layers[0].digest);
  const bad = Buffer.from(await readFile(victim));
  bad[bad.length - 1] ^= 0xff;
  await writeFile(`${victim}.bad`, bad);
  await rename(`${victim}.bad`, victim);
  const second = await build({ file: join(dir, 'berth.yaml'), cacheDir });
  assert.equal(second.source.localFileVerified?.(layers[0]), false, 'a cache hit was written by an earlier run');
  await assert.rejects(
    runBuild({ file: join(dir, 'berth.yaml'), cacheDir, outputs: [ociLayoutOutput(join(dir, 'b'))] }),
    ContentMismatchError,
  );
  const [, hex] = layers[0].digest.split(':');
  await assert.rejects(readFile(join(dir, 'b', 'blobs', 'sha256', hex)), { code: 'ENOENT' });
  await readFile(join(dir, 'a', 'blobs', 'sha256', hex)); // the first layout is whole
});
