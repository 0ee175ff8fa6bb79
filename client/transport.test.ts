// The client's undici: the slim load (an Agent and Dispatcher#request, without fetch & co.) really is what runs,
// and a request through it reaches a real HTTP server with its method, path, query, headers and body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { undici } from './transport.js';

test('undici() loads only the Agent and request the client uses, and requests go through them', async (t) => {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${req.headers['x-test']} ${body}`);
      res.writeHead(201, { 'content-type': 'text/plain' }).end('made');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const u = await undici();
  const agent = new u.Agent({ connections: 1 });
  t.after(async () => {
    await agent.close();
    server.close();
  });
  // A moved module makes undici() fall back to the whole package (which has fetch): this notices it.
  assert.equal('fetch' in u, false, 'undici() fell back to the whole package: its modules moved');
  const { port } = server.address() as AddressInfo;
  const r = await u.request(`http://127.0.0.1:${port}/v2/a/b/blobs/uploads/?digest=sha256%3Aab`, {
    method: 'PUT',
    headers: { 'x-test': 'yes' },
    body: 'data',
    dispatcher: agent,
  });
  assert.equal(r.statusCode, 201);
  assert.equal(await r.body.text(), 'made');
  assert.deepEqual(seen, ['PUT /v2/a/b/blobs/uploads/?digest=sha256%3Aab yes data']);
});
