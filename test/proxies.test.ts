// `berth serve` behind reverse proxies (http.trustedProxies) and with a separate debug listener (http.debug):
// forwarded headers from an untrusted peer change nothing (realm, logged client address, login throttling, audit);
// from a trusted one they decide all four. /metrics moves to the debug port when http.debug.addr is set.
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { test } from 'node:test';
import bcrypt from 'bcryptjs';
import { freePort } from './support/peers.js';
import { startBerth } from './support/berth.js';

const PW = 'alice-pw-7f3a';

function config(extra: Record<string, unknown> = {}, audit?: string) {
  return JSON.stringify({
    log: { level: 'info', requests: true },
    auth: {
      mode: 'token',
      users: [{ name: 'alice', passwordHash: bcrypt.hashSync(PW, 4) }],
      rateLimit: { maxFailures: 3, maxFailuresPerAddress: 50 },
    },
    ...(audit ? { audit: { enabled: true, output: audit } } : {}),
    ...extra,
  });
}

const basic = (pw: string) => `Basic ${Buffer.from(`alice:${pw}`).toString('base64')}`;

async function realm(url: string, headers: Record<string, string>): Promise<string> {
  const res = await fetch(`${url}/v2/`, { headers });
  await res.arrayBuffer();
  assert.equal(res.status, 401);
  return /realm="([^"]+)"/.exec(res.headers.get('www-authenticate') ?? '')![1]!;
}

async function login(url: string, pw: string, headers: Record<string, string>): Promise<number> {
  const res = await fetch(`${url}/token?service=berth&scope=repository:a/b:pull`, {
    headers: { ...headers, Authorization: basic(pw) },
  });
  await res.arrayBuffer();
  return res.status;
}

