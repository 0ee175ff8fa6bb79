// The web UI in a real headless Chromium (Debian `chromium` + puppeteer-core) against `berth serve` in token mode,
// filled by real clients: a multi-arch image (skopeo copy --all) with an artifact attached (oras attach), a
// berth-built image with its SPDX SBOM (berth build --push), an oras artifact, 10,000 tags in one repository and
// 2,000 repositories (plain distribution-spec requests). Checks login, browsing, filtering, the SBOM table, deleting
// a tag, and the ACL: a user sees only their repositories, anonymous only public ones, and a delete without the right
// is refused by the server (via the page, the JSON API, a forged cross-origin request). Screenshots of the main
// pages, light and dark, go to the test's temp dir (and to docs/screenshots/ with BERTH_SCREENSHOTS=1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser, BrowserContext, Page } from 'puppeteer-core';
import { startBerth, type Berth } from './support/berth.js';
import { berth, ROOT, writeTree, parseBuild } from './support/builder-fixtures.js';
import { hash } from './support/auth-fixtures.js';
import { makeClients } from './support/clients.js';
import { makeMultiArchLayout } from './support/oci-layouts.js';
import { ok, requirePeer, run } from './support/peers.js';
import { imageManifest, pushBlob, pushManifest } from './support/registry-client.js';
import { fillBulk, launchChromium } from './support/ui-fixtures.js';

const TAGS = 10_000;
const REPOS = 2_000;

const USERS = `  users:
    - { name: alice, passwordHash: "${hash('alice-pw')}", groups: [dev] }
    - { name: bob, passwordHash: "${hash('bob-pw')}", groups: [ops] }
    - { name: admin, passwordHash: "${hash('admin-pw')}" }
  acl:
    - { repositories: ["**"], subjects: ["user:admin"], actions: ["*"] }
    - { repositories: ["team-a/**"], subjects: ["group:dev"], actions: [pull, push, delete] }
    - { repositories: ["team-b/**"], subjects: ["user:bob"], actions: [pull, push] }
    - { repositories: ["public/**"], subjects: ["*"], actions: [pull] }
`;
const TOKEN_CONFIG = `auth:\n  mode: token\n${USERS}log: { requests: false }\n`;
const HTPASSWD_CONFIG = `auth:\n  mode: htpasswd\n${USERS}log: { requests: false }\n`;

const SPEC = `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64, linux/arm64]
layers:
  - name: deps
    files:
      - { src: "node_modules/**", dest: /app/node_modules/ }
  - name: app
    files:
      - { src: "dist/{arch}/server.js", dest: /app/server.js }
`;
const LOCK = {
  name: 'svc',
  lockfileVersion: 3,
  packages: {
    '': { name: 'svc', dependencies: { ms: '2.1.3' } },
    'node_modules/ms': {
      version: '2.1.3',
      resolved: 'https://registry.npmjs.org/ms/-/ms-2.1.3.tgz',
      integrity: 'sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==',
    },
  },
};

const API = '/v2/_berth/api/v1';
const basic = (user: string) => `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}`;

async function api(reg: Berth, path: string, init: RequestInit & { user?: string } = {}) {
  const headers = new Headers(init.headers);
  if (init.user) headers.set('authorization', basic(init.user));
  const res = await fetch(`${reg.url}${API}${path}`, { ...init, headers });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** The names in the first column of the #results table (links). */
function firstColumn(page: Page): Promise<string[]> {
  return page.$$eval('#results tbody tr:not(.ns-group) td:first-child a', (els) =>
    els.map((e) => e.textContent?.trim() ?? ''),
  );
}

async function login(browser: Browser, reg: Berth, user: string): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.setViewport({ width: 1280, height: 860 });
  await page.goto(`${reg.url}/ui/login`);
  await page.type('input[name=username]', user);
  await page.type('input[name=password]', `${user}-pw`);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  assert.equal(new URL(page.url()).pathname, '/ui/', `${user} lands on the repositories page`);
  return { ctx, page };
}

