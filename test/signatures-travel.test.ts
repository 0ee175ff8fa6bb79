// Signatures travel everywhere images do (issue 20), proved with the real signing tools: an index signed on one
// berth with cosign v2 (tag scheme: `.sig` of the index and of amd64, an `.att` attestation, an `.sbom`), cosign v3
// (arm64: a sigstore bundle referrer) and notation (amd64: a JWS referrer) is
//   - copied with `berth copy --referrers` to another berth, directly and through an OCI layout: `cosign verify`
//     (v2, v3), `cosign verify-attestation`, `notation verify` and `oras discover` succeed on the copy (and cosign
//     fails on a copy made without --referrers, so the check can fail);
//   - pulled through a berth mirror of the first: the same tools succeed through it, and again once the upstream is
//     gone (the mirror's stale tags and referrers list, its cached signatures).
// The in-process details of the mirror's referrers: test/proxy-referrers.test.ts.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startBerth } from './support/berth.js';
import { berth } from './support/builder-fixtures.js';
import { makeClients } from './support/clients.js';
import { makeMultiArchLayout } from './support/oci-layouts.js';
import { findExecutable, ok, requirePeer, run, type RunResult } from './support/peers.js';
import { raw } from './support/registry-client.js';

/** cosign and notation with a private home (keys, trust store and policy, docker config, TUF cache). */
async function signingTools(t: TestContext) {
  const home = await mkdtemp('/tmp/berth-sigs-');
  t.after(() => rm(home, { recursive: true, force: true }));
  const env = {
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    DOCKER_CONFIG: join(home, '.docker'),
    TUF_ROOT: join(home, '.sigstore'),
    COSIGN_PASSWORD: '',
    // cosign tries its public TUF mirror on verify; there is no internet here, so it must fail fast and go on.
    SIGSTORE_NO_CACHE: 'true',
  };
  const cosignBin = findExecutable('cosign')!;
  const notationBin = findExecutable('notation')!;
  const cosign = (args: string[]) => run(cosignBin, args, { env, cwd: home, timeoutMs: 120_000 });
  const notation = (args: string[]) => run(notationBin, args, { env, cwd: home, timeoutMs: 120_000 });
  ok(await cosign(['generate-key-pair']));
  ok(await notation(['cert', 'generate-test', '--default', 'berth-test']));
  const policy = {
    version: '1.0',
    trustPolicies: [
      {
        name: 'berth-test',
        registryScopes: ['*'],
        signatureVerification: { level: 'strict' },
        trustStores: ['ca:berth-test'],
        trustedIdentities: ['*'],
      },
    ],
  };
  await writeFile(join(home, '.config', 'notation', 'trustpolicy.json'), JSON.stringify(policy));
  const key = join(home, 'cosign.key');
  const pub = join(home, 'cosign.pub');
  return {
    home,
    cosign,
    notation,
    sign: (ref: string, more: string[] = []) =>
      cosign(['sign', '--yes', '--key', key, '--tlog-upload=false', '--allow-insecure-registry', ...more, ref]),
    attest: async (ref: string) => {
      const predicate = join(home, 'predicate.json');
      await writeFile(predicate, JSON.stringify({ builder: 'berth-test' }));
      return cosign([
        'attest',
        '--yes',
        '--key',
        key,
        '--tlog-upload=false',
        '--allow-insecure-registry',
        '--type',
        'custom',
        '--predicate',
        predicate,
        ref,
      ]);
    },
    verify: (ref: string) =>
      cosign(['verify', '--key', pub, '--insecure-ignore-tlog', '--allow-insecure-registry', ref]),
    verifyAttestation: (ref: string) =>
      cosign([
        'verify-attestation',
        '--key',
        pub,
        '--insecure-ignore-tlog',
        '--allow-insecure-registry',
        '--type',
        'custom',
        ref,
      ]),
    notationVerify: (ref: string) => notation(['verify', '--insecure-registry', ref]),
    /** cosign v3: a sigstore bundle as an OCI 1.1 referrer (its default format). */
    signV3: (ref: string) =>
      run(
        findExecutable('cosign3')!,
        [
          'sign',
          '--yes',
          '--key',
          key,
          '--tlog-upload=false',
          '--use-signing-config=false',
          '--allow-insecure-registry',
          ref,
        ],
        { env, cwd: home, timeoutMs: 120_000 },
      ),
    verifyV3: async (ref: string) => {
      // An empty trusted root: nothing to check but the key (offline, no transparency log).
      const root = join(home, 'trusted_root.json');
      await writeFile(root, JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1' }));
      return run(
        findExecutable('cosign3')!,
        ['verify', '--key', pub, '--insecure-ignore-tlog', '--allow-insecure-registry', '--trusted-root', root, ref],
        { env, cwd: home, timeoutMs: 120_000 },
      );
    },
  };
}

function passed(r: RunResult, what: string): string {
  assert.equal(r.code, 0, `${what} failed: ${r.command}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The referrers `oras discover` lists for `ref`, as artifact types. */
async function discovered(oras: (a: string[]) => Promise<RunResult>, ref: string): Promise<string[]> {
  const out = ok(await oras(['discover', '--plain-http', '--format', 'json', ref]));
  const doc = JSON.parse(out);
  return (doc.referrers ?? doc.manifests ?? []).map((d: any) => d.artifactType);
}

const NOTARY = 'application/vnd.cncf.notary.signature';

test('signatures travel: berth copy --referrers and a berth mirror carry cosign and notation signatures', async (t) => {
  if (!requirePeer(t, 'cosign', 'cosign3', 'notation', 'oras', 'busybox')) return;
  const tools = await signingTools(t);
  const clients = await makeClients(t);
  const work = await mkdtemp('/tmp/berth-sigs-work-');
  t.after(() => rm(work, { recursive: true, force: true }));

  const source = await startBerth(t);
  const target = await startBerth(t);
  const mirrorConfig = JSON.stringify({
    proxy: {
      upstreams: [
        {
          name: 'source',
          url: source.url,
          prefix: 'src',
          tagTtl: '0s',
          timeout: '3s',
          allowPrivateNetworks: true,
        },
      ],
    },
  });
  const mirror = await startBerth(t, { config: mirrorConfig });

  // An index of two platforms, pushed to the source berth and signed there.
  await mkdir(join(work, 'layout'));
  const image = await makeMultiArchLayout(join(work, 'layout'), {
    tag: 'v1',
    files: { '/etc/sigs': String(Date.now()) },
  });
  const repo = `${source.host}/sigs/app`;
  passed(await berth(['copy', image.ref, `${repo}:v1`]), 'berth copy layout → source');
  const index = image.index.digest;
  const [amd64, arm64] = image.images.map((d) => d.digest);
  // cosign v2 signs the index and amd64 (tag scheme); cosign v3 signs arm64 (a bundle referrer, and nothing else).
  passed(await tools.sign(`${repo}@${index}`), 'cosign sign (index)');
  passed(await tools.sign(`${repo}@${amd64}`), 'cosign sign (amd64)');
  passed(await tools.signV3(`${repo}@${arm64}`), 'cosign v3 sign (arm64)');
  passed(await tools.attest(`${repo}@${amd64}`), 'cosign attest');
  const sbom = join(work, 'sbom.spdx.json');
  await writeFile(sbom, JSON.stringify({ spdxVersion: 'SPDX-2.3', name: 'app', SPDXID: 'SPDXRef-DOCUMENT' }));
  passed(
    await tools.cosign([
      'attach',
      'sbom',
      '--sbom',
      sbom,
      '--type',
      'spdx',
      '--allow-insecure-registry',
      `${repo}@${amd64}`,
    ]),
    'cosign attach sbom',
  );
  passed(await tools.notation(['sign', '--insecure-registry', `${repo}@${amd64}`]), 'notation sign');
  // Sanity: everything verifies where it was signed.
  passed(await tools.verify(`${repo}@${index}`), 'cosign verify on the source');
  passed(await tools.notationVerify(`${repo}@${amd64}`), 'notation verify on the source');

  /** Every check a signed copy must pass at `at` (a repository, no tag). */
  const verifyAll = async (at: string) => {
    for (const d of [index, amd64]) passed(await tools.verify(`${at}@${d}`), `cosign verify ${at}@${d}`);
    passed(await tools.verifyV3(`${at}@${arm64}`), `cosign v3 verify ${at}@${arm64}`);
    passed(await tools.verifyAttestation(`${at}@${amd64}`), `cosign verify-attestation ${at}`);
    passed(await tools.notationVerify(`${at}@${amd64}`), `notation verify ${at}`);
    assert.ok((await discovered(clients.oras, `${at}@${amd64}`)).includes(NOTARY), `oras discover ${at}`);
  };

  await t.test('copy --referrers brings the .sig/.att/.sbom tags and the notation referrer', async () => {
    const dst = `${target.host}/copied/app`;
    const out = passed(await berth(['copy', '--referrers', '--json', `${repo}:v1`, `${dst}:v1`]), 'berth copy');
    // 2 .sig (index, amd64), 1 .att, 1 .sbom, 1 notation signature, 1 cosign v3 bundle.
    assert.equal(JSON.parse(out).referrers, 6, out);
    await verifyAll(dst);
    const sbomTag = `sha256-${amd64.slice(7)}.sbom`;
    assert.equal((await raw(target.url, 'HEAD', `/v2/copied/app/manifests/${sbomTag}`)).status, 200);
    // A second copy finds everything there.
    const again = passed(await berth(['copy', '--referrers', '--json', `${repo}:v1`, `${dst}:v1`]), 'berth re-copy');
    const r = JSON.parse(again);
    assert.equal(r.skipped, true);
    assert.equal(r.manifests, 0);
  });

  await t.test('control: without --referrers cosign finds no signature on the copy', async () => {
    const dst = `${target.host}/unsigned/app`;
    passed(await berth(['copy', `${repo}:v1`, `${dst}:v1`]), 'berth copy');
    const r = await tools.verify(`${dst}@${amd64}`);
    assert.notEqual(r.code, 0, 'cosign verify must fail on an unsigned copy');
    assert.match(r.stderr, /no signatures found|no matching signatures/i);
    assert.notEqual((await tools.notationVerify(`${dst}@${amd64}`)).code, 0);
  });

  await t.test('through an OCI layout: registry → oci:DIR → registry keeps every signature', async () => {
    const dir = join(work, 'signed-layout');
    passed(await berth(['copy', '--referrers', `${repo}:v1`, `oci:${dir}:v1`]), 'berth copy → layout');
    const dst = `${target.host}/from-layout/app`;
    passed(await berth(['copy', '--referrers', `oci:${dir}:v1`, `${dst}:v1`]), 'berth copy layout →');
    await verifyAll(dst);
    // cosign's tags in index.json do not make the layout ambiguous: `oci:DIR` still names the one image.
    passed(await berth(['copy', `oci:${dir}`, `${target.host}/from-layout/bare:v1`]), 'berth copy oci:DIR');
  });

  await t.test('through a mirror: the same checks pass, and still pass when the upstream is gone', async () => {
    const through = `${mirror.host}/src/sigs/app`;
    await verifyAll(through);
    await source.stop();
    await verifyAll(through);
    assert.match(mirror.logs(), /serving a stale referrers list/);
  });
});
