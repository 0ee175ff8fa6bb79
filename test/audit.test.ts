// The audit log in htpasswd mode and with repository policies (in process): pushes, pulls and deletes with their
// subject, ACL and immutable-tag denials (403 DENIED) with the reason, failed Basic logins — and no password.
// Then a token-mode session on `berth serve` followed by `berth gc`: refresh tokens, a referrer's subject, retention
// and GC deletions. The token-mode session with real clients through nginx is test/nginx.test.ts.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { basic, hash, makeRegistry, PASSWORDS, pushImage, user } from './support/auth-fixtures.js';
import { startBerth } from './support/berth.js';
import { ok, run } from './support/peers.js';
import { sha256 } from './support/registry-client.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

test('audit: push, pull, delete, ACL and immutable-tag denials, failed logins; no password in the file', async (t) => {
  const dir = await mkdtemp('/tmp/berth-audit-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.jsonl');
  const { app, registry } = makeRegistry(
    {
      mode: 'htpasswd',
      users: [user('alice', ['dev']), user('bob')],
      acl: [
        { repositories: ['team/**'], subjects: ['group:dev'], actions: ['pull', 'push', 'delete'] },
        { repositories: ['team/**'], subjects: ['user:bob'], actions: ['pull'] },
      ],
    },
    { audit: { enabled: true, output: file }, immutableTags: [{ repositories: ['team/**'], tags: ['v*'] }] },
  );
  const alice = basic('alice');
  const pushed = await pushImage(app, alice, 'team/app', 'v1');
  assert.deepEqual(pushed.statuses, [201, 201, 201]);
  assert.equal(
    (await app.request('http://reg.test/v2/team/app/manifests/v1', { headers: { Authorization: basic('bob') } }))
      .status,
    200,
  );
  // bob may not push; nobody may delete the immutable v1; a wrong password.
  assert.equal((await pushImage(app, basic('bob'), 'team/app', 'v2')).statuses[0], 403);
  const del = await app.request('http://reg.test/v2/team/app/manifests/v1', {
    method: 'DELETE',
    headers: { Authorization: alice },
  });
  assert.equal(del.status, 403);
  assert.equal(
    (await app.request('http://reg.test/v2/', { headers: { Authorization: basic('alice', 'guess-123') } })).status,
    401,
  );
  // A mutable tag is deleted.
  await pushImage(app, alice, 'team/app', 'latest');
  const ok = await app.request('http://reg.test/v2/team/app/manifests/latest', {
    method: 'DELETE',
    headers: { Authorization: alice },
  });
  assert.equal(ok.status, 202);
  await registry.audit!.close();

  const { text, events, find } = await readAudit(file);
  find({
    event: 'push',
    actor: 'alice',
    repository: 'team/app',
    tag: 'v1',
    digest: pushed.manifestDigest,
    object: 'manifest',
  });
  find({ event: 'pull', actor: 'bob', repository: 'team/app', tag: 'v1', digest: pushed.manifestDigest });
  const acl = find({ event: 'access.denied', actor: 'bob', repository: 'team/app', code: 'DENIED' });
  assert.deepEqual(acl.scopes, ['repository:team/app:pull,push']);
  assert.match(acl.reason, /"bob" may not pull\+push team\/app/);
  const immutable = find({ event: 'access.denied', actor: 'alice', code: 'DENIED' });
  assert.match(immutable.reason, /immutable/);
  find({ event: 'login', outcome: 'failure', account: 'alice', method: 'password' });
  find({ event: 'delete', actor: 'alice', repository: 'team/app', tag: 'latest', object: 'manifest' });
  for (const e of events) {
    assert.match(e.time, /^\d{4}-/);
    assert.ok(['success', 'failure', 'denied', 'throttled'].includes(e.outcome));
  }
  for (const secret of [PASSWORDS.alice, PASSWORDS.bob, 'guess-123'])
    assert.ok(!text.includes(secret), 'no password in the audit log');
  assert.doesNotMatch(text, /Basic |Authorization/i);
});

