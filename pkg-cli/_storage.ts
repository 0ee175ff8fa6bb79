// Plumbing shared by the commands that open the registry's storage themselves (serve, gc, fsck, token): the config
// from --config/--root with errors as one CLI line, and the driver it names.
import { mkdir, readdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FsDriver } from '../storage/fs.js';
import type { Driver } from '../storage/index.js';
import { isUploadDataPath, TOP_LEVEL_ENTRIES } from '../storage/paths.js';
import { loadConfig, ConfigError, createAudit, type Audit, type Config } from '../registry/index.js';
import { CLIError } from './command.js';

/** Config key path → the flag of these commands that sets it, so config errors name the flag. */
const FLAG_NAMES = { 'storage.filesystem.root': '--root', 'http.addr': '--addr', 'log.format': '--log-format' };

/** The registry's config from `--config FILE` and `--root DIR` (filesystem storage), plus `flags` overrides. */
export function storageConfig(values: { config?: string; root?: string }, flags: Record<string, any> = {}): Config {
  if (values.root) flags = { ...flags, storage: { ...flags.storage, filesystem: { root: values.root } } };
  try {
    return loadConfig({ file: values.config, flags, flagNames: FLAG_NAMES });
  } catch (e) {
    if (e instanceof ConfigError) throw new CLIError(e.message);
    throw e;
  }
}

/**
 * The config of a command that works on an existing registry's storage (gc, fsck, token): it must be pointed at
 * it (--root, --config, or BERTH_STORAGE_* variables), never fall back to ./data, which would be created empty
 * and make the command report success on nothing.
 */
export function existingStorageConfig(
  command: string,
  values: { config?: string; root?: string },
  env: NodeJS.ProcessEnv = process.env,
): Config {
  const fromEnv = Object.keys(env).some(
    (k) => k.startsWith('BERTH_STORAGE_FILESYSTEM_ROOT') || k.startsWith('BERTH_STORAGE_S3'),
  );
  if (!values.root && !values.config && !fromEnv)
    throw new CLIError(
      `berth ${command} works on a registry's storage: give --root DIR (its storage.filesystem.root) or -c berth.yaml (the config \`berth serve\` runs with)`,
    );
  return storageConfig(values);
}

/**
 * `cleanTemp: false` when another process (a running server) may be writing to the same root (berth gc).
 * `create: false` when the storage must exist already (gc, fsck, token): a missing or foreign directory is an error
 * naming what was looked for.
 */
export async function makeDriver(
  config: Config,
  opts: { cleanTemp?: boolean; create?: boolean } = {},
): Promise<Driver> {
  if (config.storage.s3) {
    // Loaded only when configured: the AWS SDK is large and filesystem users never need it.
    const s3Module: string = '../storage/s3.js';
    const { S3Driver } = (await import(s3Module)) as { S3Driver: new (o: unknown, hints: unknown) => Driver };
    // Only upload data is ever appended to: every other lookup costs one S3 request, not two.
    return new S3Driver(config.storage.s3, { appendable: isUploadDataPath });
  }
  const root = resolve(config.storage.filesystem!.root);
  if (opts.create ?? true) await mkdir(root, { recursive: true });
  else await assertBerthRoot(root);
  const driver = new FsDriver({ root, fsync: config.storage.filesystem!.fsync });
  if (opts.cleanTemp ?? true) await driver.cleanTemp();
  return driver;
}

/** Throws a CLIError unless `root` is a directory holding berth storage (or nothing yet). */
export async function assertBerthRoot(root: string): Promise<void> {
  const expected = `a berth storage root (a directory with ${TOP_LEVEL_ENTRIES.filter((e) => !e.startsWith('_'))
    .slice(0, 3)
    .map((e) => `${e}/`)
    .join(', ')}, …)`;
  const info = await stat(root).catch((e: NodeJS.ErrnoException) => e);
  if (info instanceof Error) {
    if (info.code === 'ENOENT')
      throw new CLIError(
        `no storage at ${root}: looked for ${expected}; check --root or storage.filesystem.root (the same as \`berth serve\` uses)`,
      );
    throw new CLIError(`cannot open storage at ${root}: ${info.code ?? info.message}`);
  }
  if (!info.isDirectory()) throw new CLIError(`storage root ${root} is not a directory: looked for ${expected}`);
  // lost+found: the root is often a volume's mount point (the Helm chart mounts one at /var/lib/berth).
  const foreign = (await readdir(root)).filter((e) => !TOP_LEVEL_ENTRIES.includes(e) && e !== 'lost+found');
  if (foreign.length)
    throw new CLIError(
      `${root} does not look like berth storage (it holds ${foreign
        .slice(0, 3)
        .map((e) => `"${e}"`)
        .join(
          ', ',
        )}${foreign.length > 3 ? ', …' : ''}): looked for ${expected}; check --root or storage.filesystem.root`,
    );
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
