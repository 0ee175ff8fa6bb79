// cosign v2 with a key pair of its own (key-based, no transparency log), for tests that check a signature survives
// a copy, sync, bundle or replication: `keyPair(dir)` generates cosign.key/cosign.pub in `dir`, then `sign(ref)` and
// `verify(ref)` run the real cosign against plain-HTTP registries.
import { join } from 'node:path';
import { ok, run } from './peers.js';

export interface CosignKey {
  readonly dir: string;
  sign(ref: string): Promise<void>;
  verify(ref: string): Promise<void>;
}

export async function cosignKeyPair(dir: string): Promise<CosignKey> {
  const env = { COSIGN_PASSWORD: '', HOME: dir, TUF_ROOT: join(dir, 'tuf') };
  const cosign = (args: string[]) => run('cosign', args, { cwd: dir, env });
  ok(await cosign(['generate-key-pair']));
  return {
    dir,
    async sign(ref) {
      ok(
        await cosign(['sign', '--yes', '--key', 'cosign.key', '--tlog-upload=false', '--allow-insecure-registry', ref]),
      );
    },
    async verify(ref) {
      ok(await cosign(['verify', '--key', 'cosign.pub', '--insecure-ignore-tlog', '--allow-insecure-registry', ref]));
    },
  };
}
