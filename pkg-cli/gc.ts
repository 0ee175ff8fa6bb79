// `berth gc`: one online garbage collection over the registry's storage (safe while `berth serve` runs on it).
import { createStore } from '../storage/index.js';
import { createLogger } from '../registry/index.js';
import { createGcJob } from '../registry/gc.js';
import { createPolicies } from '../registry/policy.js';
import { formatBytes } from '../spec/units.js';
import { CLIError, defineCommand, flag } from './command.js';
import { cliAudit, existingStorageConfig, makeDriver } from './_storage.js';
import { json, STORAGE } from './flags.js';

export default defineCommand({
  usage: '[--config FILE] [--root DIR] [--dry-run] [--delete-untagged] [--grace DURATION] [--json]',
  description: `Removes what no tag, manifest or referrer references: blobs, layer links, untagged manifests (with
--delete-untagged or gc.deleteUntagged), referrers whose subject is gone, abandoned uploads. Retention policies
(retention.policies) are applied first. Runs online: pushes and pulls may go on; with several replicas a lease
lets one GC run at a time.`,
  flags: {
    ...STORAGE,
    'dry-run': flag.boolean({ short: 'n', help: 'print what would be removed and how many bytes; change nothing' }),
    'delete-untagged': flag.boolean({ help: 'also remove manifests no tag keeps (gc.deleteUntagged)' }),
    grace: flag.duration({ help: 'spare content written within this window, e.g. 10m (gc.grace, default 1h)' }),
    verbose: flag.boolean({ short: 'v', help: 'print every removed item' }),
    json,
  },
  args: [],
  examples: ['berth gc --root /var/lib/berth --dry-run', 'berth gc -c berth.yaml --delete-untagged --grace 0s'],
  async run({ flags: values }) {
    const config = existingStorageConfig('gc', values);
    const graceMs = values.grace;
    const log = createLogger(values.json ? 'warn' : config.log.level === 'debug' ? 'debug' : 'warn', false);
    // Never clean the temp dir here: a server on the same root may be writing to it right now.
    const driver = await makeDriver(config, { cleanTemp: false, create: false });
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
                  `${dryRun ? 'would remove' : 'removed'} ${kind} ${what}${bytes ? ` (${formatBytes(bytes)})` : ''}`,
                )
            : undefined,
      });
      if (!result)
        throw new CLIError('another garbage collection is running on this storage (lease held); try again later');
      if (values.json) console.log(JSON.stringify(result));
      else {
        console.log(
          `${dryRun ? 'would free' : 'freed'} ${formatBytes(result.bytes)}: ${result.blobs} blobs, ${result.manifests} manifests, ${result.links} links, ` +
            `${result.referrers} referrers, ${result.uploads} uploads (${result.repositories} repositories, ${result.manifestsLive} live manifests, ${result.ms} ms)`,
        );
      }
    } finally {
      await audit?.close();
      await driver.close?.();
    }
    return 0;
  },
});
