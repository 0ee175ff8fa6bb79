// `berth gc`: one online garbage collection over the registry's storage (safe while `berth serve` runs on it).
import { createStore } from '../storage/index.js';
import { createLogger, parseDuration, ConfigError } from '../registry/index.js';
import { createGcJob } from '../registry/gc.js';
import { createPolicies } from '../registry/policy.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { cliAudit, makeDriver, storageConfig } from './_storage.js';

const HELP = `Usage: berth gc [--config FILE] [--root DIR] [--dry-run] [--delete-untagged] [--grace DURATION] [--json]

Removes what no tag, manifest or referrer references: blobs, layer links, untagged manifests (with
--delete-untagged or gc.deleteUntagged), referrers whose subject is gone, abandoned uploads. Retention policies
(retention.policies) are applied first. Runs online: pushes and pulls may go on; with several replicas a lease
lets one GC run at a time.

Flags:
  -c, --config FILE        the registry's YAML configuration (storage, gc, retention)
      --root DIR           filesystem storage root (storage.filesystem.root)
  -n, --dry-run            print what would be removed and how many bytes; change nothing
      --delete-untagged    also remove manifests no tag keeps (gc.deleteUntagged)
      --grace DURATION     spare content written within this window, e.g. 10m (gc.grace, default 1h)
      --json               print the result as JSON
  -v, --verbose            print every removed item

Examples:
  berth gc --root /var/lib/berth --dry-run
  berth gc -c berth.yaml --delete-untagged --grace 0s`;

function _bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

const command: Command = {
  name: 'gc',
  summary: 'garbage-collect unreferenced blobs and manifests (online; --dry-run to preview)',
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseFlags('gc', argv, {
      config: { type: 'string', short: 'c' },
      root: { type: 'string' },
      'dry-run': { type: 'boolean', short: 'n' },
      'delete-untagged': { type: 'boolean' },
      grace: { type: 'string' },
      json: { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
    });
    if (positionals.length) throw new CLIError(`unexpected argument "${positionals[0]}"; see \`berth gc --help\``);
    const config = storageConfig(values);
    let graceMs: number | undefined;
    try {
      if (values.grace !== undefined) graceMs = parseDuration(values.grace);
    } catch (e) {
      if (e instanceof ConfigError) throw new CLIError(e.message);
      throw e;
    }
    const log = createLogger(values.json ? 'warn' : config.log.level === 'debug' ? 'debug' : 'warn', false);
    // Never clean the temp dir here: a server on the same root may be writing to it right now.
    const driver = await makeDriver(config, { cleanTemp: false });
    const store = createStore(driver, { maxManifestBytes: config.storage.maxManifestBytes });
    const dryRun = values['dry-run'] ?? false;
    // Retention and GC deletions are audited (config audit) as when the server runs them.
    const audit = cliAudit(config.audit);
    const policies = createPolicies(config, store, log, audit);
    const job = createGcJob(config, store, log, {
      audit,
      before: (dry) =>
        policies.applyRetention({ dryRun: dry, report: (l) => !values.json && console.log(l) }).then(() => {}),
    });
    const verbose = values.verbose || dryRun;
    try {
      const result = await job.run({
        dryRun,
        graceMs,
        deleteUntagged: values['delete-untagged'] || undefined,
        onItem:
          verbose && !values.json
            ? (kind, what, bytes) =>
                console.log(
                  `${dryRun ? 'would remove' : 'removed'} ${kind} ${what}${bytes ? ` (${_bytes(bytes)})` : ''}`,
                )
            : undefined,
      });
      if (!result)
        throw new CLIError('another garbage collection is running on this storage (lease held); try again later');
      if (values.json) console.log(JSON.stringify(result));
      else {
        console.log(
          `${dryRun ? 'would free' : 'freed'} ${_bytes(result.bytes)}: ${result.blobs} blobs, ${result.manifests} manifests, ${result.links} links, ` +
            `${result.referrers} referrers, ${result.uploads} uploads (${result.repositories} repositories, ${result.manifestsLive} live manifests, ${result.ms} ms)`,
        );
      }
    } finally {
      await audit?.close();
      await driver.close?.();
    }
    return 0;
  },
};
export default command;
