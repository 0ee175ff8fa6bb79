// The OCI distribution-spec conformance suite (current version, from the Go module proxy) against `berth serve`,
// with all four workflows on, at the default level and at the newest level the suite offers (1.1+dev).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { requirePeer, run, TOOLS_BIN } from './peers.js';
import { startBerth } from './berth.js';

export async function runConformance(url: string, env: Record<string, string> = {}): Promise<{ code: number; failures: string[]; output: string }> {
  const cwd = await mkdtemp('/tmp/berth-conformance-');
  try {
    const result = await run(join(TOOLS_BIN, 'conformance.test'), [], {
      cwd,
      timeoutMs: 600_000,
      env: {
        OCI_ROOT_URL: url,
        OCI_NAMESPACE: 'conformance/repo1',
        OCI_CROSSMOUNT_NAMESPACE: 'conformance/repo2',
        OCI_TEST_PULL: '1',
        OCI_TEST_PUSH: '1',
        OCI_TEST_CONTENT_DISCOVERY: '1',
        OCI_TEST_CONTENT_MANAGEMENT: '1',
        ...env,
      },
    });
    const output = result.stdout + result.stderr;
    const failures = output.split('\n').filter((l) => l.includes('failed test')).map((l) => l.replace(/^.*name=/, ''));
    return { code: result.code, failures, output };
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
}

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