test('audit over a scripted session of berth serve and berth gc: refresh tokens, a referrer with its subject, retention and GC deletions; no secret', async (t) => {
  const dir = await mkdtemp('/tmp/berth-audit-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.jsonl');
  const config = [
    'auth:',
    '  mode: token',
    `  users: [{ name: alice, passwordHash: "${hash(PASSWORDS.alice!)}" }]`,
    '  acl: [{ repositories: ["**"], subjects: ["user:alice"], actions: ["*"] }]',
    `audit: { enabled: true, output: ${file} }`,
    'retention: { policies: [{ repositories: ["team/**"], keepLast: 1 }] }',
    '',
  ].join('\n');
  const berth = await startBerth(t, { config });
  // The in-process helpers, pointed at the running server.
  const app = { request: (url: string, init?: RequestInit) => fetch(url.replace('http://reg.test', berth.url), init) };
  const scope = 'repository:team/app:pull,push,delete';
  const issued = await app.request(
    `http://reg.test/token?service=berth&scope=${scope}&offline_token=true&client_id=audit-test`,
    { headers: { Authorization: basic('alice') } },
  );
  assert.equal(issued.status, 200);
  const { token, refresh_token: refresh } = (await issued.json()) as { token: string; refresh_token: string };
  const exchange = (refreshToken: string) =>
    app.request('http://reg.test/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, service: 'berth', scope }),
    });
  const refreshed = await exchange(refresh);
  assert.equal(refreshed.status, 200);
  const bearer = `Bearer ${((await refreshed.json()) as { token: string }).token}`;
  assert.notEqual((await exchange('berth_refresh_not-a-real-one')).status, 200);

  // Two tags (retention keeps the newest), then a referrer whose subject is v2.
  const v1 = await pushImage(app as never, bearer, 'team/app', 'v1', Buffer.from('layer one'));
  await new Promise((r) => setTimeout(r, 1100)); // push times are the tag files' mtimes
  const v2 = await pushImage(app as never, bearer, 'team/app', 'v2', Buffer.from('layer two'));
  assert.deepEqual([...v1.statuses, ...v2.statuses], [201, 201, 201, 201, 201, 201]);
  const empty = Buffer.from('{}');
  const put = (path: string, body: Buffer, type?: string) =>
    app.request(`http://reg.test/v2/team/app/${path}`, {
      method: type ? 'PUT' : 'POST',
      body: new Uint8Array(body),
      headers: { Authorization: bearer, ...(type ? { 'Content-Type': type } : {}) },
    });
  assert.equal((await put(`blobs/uploads/?digest=${sha256(empty)}`, empty)).status, 201);
  const v2Manifest = await (
    await app.request(`http://reg.test/v2/team/app/manifests/v2`, {
      headers: { Authorization: bearer, Accept: 'application/vnd.oci.image.manifest.v1+json' },
    })
  ).arrayBuffer();
  const sbom = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: 'application/spdx+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: 2 },
      layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: 2 }],
      subject: {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: v2.manifestDigest,
        size: v2Manifest.byteLength,
      },
    }),
  );
  const referrer = await put(`manifests/${sha256(sbom)}`, sbom, 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(referrer.status, 201);
  await berth.stop();

  // berth gc on the same storage: retention drops v1 (keepLast 1), GC then removes its manifest and layer.
  const gc = await run(process.execPath, [
    BERTH,
    'gc',
    '-c',
    `${berth.root}-config.yaml`,
    '--root',
    berth.root,
    '--grace',
    '0s',
    '--delete-untagged',
  ]);
  ok(gc);

  const { text, events, find } = await readAudit(file);
  find({ event: 'login', outcome: 'success', actor: 'alice', address: '127.0.0.1' });
  find({ event: 'token.issued', actor: 'alice', refreshToken: true, clientId: 'audit-test' });
  const ok1 = find({ event: 'token.refreshed', outcome: 'success', actor: 'alice' });
  assert.deepEqual(ok1.scopes, [scope]);
  find({ event: 'token.refreshed', outcome: 'failure' });
  find({ event: 'push', actor: 'alice', repository: 'team/app', tag: 'v1', digest: v1.manifestDigest });
  find({ event: 'push', actor: 'alice', digest: sha256(sbom), subject: v2.manifestDigest });
  find({ event: 'retention.delete', actor: 'retention', repository: 'team/app', tag: 'v1' });
  const gcItems = events.filter((e) => e.event === 'gc.delete');
  assert.ok(
    gcItems.some((e) => e.actor === 'gc' && String(e.item).includes(v1.manifestDigest.slice(7))),
    `GC's deletion of v1's manifest is audited:\n${text}`,
  );
  assert.ok(gcItems.some((e) => String(e.item).includes(v1.layerDigest.slice(7)) && e.bytes === 9));
  assert.ok(!gcItems.some((e) => String(e.item).includes(v2.layerDigest.slice(7))), 'v2 is kept');
  for (const secret of [PASSWORDS.alice!, refresh, token, bearer.slice(7)])
    assert.ok(!text.includes(secret), `a secret in the audit log: ${secret.slice(0, 12)}…`);
  assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{10,}|berth_refresh_/);
});

/** The audit file's events, and `find`, which fails naming the wanted fields when no event has them all. */
async function readAudit(file: string) {
  const text = await readFile(file, 'utf8');
  const events = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const find = (want: Record<string, unknown>) =>
    events.find((e) => Object.entries(want).every(([k, v]) => e[k] === v)) ??
    assert.fail(`no ${JSON.stringify(want)} in\n${text}`);
  return { text, events, find };
}
