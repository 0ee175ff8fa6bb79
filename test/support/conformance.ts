// Runs the OCI distribution-spec conformance suite (the Go test binary built by .ci/install-peers.sh) against a
// registry with all four workflows on, and collects the names of failed tests from its log.
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run, TOOLS_BIN } from './peers.js';

export async function runConformance(
  url: string,
  env: Record<string, string> = {},
): Promise<{ code: number; failures: string[]; output: string }> {
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
    const failures = output
      .split('\n')
      .filter((l) => l.includes('failed test'))
      .map((l) => l.replace(/^.*name=/, ''));
    return { code: result.code, failures, output };
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
}
