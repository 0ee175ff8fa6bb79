// The OCI distribution-spec conformance suite (current version, from the Go module proxy) against `berth serve`,
// with all four workflows on, at the default level and at the newest level the suite offers (1.1+dev).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requirePeer } from './peers.js';
import { runConformance } from './conformance.js';
import { startBerth } from './berth.js';

for (const [label, env] of [
  ['default level (1.1)', {}],
  ['newest level (1.1+dev: tag params, upload cancel, digest headers)', { OCI_VERSION: '1.1+dev' }],
] as const) {
  test(`OCI conformance suite, ${label}: zero failures`, async (t) => {
    if (!requirePeer(t, 'conformance.test')) return;
    const berth = await startBerth(t);
    const { code, failures, output } = await runConformance(berth.url, env);
    assert.deepEqual(failures, [], `conformance failures:\n${failures.join('\n')}`);
    assert.equal(code, 0, output.slice(-3000));
    assert.match(output, /PASS|ok/i);
  });
}