/** Types into the live filter and waits until the swapped-in results satisfy `done`. */
async function filter(page: Page, text: string, done: (rows: string[]) => boolean): Promise<string[]> {
  await page.click('#q', { count: 3 });
  await page.keyboard.press('Backspace');
  await page.type('#q', text);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const rows = await firstColumn(page);
    if (done(rows) && new URL(page.url()).search.includes(`q=${encodeURIComponent(text)}`)) return rows;
    if (Date.now() > deadline)
      throw new Error(`filter "${text}" never gave the expected rows; last: ${rows.join(', ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('web UI in Chromium: browse, filter, SBOM, delete, ACL — token mode, real clients, 10,000 tags, 2,000 repos', async (t) => {
  if (!requirePeer(t, 'chromium', 'skopeo', 'oras', 'crane')) return;
  const work = await mkdtemp('/tmp/berth-ui-e2e-');
  t.after(() => rm(work, { recursive: true, force: true }));
  const data = join(work, 'data');
  const shots = join(work, 'screenshots');
  await mkdir(shots);
  const clients = await makeClients(t);

  // ---- fill (auth off), then serve the same storage with token auth ----------------------------------------
  const open = await startBerth(t, { root: data });
  const layout = await makeMultiArchLayout(join(work, 'layout'));
  ok(
    await clients.skopeo([
      'copy',
      '--all',
      '--dest-tls-verify=false',
      layout.ref,
      `docker://${open.host}/public/multi:1.0`,
    ]),
  );
  await writeFile(join(work, 'sig.txt'), 'not really a signature\n');
  ok(
    await clients.oras(
      [
        'attach',
        '--plain-http',
        '--artifact-type',
        'application/vnd.example.signature.v1',
        `${open.host}/public/multi:1.0`,
        'sig.txt:text/plain',
      ],
      { cwd: work },
    ),
  );
  await writeFile(join(work, 'notes.txt'), 'release notes\n');
  ok(
    await clients.oras(
      [
        'push',
        '--plain-http',
        '--artifact-type',
        'application/vnd.example.notes.v1',
        `${open.host}/team-a/notes:v1`,
        'notes.txt:text/plain',
      ],
      { cwd: work },
    ),
  );
  const ctx = join(work, 'build');
  await writeTree(ctx, {
    'node_modules/ms/package.json': '{"name":"ms","version":"2.1.3"}\n',
    'node_modules/ms/index.js': 'module.exports = () => 0;\n',
    'dist/amd64/server.js': 'console.log("amd64")\n',
    'dist/arm64/server.js': 'console.log("arm64")\n',
    'package-lock.json': JSON.stringify(LOCK),
    'berth.yaml': SPEC,
  });
  const built = parseBuild(
    await berth(
      [
        'build',
        '-f',
        join(ctx, 'berth.yaml'),
        '--cache',
        join(ctx, '.cache'),
        '--push',
        `${open.host}/team-a/app:v1`,
        '--json',
      ],
      {
        cwd: ROOT,
      },
    ),
  );
  ok(await clients.crane(['copy', '--insecure', `${open.host}/team-a/app:v1`, `${open.host}/team-a/app:old`]));
  ok(await clients.crane(['copy', '--insecure', `${open.host}/public/multi:1.0`, `${open.host}/team-b/svc:v1`]));
  const started = Date.now();
  await fillBulk(open.url, { tags: TAGS, repos: REPOS });
  t.diagnostic(`filled ${TAGS} tags and ${REPOS} repositories in ${Date.now() - started} ms`);
  await open.stop();
  const reg = await startBerth(t, { root: data, config: TOKEN_CONFIG });

  const browser = await launchChromium();
  t.after(() => browser.close());
  const shoot = async (page: Page, name: string) => {
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      await page.screenshot({ path: join(shots, `${name}-${scheme}.png`) });
    }
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  };

  await t.test('anonymous sees exactly the public repositories, and must log in for the rest', async () => {
    const list = await api(reg, '/repositories');
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.items.map((r: { name: string }) => r.name),
      ['public/multi'],
    );
    assert.equal((await api(reg, '/repositories/team-a/app/tags')).status, 401);
    const page = await browser.newPage();
    await page.goto(`${reg.url}/ui/`);
    assert.deepEqual(await firstColumn(page), ['public/multi']);
    await page.goto(`${reg.url}/ui/repo/team-a/app`);
    assert.equal(new URL(page.url()).pathname, '/ui/login', 'a private repository sends anonymous to the login form');
    await page.close();
  });

  let alice: { ctx: BrowserContext; page: Page };
  await t.test('alice logs in (HttpOnly, SameSite=Strict cookie) and sees only what she may pull', async () => {
    alice = await login(browser, reg, 'alice');
    const cookie = (await alice.page.cookies()).find((c) => c.name === 'berth_session');
    assert.ok(cookie, 'session cookie set');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(await alice.page.evaluate(() => document.cookie), '', 'scripts cannot read the session');
    assert.deepEqual(await firstColumn(alice.page), ['public/multi', 'team-a/app', 'team-a/notes']);
    const viaApi = await api(reg, '/repositories', { user: 'alice' });
    assert.deepEqual(
      viaApi.body.items.map((r: { name: string }) => r.name),
      ['public/multi', 'team-a/app', 'team-a/notes'],
    );
    assert.equal(
      (await api(reg, '/repositories/team-b/svc/tags', { user: 'alice' })).status,
      404,
      'not hers: not shown',
    );
    await shoot(alice.page, 'repositories-user');
  });

  await t.test('a multi-arch image shows its platforms and the artifact attached to it', async () => {
    const { page } = alice;
    await page.goto(`${reg.url}/ui/image/public/multi:1.0`);
    const text = await page.$eval('main', (m) => m.textContent ?? '');
    assert.match(text, /linux\/amd64/);
    assert.match(text, /linux\/arm64\/v8/);
    assert.match(text, /application\/vnd\.example\.signature\.v1/);
    assert.equal(await page.$$eval('.tree .chip.signature', (e) => e.length), 1);
    await shoot(page, 'image');
  });

  await t.test("the berth-built image's SBOM opens as a searchable package and file table", async () => {
    const { page } = alice;
    await page.goto(`${reg.url}/ui/image/team-a/app:v1`);
    assert.equal(await page.$$eval('.tree .chip.sbom', (e) => e.length), built.images.length, 'one SBOM per platform');
    await Promise.all([page.waitForNavigation(), page.click('.tree a.button[href^="/ui/sbom/"]')]);
    assert.match(new URL(page.url()).pathname, /^\/ui\/sbom\/team-a\/app@sha256:/);
    const packages = await page.$$eval('#results tbody tr', (rows) => rows.map((r) => r.textContent ?? ''));
    assert.ok(
      packages.some((r) => r.includes('ms') && r.includes('2.1.3')),
      `ms@2.1.3 listed: ${packages.join(' | ')}`,
    );
    await filter(page, 'ms', () => true);
    const filtered = await page.$$eval('#results tbody tr', (rows) => rows.map((r) => r.textContent ?? ''));
    assert.ok(
      filtered.length >= 1 && filtered.every((r) => /ms/i.test(r)),
      `only rows with "ms": ${filtered.join(' | ')}`,
    );
    await shoot(page, 'sbom');
    await page.select('select[name=kind]', 'files');
    await page.waitForFunction(() => location.search.includes('kind=files'));
    await page.waitForFunction(() =>
      document.querySelector('#results')?.textContent?.includes('./app/node_modules/ms/index.js'),
    );
    const sbom = await api(
      reg,
      `/repositories/team-a/app/sbom/${new URL(page.url()).pathname.split('@')[1]}?kind=packages&q=ms`,
      {
        user: 'alice',
      },
    );
    assert.equal(sbom.status, 200);
    assert.ok(
      sbom.body.rows.items.some((r: { name: string; version: string }) => r.name === 'ms' && r.version === '2.1.3'),
    );
  });

  await t.test('an oras artifact shows its artifact type', async () => {
    const { page } = alice;
    await page.goto(`${reg.url}/ui/repo/team-a/notes`);
    assert.match(await page.$eval('#results', (e) => e.textContent ?? ''), /application\/vnd\.example\.notes\.v1/);
  });

  await t.test('alice deletes a tag after confirming; real clients see it gone', async () => {
    const { page } = alice;
    await page.goto(`${reg.url}/ui/repo/team-a/app`);
    await Promise.all([page.waitForNavigation(), page.click('a[aria-label="Delete tag old"]')]);
    assert.match(await page.$eval('main', (m) => m.textContent ?? ''), /This deletes the tag team-a\/app:old/);
    await shoot(page, 'delete-confirm');
    await Promise.all([page.waitForNavigation(), page.click('form[action="/ui/delete"] button[type=submit]')]);
    assert.equal(new URL(page.url()).pathname, '/ui/repo/team-a/app');
    assert.deepEqual(await firstColumn(page), ['v1']);
    ok(await clients.crane(['auth', 'login', reg.host, '-u', 'alice', '-p', 'alice-pw']));
    assert.deepEqual(
      ok(await clients.crane(['ls', '--insecure', `${reg.host}/team-a/app`]))
        .trim()
        .split('\n'),
      ['v1'],
    );
  });

  await t.test('deletes without the right are refused by the server, whatever the page shows', async (s) => {
    const bob = await login(browser, reg, 'bob');
    s.after(() => bob.ctx.close());
    const { page } = bob;
    assert.deepEqual(await firstColumn(page), ['public/multi', 'team-b/svc']);
    await page.goto(`${reg.url}/ui/repo/team-b/svc`);
    assert.equal(
      await page.$$('a[aria-label^="Delete tag"]').then((a) => a.length),
      0,
      'no delete button without the right',
    );
    const confirm = await page.goto(`${reg.url}/ui/delete?repo=team-b/svc&ref=v1`);
    assert.equal(confirm?.status(), 403);
    // A hand-made POST with bob's valid session and CSRF token: the /v2 DELETE it becomes is refused by the ACL.
    const status = await page.evaluate(async () => {
      const csrf = (document.querySelector('form[action="/ui/logout"] input[name=csrf]') as HTMLInputElement).value;
      const res = await fetch('/ui/delete', {
        method: 'POST',
        body: new URLSearchParams({ repo: 'team-b/svc', ref: 'v1', csrf }),
      });
      return res.status;
    });
    assert.equal(status, 403);
    const del = await api(reg, '/repositories/team-b/svc/tags/v1', { method: 'DELETE', user: 'bob' });
    assert.equal(del.status, 403);
    assert.equal(del.body.errors[0].code, 'DENIED');
    const anon = await api(reg, '/repositories/public/multi/tags/1.0', { method: 'DELETE' });
    assert.equal(anon.status, 403, 'anonymous may pull public/multi but not delete it');
    // alice may delete in team-a, but not with her cookie alone (no CSRF token) or from another origin.
    const cookies = await alice.page.cookies();
    const cookie = cookies.map((c) => `${c.name}=${c.value}`).join('; ');
    const noCsrf = await api(reg, '/repositories/team-a/app/tags/v1', { method: 'DELETE', headers: { cookie } });
    assert.equal(noCsrf.status, 403);
    const csrf = await alice.page.$eval(
      'form[action="/ui/logout"] input[name=csrf]',
      (e) => (e as HTMLInputElement).value,
    );
    const forged = await api(reg, '/repositories/team-a/app/tags/v1', {
      method: 'DELETE',
      headers: { cookie, 'x-berth-csrf': csrf, origin: 'http://evil.example' },
    });
    assert.equal(forged.status, 403);
    const tags = await api(reg, '/repositories/team-b/svc/tags', { user: 'bob' });
    assert.deepEqual(
      tags.body.items.map((r: { tag: string }) => r.tag),
      ['v1'],
      'team-b/svc:v1 is still there',
    );
    assert.deepEqual(
      (await api(reg, '/repositories/team-a/app/tags', { user: 'alice' })).body.items.map(
        (r: { tag: string }) => r.tag,
      ),
      ['v1'],
    );
  });

  await t.test(`${TAGS} tags: newest push first, paged, live filter, "/" focuses it, sort by name`, async (s) => {
    const admin = await login(browser, reg, 'admin');
    s.after(() => admin.ctx.close());
    const { page } = admin;
    const first = await api(reg, '/repositories/bulk/tags/tags?n=3', { user: 'admin' });
    assert.equal(first.body.total, TAGS);
    const pushed = first.body.items.map((r: { pushed: string }) => Date.parse(r.pushed));
    assert.ok(pushed[0] >= pushed[1] && pushed[1] >= pushed[2], 'newest first');
    await page.goto(`${reg.url}/ui/repo/bulk/tags`);
    assert.match(
      await page.$eval('.pager', (e) => e.textContent ?? ''),
      new RegExp(`${TAGS} tags · page 1 of ${TAGS / 50}`),
    );
    const rows = await firstColumn(page);
    assert.equal(rows.length, 50);
    const api50 = await api(reg, '/repositories/bulk/tags/tags?n=50', { user: 'admin' });
    assert.deepEqual(
      rows,
      api50.body.items.map((r: { tag: string }) => r.tag),
    );
    await shoot(page, 'tags');
    await page.keyboard.press('/');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'q');
    assert.deepEqual(await filter(page, 't-09999', (r) => r.length === 1), ['t-09999']);
    await page.select('select[name=sort]', 'name');
    await filter(page, 't-0000', (r) => r[0] === 't-00000' && r.length === 10);
  });

  await t.test(`${REPOS} repositories: grouped by namespace, paged, filtered`, async (s) => {
    const admin = await login(browser, reg, 'admin');
    s.after(() => admin.ctx.close());
    const { page } = admin;
    const total = REPOS + 5; // + public/multi, team-a/app, team-a/notes, team-b/svc, bulk/tags
    assert.match(await page.$eval('.pager', (e) => e.textContent ?? ''), new RegExp(`${total} repositories`));
    const groups = await page.$$eval('tr.ns-group', (e) => e.map((x) => x.textContent?.trim()));
    assert.deepEqual(groups, ['bulk/', 'many/'], 'first page: bulk/tags, then many/r-…');
    await shoot(page, 'repositories-admin');
    assert.deepEqual(await filter(page, 'r-1999', (r) => r.length === 1), ['many/r-1999']);
    const ns = await api(reg, '/repositories?ns=many&n=1', { user: 'admin' });
    assert.equal(ns.body.total, REPOS);
    assert.equal(ns.body.items[0].tags, 1);
  });

  if (process.env.BERTH_SCREENSHOTS === '1') {
    const dest = join(ROOT, 'docs', 'screenshots');
    await mkdir(dest, { recursive: true });
    for (const f of await readdir(shots)) await copyFile(join(shots, f), join(dest, f));
  }
  assert.ok((await readdir(shots)).length >= 12, 'screenshots written');
  await alice!.ctx.close();

  await t.test('htpasswd mode: the same users log in to the UI', async (s) => {
    await reg.stop();
    const htp = await startBerth(t, { root: data, config: HTPASSWD_CONFIG });
    const bob = await login(browser, htp, 'bob');
    s.after(() => bob.ctx.close());
    assert.deepEqual(await firstColumn(bob.page), ['public/multi', 'team-b/svc']);
    assert.equal((await api(htp, '/repositories/team-b/svc/tags/v1', { method: 'DELETE', user: 'bob' })).status, 403);
  });
});

