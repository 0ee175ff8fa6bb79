// `berth fsck`: re-hash every stored blob and quarantine the ones whose bytes do not match their digest
// (storage/scrub.ts). Safe while `berth serve` runs on the same storage.
import { scrubBlobs } from '../storage/index.js';
import { defineCommand, EXIT, flag } from './command.js';
import { existingStorageConfig, makeDriver } from './_storage.js';
import { jobs, json, STORAGE } from './flags.js';

export default defineCommand({
  usage: '[--config FILE] [--root DIR] [--dry-run] [--jobs N] [--json]',
  description: `Reads every blob (layers, configs, manifests) in the registry's storage and checks that its bytes hash to its
digest. A blob that does not is moved to quarantine/ in the storage (kept for inspection, never served): the
repositories that link it answer "blob unknown" until its content is pushed again, which stores it afresh.
Runs online, next to a serving registry. Exit status: 0 all blobs match, 3 damaged blobs were found.`,
  flags: {
    ...STORAGE,
    'dry-run': flag.boolean({ short: 'n', help: 'report damaged blobs; move nothing' }),
    jobs: jobs('blobs hashed at once'),
    json,
  },
  args: [],
  examples: ['berth fsck --root /var/lib/berth --dry-run', 'berth fsck -c berth.yaml --json'],
  async run({ flags: values }) {
    const jobs = values.jobs;
    const config = existingStorageConfig('fsck', values);
    // Never clean the temp dir here: a server on the same root may be writing to it right now.
    const driver = await makeDriver(config, { cleanTemp: false, create: false });
    const dryRun = values['dry-run'] ?? false;
    try {
      const result = await scrubBlobs(driver, {
        dryRun,
        concurrency: jobs,
        onBad: values.json
          ? undefined
          : (b) =>
              console.log(
                `damaged ${b.digest}: ${b.size} bytes hash to ${b.actual}${b.quarantinedAt ? ` → moved to ${b.quarantinedAt}` : ''}`,
              ),
      });
      if (values.json) console.log(JSON.stringify(result));
      else {
        const mib = (result.bytes / 1024 / 1024).toFixed(1);
        console.log(
          result.bad.length
            ? `${result.bad.length} of ${result.checked} blobs damaged (${mib} MiB read in ${result.ms} ms)${dryRun ? '; run without --dry-run to quarantine them' : `; ${result.quarantined} quarantined — push their content again to restore them`}`
            : `all ${result.checked} blobs match their digests (${mib} MiB read in ${result.ms} ms)`,
        );
      }
      return result.bad.length ? EXIT.damaged : EXIT.ok;
    } finally {
      await driver.close?.();
    }
  },
});
