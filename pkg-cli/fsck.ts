// `berth fsck`: re-hash every stored blob and quarantine the ones whose bytes do not match their digest
// (storage/scrub.ts). Safe while `berth serve` runs on the same storage.
import { scrubBlobs } from '../storage/index.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { existingStorageConfig, makeDriver } from './_storage.js';

const HELP = `Usage: berth fsck [--config FILE] [--root DIR] [--dry-run] [--jobs N] [--json]

Reads every blob (layers, configs, manifests) in the registry's storage and checks that its bytes hash to its
digest. A blob that does not is moved to quarantine/ in the storage (kept for inspection, never served): the
repositories that link it answer "blob unknown" until its content is pushed again, which stores it afresh.
Runs online, next to a serving registry. Exit status: 0 all blobs match, 3 damaged blobs were found.

Flags:
  -c, --config FILE   the registry's YAML configuration (storage)
      --root DIR      an existing storage root (storage.filesystem.root); --root or -c is required
  -n, --dry-run       report damaged blobs; move nothing
  -j, --jobs N        blobs hashed at once (default 4)
      --json          print the result as JSON

Examples:
  berth fsck --root /var/lib/berth --dry-run
  berth fsck -c berth.yaml --json`;

const command: Command = {
  name: 'fsck',
  summary: 're-hash every stored blob; quarantine any whose bytes do not match its digest',
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseFlags('fsck', argv, {
      config: { type: 'string', short: 'c' },
      root: { type: 'string' },
      'dry-run': { type: 'boolean', short: 'n' },
      jobs: { type: 'string', short: 'j' },
      json: { type: 'boolean' },
    });
    if (positionals.length) throw new CLIError(`unexpected argument "${positionals[0]}"; see \`berth fsck --help\``);
    const jobs = values.jobs === undefined ? 4 : Number(values.jobs);
    if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64)
      throw new CLIError(`--jobs must be a whole number from 1 to 64, not "${values.jobs}"`);
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
      return result.bad.length ? 3 : 0;
    } finally {
      await driver.close?.();
    }
  },
};
export default command;