test('ui.enabled: false — no pages, no JSON API', async (t) => {
  const reg = await startBerth(t, { config: 'ui: { enabled: false }\nlog: { requests: false }\n' });
  for (const path of ['/', '/ui/', '/ui/assets/ui.css'])
    assert.equal((await fetch(`${reg.url}${path}`)).status, 404, path);
  const res = await fetch(`${reg.url}${API}/repositories`);
  assert.notEqual(res.status, 200);
  assert.equal((await fetch(`${reg.url}/v2/`)).status, 200, 'the registry itself is on');
});

test('the image view shows signatures: the policy verdict (berth sign, cosign) or, without a trusted key, what was found', async (t) => {
  if (!requirePeer(t, 'chromium', 'cosign')) return;
  const work = await mkdtemp('/tmp/berth-ui-sig-');
  t.after(() => rm(work, { recursive: true, force: true }));
  const env = { HOME: work, COSIGN_PASSWORD: '', SIGSTORE_NO_CACHE: 'true' };
  ok(await berth(['key', 'generate', '-o', join(work, 'trusted'), '--plain'], { env }));
  ok(await berth(['key', 'generate', '-o', join(work, 'stranger'), '--plain'], { env }));
  ok(await run('cosign', ['generate-key-pair'], { env, cwd: work }));
  // signed/** is covered by a policy trusting berth's key and cosign's; plain/** by none.
  const reg = await startBerth(t, {
    config: `signatures:
  policies:
    - name: release-keys
      repositories: ["signed/**"]
      mode: audit
      keys: [${join(work, 'trusted.pub')}, ${join(work, 'cosign.pub')}]
log: { requests: false }
`,
  });
  const push = async (repo: string, tag: string): Promise<string> => {
    const layer = gzipSync(Buffer.from(`layer of ${repo}:${tag}\n`));
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', tag }));
    const l = await pushBlob(reg.url, repo, layer);
    const c = await pushBlob(reg.url, repo, config);
    const body = imageManifest({ digest: c, size: config.length }, [{ digest: l, size: layer.length }]);
    const res = await pushManifest(reg.url, repo, tag, body);
    assert.equal(res.status, 201, res.body.toString());
    return `${reg.host}/${repo}@${res.header('docker-content-digest')}`;
  };
  const sign = async (ref: string, key: string, format = 'cosign') =>
    ok(await berth(['sign', ref, '--key', join(work, key), '--format', format], { env }));
  await sign(await push('signed/app', 'simple'), 'trusted.key');
  await sign(await push('signed/app', 'bundle'), 'trusted.key', 'cosign-bundle');
  await sign(await push('signed/app', 'stranger'), 'stranger.key');
  const cosigned = await push('signed/app', 'cosigned');
  ok(
    await run(
      'cosign',
      [
        'sign',
        '--yes',
        '--key',
        join(work, 'cosign.key'),
        '--tlog-upload=false',
        '--allow-insecure-registry',
        '--allow-http-registry',
        cosigned,
      ],
      { env, timeoutMs: 120_000 },
    ),
  );
  await push('signed/app', 'unsigned');
  await sign(await push('plain/app', 'simple'), 'trusted.key');
  await sign(await push('plain/app', 'bundle'), 'stranger.key', 'cosign-bundle');
  await push('plain/app', 'unsigned');

  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  const slot = async (ref: string) => {
    const res = await page.goto(`${reg.url}/ui/image/${ref}`, { waitUntil: 'load' });
    assert.equal(res?.status(), 200, ref);
    return page.$eval('dd[data-signature]', (e) => ({
      status: e.getAttribute('data-signature'),
      text: (e.textContent ?? '').replace(/\s+/g, ' ').trim(),
    }));
  };
  const cases: Array<[string, string, RegExp]> = [
    ['signed/app:simple', 'verified', /verified \(policy release-keys, audit\) cosign \(\.sig tag\)/],
    ['signed/app:bundle', 'verified', /verified .*sigstore bundle \(referrer\)/],
    ['signed/app:cosigned', 'verified', /verified .*cosign \(\.sig tag\)/],
    ['signed/app:stranger', 'invalid', /not verified \(policy release-keys, audit\) cosign: .*trusted key/],
    ['signed/app:unsigned', 'unsigned', /unsigned \(policy release-keys, audit\)/],
    ['plain/app:simple', 'not-verified', /1 signature not verified \(no trusted key configured\) cosign \(\.sig tag\)/],
    ['plain/app:bundle', 'not-verified', /not verified \(no trusted key configured\) sigstore bundle \(referrer\)/],
    ['plain/app:unsigned', 'unsigned', /^unsigned$/],
  ];
  for (const [ref, status, text] of cases) {
    const got = await slot(ref);
    assert.equal(got.status, status, `${ref}: ${got.text}`);
    assert.match(got.text, text, ref);
  }
  await page.goto(`${reg.url}/ui/image/signed/app:simple`, { waitUntil: 'load' });
  await page.setViewport({ width: 1280, height: 860 });
  await page.screenshot({ path: join(work, 'image-signed.png') });
  if (process.env.BERTH_SCREENSHOTS)
    await copyFile(join(work, 'image-signed.png'), join(ROOT, 'docs', 'screenshots', 'image-signed-light.png'));

  // The JSON API carries the same slot.
  const api = async (repo: string, ref: string) =>
    (await (await fetch(`${reg.url}${API}/repositories/${repo}/images/${ref}`)).json()).signatures;
  const simple = await api('signed/app', 'simple');
  assert.deepEqual(
    { status: simple.status, policy: simple.policy, formats: simple.found.map((f: { format: string }) => f.format) },
    { status: 'verified', policy: { name: 'release-keys', mode: 'audit' }, formats: ['cosign'] },
  );
  const plain = await api('plain/app', 'bundle');
  assert.equal(plain.status, 'not-verified');
  assert.equal(plain.policy, undefined);
  assert.deepEqual(
    plain.found.map((f: { format: string }) => f.format),
    ['cosign-bundle'],
  );
  // A signature added later shows on the next view (the policy forgets its "unsigned" verdict when one is pushed).
  await sign(`${reg.host}/signed/app:unsigned`, 'trusted.key');
  assert.equal((await slot('signed/app:unsigned')).status, 'verified');
});

