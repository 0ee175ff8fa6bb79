// Redirects and credentials: a token realm that redirects the OAuth2 password form to another origin must never
// hand that origin the password (307/308 replay bodies), nor Authorization; same-origin redirects still work.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import { staticCredentials } from './credentials.js';
import { Registry } from './registry.js';

interface Seen {
  method: string;
  url: string;
  auth?: string;
  body: string;
}

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse, body: string) => void,
): Promise<{ server: Server; origin: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body });
    handler(req, res, body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, origin: `http://127.0.0.1:${(server.address() as any).port}`, seen };
}

const PASSWORD = 's3cret-password';
const token = (res: ServerResponse) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ token: 'tok-1', expires_in: 300 }));
};
let other: Awaited<ReturnType<typeof serve>>; // the foreign origin a realm redirects to: must learn nothing
let realm: Awaited<ReturnType<typeof serve>>;
let registry: Awaited<ReturnType<typeof serve>>;
let redirectStatus = 307;
let redirectTo: 'other' | 'same' = 'other';

before(async () => {
  other = await serve((_req, res) => token(res));
  realm = await serve((req, res) => {
    const u = new URL(req.url!, realm.origin);
    if (u.pathname === '/token' && req.method === 'POST') {
      const to = redirectTo === 'other' ? `${other.origin}/token` : '/token2';
      res.writeHead(redirectStatus, { location: to });
      return res.end();
    }
    if (u.pathname === '/token' && req.method === 'GET') {
      if (req.headers.authorization !== `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`) {
        res.writeHead(401);
        return res.end();
      }
      return token(res);
    }
    if (u.pathname === '/token2') return token(res);
    res.writeHead(404);
    res.end();
  });
  registry = await serve((req, res) => {
    if (req.headers.authorization !== 'Bearer tok-1') {
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="${realm.origin}/token",service="test"`,
        'docker-distribution-api-version': 'registry/2.0',
      });
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ name: 'a/b', tags: ['v1'] }));
  });
});

after(() => {
  for (const s of [other, realm, registry]) s?.server.closeAllConnections();
  for (const s of [other, realm, registry]) s?.server.close();
});

function reset() {
  for (const s of [other, realm, registry]) s.seen.length = 0;
}

function client() {
  const host = registry.origin.replace('http://', '');
  return new Registry(host, {
    credentials: staticCredentials({ [host]: { username: 'alice', password: PASSWORD } }),
    retries: 0,
  });
}

for (const status of [307, 308]) {
  test(`a realm answering the password POST with ${status} to another origin: the password never leaves, GET is used instead`, async () => {
    reset();
    redirectStatus = status;
    redirectTo = 'other';
    const res = await client().request({ method: 'GET', url: '/v2/a/b/tags/list', scopes: ['repository:a/b:pull'] });
    assert.equal(res.status, 200);
    await res.dump();
    assert.deepEqual(other.seen, [], 'the foreign origin was contacted');
    const posts = realm.seen.filter((s) => s.method === 'POST');
    assert.equal(posts.length, 1);
    assert.ok(posts[0].body.includes(PASSWORD), 'the realm itself got the form');
    assert.ok(
      realm.seen.some((s) => s.method === 'GET' && s.url.startsWith('/token')),
      'fell back to the GET token flow',
    );
  });
}

test('a same-origin 307 of the token POST is followed with its body', async () => {
  reset();
  redirectStatus = 307;
  redirectTo = 'same';
  const res = await client().request({ method: 'GET', url: '/v2/a/b/tags/list', scopes: ['repository:a/b:pull'] });
  assert.equal(res.status, 200);
  await res.dump();
  const followed = realm.seen.find((s) => s.url === '/token2');
  assert.ok(followed && followed.method === 'POST' && followed.body.includes('grant_type=password'));
  assert.equal(realm.seen.filter((s) => s.method === 'GET').length, 0);
});

test('a cross-origin redirect of a plain request drops Authorization', async () => {
  reset();
  const target = await serve((_req, res) => {
    res.writeHead(200);
    res.end('blob');
  });
  const source = await serve((_req, res) => {
    res.writeHead(307, { location: `${target.origin}/object` });
    res.end();
  });
  try {
    const host = source.origin.replace('http://', '');
    const r = new Registry(host, { credentials: staticCredentials({}), retries: 0 });
    const res = await r.request({
      method: 'GET',
      url: '/v2/a/b/blobs/x',
      headers: { authorization: 'Basic c2VjcmV0' },
    });
    assert.equal(await res.text(), 'blob');
    assert.equal(source.seen.at(-1)?.auth, 'Basic c2VjcmV0');
    assert.equal(target.seen[0].auth, undefined);
  } finally {
    for (const s of [source, target]) {
      s.server.closeAllConnections();
      s.server.close();
    }
  }
});
