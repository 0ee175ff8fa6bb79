// The referrers API: filter by artifactType, pagination, annotations, artifactType fallback, deletes, missing subject.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startBerth } from './support/berth.js';
import { raw, sha256, pushBlob, imageManifest, pushManifest } from './support/registry-client.js';

test('referrers: filtering, pagination, annotations, deletes', async (t) => {
  const berth = await startBerth(t);
  const base = berth.url;
  const name = 'ref/repo';
  const empty = { digest: await pushBlob(base, name, '{}'), size: 2 };
  const subjectBody = imageManifest(empty, []);
  const subject = (await pushManifest(base, name, 'v1', subjectBody)).header('docker-content-digest')!;
  const subjectDesc = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: subject,
    size: subjectBody.length,
  };

  const pushed: string[] = [];
  for (const [i, type] of [
    'application/vnd.example.sig',
    'application/vnd.example.sbom',
    'application/vnd.example.sig',
  ].entries()) {
    const body = imageManifest(empty, [], { artifactType: type, subject: subjectDesc, annotations: { n: String(i) } });
    const res = await pushManifest(base, name, sha256(body), body);
    assert.equal(res.status, 201);
    assert.equal(res.header('oci-subject'), subject);
    pushed.push(res.header('docker-content-digest')!);
  }
  // No artifactType: the config media type stands in.
  const plain = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.example.config+json', ...empty },
      layers: [],
      subject: subjectDesc,
    }),
  );
  pushed.push((await pushManifest(base, name, sha256(plain), plain)).header('docker-content-digest')!);

  const all = await raw(base, 'GET', `/v2/${name}/referrers/${subject}`);
  assert.equal(all.status, 200);
  assert.equal(all.header('content-type'), 'application/vnd.oci.image.index.v1+json');
  const index = all.json();
  assert.equal(index.manifests.length, 4);
  assert.deepEqual(
    index.manifests.map((m: any) => m.digest),
    [...pushed].sort(),
  );
  const sbom = index.manifests.find((m: any) => m.artifactType === 'application/vnd.example.sbom');
  assert.deepEqual(sbom.annotations, { n: '1' });
  assert.ok(index.manifests.some((m: any) => m.artifactType === 'application/vnd.example.config+json'));

  const sigs = await raw(base, 'GET', `/v2/${name}/referrers/${subject}?artifactType=application/vnd.example.sig`);
  assert.equal(sigs.header('oci-filters-applied'), 'artifactType');
  assert.equal(sigs.json().manifests.length, 2);

  const page1 = await raw(base, 'GET', `/v2/${name}/referrers/${subject}?n=3`);
  assert.equal(page1.json().manifests.length, 3);
  const link = /<([^>]+)>; rel="next"/.exec(page1.header('link') ?? '')?.[1];
  assert.ok(link, 'Link header for the next page');
  const page2 = await raw(base, 'GET', link!);
  assert.equal(page2.json().manifests.length, 1);
  assert.equal(page2.header('link'), undefined);

  // Unknown subject: an empty index, not a 404.
  const none = await raw(base, 'GET', `/v2/${name}/referrers/${sha256('nothing')}`);
  assert.equal(none.status, 200);
  assert.deepEqual(none.json().manifests, []);

  // Deleting a referrer removes it from the list.
  assert.equal((await raw(base, 'DELETE', `/v2/${name}/manifests/${pushed[1]}`)).status, 202);
  assert.equal((await raw(base, 'GET', `/v2/${name}/referrers/${subject}`)).json().manifests.length, 3);

  // A referrer may be pushed before its subject exists.
  const orphanSubject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256('later'), size: 5 };
  const orphan = imageManifest(empty, [], { artifactType: 'application/vnd.example.sig', subject: orphanSubject });
  assert.equal((await pushManifest(base, name, sha256(orphan), orphan)).status, 201);
  assert.equal((await raw(base, 'GET', `/v2/${name}/referrers/${orphanSubject.digest}`)).json().manifests.length, 1);
});
