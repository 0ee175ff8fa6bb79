// Plumbing shared by the commands that open the registry's storage themselves (serve, gc, fsck, token): the config
// from --config/--root with errors as one CLI line, and the driver it names.
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FsDriver } from '../storage/fs.js';
import type { Driver } from '../storage/index.js';
import { isUploadDataPath } from '../storage/paths.js';
import { loadConfig, ConfigError, createAudit, type Audit, type Config } from '../registry/index.js';
import { CLIError } from './command.js';

/** The registry's config from `--config FILE` and `--root DIR` (filesystem storage), plus `flags` overrides. */
export function storageConfig(values: { config?: string; root?: string }, flags: Record<string, any> = {}): Config {
  if (values.root) flags = { ...flags, storage: { filesystem: { root: values.root } } };
  try {
    return loadConfig({ file: values.config, flags });
  } catch (e) {
    if (e instanceof ConfigError) throw new CLIError(e.message);
    throw e;
  }
}

/** `cleanTemp: false` when another process (a running server) may be writing to the same root (berth gc). */
export async function makeDriver(config: Config, opts: { cleanTemp?: boolean } = {}): Promise<Driver> {
  if (config.storage.s3) {
    // Loaded only when configured: the AWS SDK is large and filesystem users never need it.
    const s3Module: string = '../storage/s3.js';
    const { S3Driver } = (await import(s3Module)) as { S3Driver: new (o: unknown, hints: unknown) => Driver };
    // Only upload data is ever appended to: every other lookup costs one S3 request, not two.
    return new S3Driver(config.storage.s3, { appendable: isUploadDataPath });
  }
  const root = resolve(config.storage.filesystem!.root);
  await mkdir(root, { recursive: true });
  const driver = new FsDriver({ root, fsync: config.storage.filesystem!.fsync });
  if (opts.cleanTemp ?? true) await driver.cleanTemp();
  return driver;
}

/** The audit log for a CLI command: stdout is the command's output, so `output: stdout` goes to stderr here. */
export function cliAudit(config: Config['audit']): Audit | undefined {
  try {
    const output = !config?.output || config.output === 'stdout' ? 'stderr' : config.output;
    return createAudit(config && { ...config, output });
  } catch (e) {
    throw new CLIError((e as Error).message);
  }
}