const auditLines = async (file: string) =>
  (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

const SPOOF = {
  'X-Forwarded-Host': 'evil.example',
  'X-Forwarded-Proto': 'https',
  'X-Forwarded-For': '203.0.113.9',
  Forwarded: 'for=203.0.113.9;proto=https;host=evil.example',
};

test('forwarded headers from an untrusted peer change nothing: realm, logged address, throttling, audit', async (t) => {
  const audit = `/tmp/berth-proxies-audit-${process.pid}-1.jsonl`;
  const berth = await startBerth(t, { config: config({}, audit), env: { BERTH_LOG_LEVEL: 'info' } });
  t.after(() => rm(audit, { force: true }));
  assert.equal(await realm(berth.url, SPOOF), `${berth.url}/token`);
  // Three failures, each claiming another client address: all count for 127.0.0.1, so the right password is
  // throttled too (429) — a spoofed X-Forwarded-For does not buy fresh attempts.
  for (let i = 0; i < 3; i++)
    assert.equal(await login(berth.url, 'wrong', { ...SPOOF, 'X-Forwarded-For': `198.51.100.${i}` }), 401);
  assert.equal(await login(berth.url, PW, { 'X-Forwarded-For': '198.51.100.77' }), 429);
  await new Promise((r) => setTimeout(r, 300));
  const requests = berth
    .logs()
    .split('\n')
    .filter((l) => l.includes('"msg":"request"'))
    .map((l) => JSON.parse(l));
  assert.ok(requests.length >= 5);
  for (const r of requests) {
    assert.equal(r.remote, '127.0.0.1', JSON.stringify(r));
    assert.equal(r.peer, undefined);
  }
  const events = await auditLines(audit);
  const logins = events.filter((e) => e.event === 'login');
  assert.deepEqual(
    logins.map((e) => [e.outcome, e.address, e.account]),
    [
      ['failure', '127.0.0.1', 'alice'],
      ['failure', '127.0.0.1', 'alice'],
      ['failure', '127.0.0.1', 'alice'],
      ['throttled', '127.0.0.1', 'alice'],
    ],
  );
  assert.ok(!JSON.stringify(events).includes('wrong') && !JSON.stringify(events).includes(PW));
});

test('a trusted proxy decides the realm, the logged client, throttling per real client and the audit address', async (t) => {
  const audit = `/tmp/berth-proxies-audit-${process.pid}-2.jsonl`;
  const berth = await startBerth(t, {
    config: config({ http: { trustedProxies: ['127.0.0.0/8', '10.0.0.0/8'] } }, audit),
    env: { BERTH_LOG_LEVEL: 'info' },
  });
  t.after(() => rm(audit, { force: true }));
  assert.equal(
    await realm(berth.url, { 'X-Forwarded-Host': 'registry.example', 'X-Forwarded-Proto': 'https' }),
    'https://registry.example/token',
  );
  assert.equal(
    await realm(berth.url, {
      'X-Forwarded-Host': 'registry.example',
      'X-Forwarded-Proto': 'https',
      'X-Forwarded-Port': '8443',
    }),
    'https://registry.example:8443/token',
  );
  // RFC 7239 Forwarded, with a second trusted hop (10.1.2.3) before this one.
  assert.equal(
    await realm(berth.url, { Forwarded: 'for=192.0.2.60;proto=https;host="reg.example:5443", for=10.1.2.3' }),
    'https://reg.example:5443/token',
  );
  // Throttling counts the client the proxy names: 192.0.2.1 is throttled, 192.0.2.2 still logs in.
  for (let i = 0; i < 3; i++) assert.equal(await login(berth.url, 'wrong', { 'X-Forwarded-For': '192.0.2.1' }), 401);
  assert.equal(await login(berth.url, PW, { 'X-Forwarded-For': '192.0.2.1' }), 429);
  // A chain: the client is the first untrusted address from the right (the leftmost is the client's own claim).
  assert.equal(await login(berth.url, PW, { 'X-Forwarded-For': '6.6.6.6, 192.0.2.2, 10.9.9.9' }), 200);
  await new Promise((r) => setTimeout(r, 300));
  const logged = berth
    .logs()
    .split('\n')
    .filter((l) => l.includes('"msg":"request"'))
    .map((l) => JSON.parse(l));
  assert.ok(logged.some((r) => r.remote === '192.0.2.1' && r.peer === '127.0.0.1'));
  assert.ok(logged.some((r) => r.remote === '192.0.2.2' && r.peer === '127.0.0.1'));
  const events = await auditLines(audit);
  const ok = events.find((e) => e.event === 'login' && e.outcome === 'success');
  assert.equal(ok?.address, '192.0.2.2');
  assert.equal(ok?.actor, 'alice');
  assert.equal(events.find((e) => e.event === 'token.issued')?.address, '192.0.2.2');
  assert.ok(events.some((e) => e.event === 'login' && e.outcome === 'throttled' && e.address === '192.0.2.1'));
});

test('a bad trustedProxies entry is a clear error naming it', async (t) => {
  await assert.rejects(
    startBerth(t, { config: JSON.stringify({ http: { trustedProxies: ['10.0.0.0/33'] } }) }),
    /http\.trustedProxies: "10\.0\.0\.0\/33" is not an IP address or CIDR/,
  );
});

test('metrics on the registry port by default; with http.debug.addr only on the debug listener', async (t) => {
  const plain = await startBerth(t);
  assert.equal((await fetch(`${plain.url}/metrics`)).status, 200);
  const debugPort = await freePort();
  const berth = await startBerth(t, {
    config: JSON.stringify({ http: { debug: { addr: `127.0.0.1:${debugPort}` } } }),
  });
  const metrics = await fetch(`${berth.url}/metrics`);
  assert.equal(metrics.status, 404, 'not on the registry port');
  const debug = `http://127.0.0.1:${debugPort}`;
  const m = await fetch(`${debug}/metrics`);
  assert.equal(m.status, 200);
  assert.match(await m.text(), /^# HELP /m);
  assert.equal((await fetch(`${debug}/healthz`)).status, 200);
  assert.equal((await fetch(`${debug}/readyz`)).status, 200);
  assert.equal((await fetch(`${berth.url}/readyz`)).status, 200, 'probes keep working on the registry port');
  assert.equal((await fetch(`${debug}/v2/`)).status, 404, 'the debug listener serves no registry API');
});
