// http.headersTimeout over HTTPS, where node's HTTP/2 server (also serving HTTP/1.1) has none of its own: a
// connection trickling a request's headers, or an HTTP/2 session that only PINGs, is closed; one that sends
// requests keeps working.
import assert from 'node:assert/strict';
import { connect as http2Connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ok, run } from './support/peers.js';
import { startBerth } from './support/berth.js';

test('headersTimeout over TLS: slowloris HTTP/1.1 and idle HTTP/2 sessions are closed; requests are not', async (t) => {
  const dir = await mkdtemp('/tmp/berth-headers-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  ok(
    await run(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        'k.pem',
      ].concat(['-out', 'c.pem', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']),
      { cwd: dir },
    ),
  );
  const ca = await readFile(join(dir, 'c.pem'));
  const berth = await startBerth(t, {
    config: `http:\n  headersTimeout: 1s\n  tls:\n    certificate: ${dir}/c.pem\n    key: ${dir}/k.pem\n`,
    tlsCa: join(dir, 'c.pem'),
  });

  // HTTP/1.1: a request line, then one header byte every 200 ms (each resets an idle timeout, not this one).
  const slow = await new Promise<number>((resolve, reject) => {
    const started = Date.now();
    const s = tlsConnect({ host: '127.0.0.1', port: berth.port, ca, ALPNProtocols: ['http/1.1'] }, () => {
      s.write('GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
      const tick = setInterval(() => (s.writable ? s.write('a') : clearInterval(tick)), 200);
      s.once('close', () => {
        clearInterval(tick);
        resolve(Date.now() - started);
      });
    });
    s.on('error', () => {});
    setTimeout(() => reject(new Error('the trickling connection was not closed within 8 s')), 8_000).unref();
  });
  assert.ok(slow >= 900 && slow < 5_000, `closed after ${slow} ms`);

  // HTTP/2: a session that opens no stream but PINGs is closed (GOAWAY); one request on a fresh session first works.
  const session = http2Connect(berth.url, { ca });
  t.after(() => session.destroy());
  const status = await new Promise<number>((resolve, reject) => {
    const s = session.request({ ':path': '/v2/' });
    s.on('response', (h) => resolve(Number(h[':status'])));
    s.on('error', reject);
    s.resume();
  });
  assert.equal(status, 200);
  const idle = await new Promise<number>((resolve, reject) => {
    const started = Date.now();
    const tick = setInterval(() => {
      if (!session.closed && !session.destroyed) session.ping(() => {});
    }, 200);
    session.once('close', () => {
      clearInterval(tick);
      resolve(Date.now() - started);
    });
    setTimeout(() => reject(new Error('the idle HTTP/2 session was not closed within 8 s')), 8_000).unref();
  });
  assert.ok(idle < 5_000, `closed after ${idle} ms`);

  // The server keeps serving new connections.
  const again = ok(
    await run('curl', [
      '-sS',
      '--cacert',
      join(dir, 'c.pem'),
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `${berth.url}/v2/`,
    ]),
  );
  assert.equal(again, '200');
});
