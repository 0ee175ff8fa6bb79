// registry/forwarded.ts: forwarded headers count only from trusted peers, and only back to the first untrusted hop.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveClient, trustedProxies } from './forwarded.js';

const req = (peer: string, headers: Record<string, string> = {}) => ({ socket: { remoteAddress: peer }, headers });
const trusted = trustedProxies(['10.0.0.0/8', '127.0.0.1', 'fd00::/8']);

test('an untrusted peer: its own address, no scheme or host, whatever it sends', () => {
  const c = resolveClient(
    req('192.0.2.7', {
      'x-forwarded-for': '1.2.3.4',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-proto': 'https',
      forwarded: 'for=1.2.3.4;host=evil.example;proto=https',
    }),
    trusted,
  );
  assert.deepEqual(c, { address: '192.0.2.7', forwarded: false });
  assert.deepEqual(resolveClient(req('10.0.0.1', { 'x-forwarded-for': '1.2.3.4' })), {
    address: '10.0.0.1',
    forwarded: false,
  });
});

test('X-Forwarded-*: the first untrusted address from the right; proto, host and port from the nearest proxy', () => {
  const c = resolveClient(
    req('::ffff:127.0.0.1', {
      'x-forwarded-for': '6.6.6.6, 198.51.100.4, 10.2.3.4',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'Registry.Example',
      'x-forwarded-port': '8443',
    }),
    trusted,
  );
  assert.deepEqual(c, { address: '198.51.100.4', proto: 'https', host: 'registry.example:8443', forwarded: true });
  // The default port is not added; a host with a port keeps it; a bad host or proto is ignored.
  assert.equal(
    resolveClient(
      req('10.0.0.9', { 'x-forwarded-host': 'r.example', 'x-forwarded-port': '443', 'x-forwarded-proto': 'https' }),
      trusted,
    ).host,
    'r.example',
  );
  assert.equal(
    resolveClient(req('10.0.0.9', { 'x-forwarded-host': '[fd00::1]:5000' }), trusted).host,
    '[fd00::1]:5000',
  );
  const bad = resolveClient(req('10.0.0.9', { 'x-forwarded-host': 'a b/c', 'x-forwarded-proto': 'gopher' }), trusted);
  assert.equal(bad.host, undefined);
  assert.equal(bad.proto, undefined);
  // Every hop trusted: the leftmost is the client.
  assert.equal(
    resolveClient(req('10.0.0.9', { 'x-forwarded-for': '10.1.1.1, 10.2.2.2' }), trusted).address,
    '10.1.1.1',
  );
  // No X-Forwarded-For from a trusted peer: the peer.
  assert.equal(resolveClient(req('10.0.0.9', {}), trusted).address, '10.0.0.9');
});

test('RFC 7239 Forwarded: quoted IPv6 with port, chains, malformed values', () => {
  const c = resolveClient(
    req('fd00::5', { forwarded: 'for="[2001:db8::17]:4711";proto=https;host="reg.example", for=10.0.0.3' }),
    trusted,
  );
  assert.deepEqual(c, { address: '2001:db8::17', proto: 'https', host: 'reg.example', forwarded: true });
  // An untrusted hop in the middle stops the walk there.
  assert.equal(
    resolveClient(
      req('10.0.0.1', { forwarded: 'for=6.6.6.6;host=evil.example, for=203.0.113.5;host=good.example, for=10.0.0.2' }),
      trusted,
    ).address,
    '203.0.113.5',
  );
  // Malformed Forwarded: ignored, X-Forwarded-For is used instead.
  assert.equal(
    resolveClient(req('10.0.0.1', { forwarded: 'for=="x', 'x-forwarded-for': '198.51.100.9' }), trusted).address,
    '198.51.100.9',
  );
});

test('trustedProxies: bad entries are named', () => {
  assert.throws(() => trustedProxies(['10.0.0.0/8', 'example.com']), /http\.trustedProxies: "example\.com" is not/);
  assert.throws(() => trustedProxies(['::1/129']), /"::1\/129"/);
});