test('in Chromium: the mirror view (cached, hits/misses, last refresh), quota use per namespace, a phone-width screen, the keyboard', async (t) => {
  if (!requirePeer(t, 'chromium', 'skopeo', 'crane')) return;
  const work = await mkdtemp('/tmp/berth-ui-mirror-');
  t.after(() => rm(work, { recursive: true, force: true }));
  const shots = join(work, 'screenshots');
  await mkdir(shots);
  const clients = await makeClients(t);
  // An upstream registry with a multi-arch image, and berth mirroring it under hub/ with a quota on team/.
  const upstream = await startBerth(t);
  const layout = await makeMultiArchLayout(join(work, 'layout'));
  ok(
    await clients.skopeo([
      'copy',
      '--all',
      '--dest-tls-verify=false',
      layout.ref,
      `docker://${upstream.host}/library/app:1.0`,
    ]),
  );
  const reg = await startBerth(t, {
    config: [
      'proxy:',
      '  upstreams:',
      `    - { name: upstream, url: "${upstream.url}", prefix: hub, allowPrivateNetworks: true }`,
      'quotas: [{ namespace: team, maxBytes: 1GiB }]',
      'log: { requests: false }',
      '',
    ].join('\n'),
  });
  const before = Date.now();
  // First look through the mirror: a miss (fetched); then a pull (layers too): revalidated upstream and a hit.
  const mirrored = `${reg.host}/hub/library/app:1.0`;
  assert.match(ok(await clients.crane(['digest', '--insecure', mirrored])), /^sha256:/);
  ok(await clients.crane(['pull', '--insecure', '--format', 'oci', mirrored, join(work, 'pulled')]));
  ok(await clients.crane(['copy', '--insecure', `${upstream.host}/library/app:1.0`, `${reg.host}/team/app:v1`]));

  const mirrors = await api(reg, '/mirrors');
  assert.equal(mirrors.status, 200);
  const up = mirrors.body.upstreams[0];
  assert.equal(up.name, 'upstream');
  assert.ok(up.counters.misses >= 1 && up.counters.hits >= 1, JSON.stringify(up.counters));
  assert.deepEqual(
    up.repositories.items.map((r: { name: string; remote: string }) => [r.name, r.remote]),
    [['hub/library/app', 'library/app']],
  );
  const cached = up.repositories.items[0];
  assert.deepEqual(
    cached.tags.map((x: { tag: string }) => x.tag),
    ['1.0'],
  );
  const refreshed = Date.parse(cached.lastRefresh);
  assert.ok(refreshed >= before - 2000 && refreshed <= Date.now(), `last refresh ${cached.lastRefresh}`);
  assert.ok(cached.size > 0);
  const repos = await api(reg, '/repositories');
  assert.equal(repos.status, 200);
  const quota = repos.body.quotas.find((q: { namespace: string }) => q.namespace === 'team');
  assert.ok(quota && quota.used > 0 && quota.maxBytes === 2 ** 30, JSON.stringify(repos.body.quotas));

  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 860 });
  await page.goto(`${reg.url}/ui/mirrors`);
  const mirrorText = (await page.$eval('main', (m) => m.textContent ?? '')).replace(/\s+/g, ' ');
  assert.match(mirrorText, new RegExp(`hits ${up.counters.hits} · misses ${up.counters.misses}`));
  assert.match(mirrorText, /library\/app/);
  const cells = await page.$$eval('main table tbody tr td', (tds) => tds.map((td) => td.textContent?.trim() ?? ''));
  assert.equal(cells[1], '1.0', 'the cached tag');
  assert.ok(cells[2] && cells[2] !== '—' && cells[2] !== '', `a last refresh time is shown: ${cells.join(' | ')}`);
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
    await page.screenshot({ path: join(shots, `mirrors-${scheme}.png`) });
  }
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);

  // Quota use on the repositories page: a meter per namespace with a quota.
  await page.goto(`${reg.url}/ui/`);
  const meter = await page.$eval('meter', (m) => ({
    value: Number(m.getAttribute('value')),
    max: Number(m.getAttribute('max')),
    card: m.closest('.card')?.textContent ?? '',
  }));
  assert.equal(meter.value, quota.used);
  assert.equal(meter.max, 2 ** 30);
  assert.match(meter.card, /team\//);

  // The keyboard alone: Tab reaches the skip link first, then a repository link, with a visible focus ring; Enter
  // opens it; "/" focuses the filter.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip');
  let focused = '';
  for (let i = 0; i < 40 && focused !== 'team/app'; i++) {
    await page.keyboard.press('Tab');
    focused = await page.evaluate(() =>
      document.activeElement?.tagName === 'A' ? (document.activeElement.textContent ?? '') : '',
    );
  }
  assert.equal(focused, 'team/app', 'a repository link is reachable with Tab');
  assert.equal(await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle), 'solid');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  assert.equal(new URL(page.url()).pathname, '/ui/repo/team/app');
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'q');

  // A phone: every page fits the screen's width (wide tables scroll inside their box, not the page).
  await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  for (const [path, name] of [
    ['/ui/', 'phone-repositories'],
    ['/ui/repo/team/app', 'phone-tags'],
    ['/ui/image/team/app:v1', 'phone-image'],
    ['/ui/mirrors', 'phone-mirrors'],
  ] as const) {
    await page.goto(`${reg.url}${path}`);
    const width = await page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      screen: window.innerWidth,
    }));
    assert.ok(width.page <= width.screen, `${path}: ${width.page}px wide on a ${width.screen}px screen`);
    await page.screenshot({ path: join(shots, `${name}.png`) });
  }
  if (process.env.BERTH_SCREENSHOTS === '1') {
    const dest = join(ROOT, 'docs', 'screenshots');
    await mkdir(dest, { recursive: true });
    for (const f of await readdir(shots)) await copyFile(join(shots, f), join(dest, f));
  }
  assert.equal((await readdir(shots)).length, 6, 'screenshots written');
});
