// The OCI distribution-spec conformance suite (current version, from the Go module proxy) against `berth serve`,
// with all four workflows on, at the default level and at the newest level the suite offers (1.1+dev), in one
// process (http.workers: 1) and with two workers sharing the port (registry/cluster.ts: consecutive connections go
// to different workers, so upload sessions, tags and deletes cross processes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requirePeer } from './support/peers.js';
import { runConformance } from './support/conformance.js';
import { startBerth, waitForLog } from './support/berth.js';

for (const [label, env, workers] of [
  ['default level (1.1), one process', {}, '1'],
  ['newest level (1.1+dev: tag params, upload cancel, digest headers), one process', { OCI_VERSION: '1.1+dev' }, '1'],
  ['newest level (1.1+dev), http.workers: 2', { OCI_VERSION: '1.1+dev' }, '2'],
] as const) {
  test(`OCI conformance suite, ${label}: zero failures`, async (t) => {
    if (!requirePeer(t, 'conformance.test')) return;
    const berth = await startBerth(t, { env: { BERTH_HTTP_WORKERS: workers, BERTH_LOG_LEVEL: 'info' } });
    if (workers !== '1') await waitForLog(berth.logs, /all workers listening/);
    const { code, failures, output } = await runConformance(berth.url, env);
    assert.deepEqual(failures, [], `conformance failures:\n${failures.join('\n')}`);
    assert.equal(code, 0, output.slice(-3000));
    assert.match(output, /PASS|ok/i);
  });
}
