// `berth sync`: one run of the config's `sync:` rules into the registry's storage (safe while `berth serve` runs on
// it: a lease per rule lets one replica or process run a rule at a time).
import { createStore } from '../storage/index.js';
import { createLogger } from '../registry/index.js';
import { createSync } from '../registry/mirror/sync.js';
import { formatBytes } from '../spec/units.js';
import { CLIError, defineCommand, flag } from './command.js';
import { existingStorageConfig, makeDriver } from './_storage.js';
import { syncRulesOf } from './_sync.js';
import { json, STORAGE } from './flags.js';

export default defineCommand({
  usage: '-c berth.yaml [--rule NAME]… [--json]',
  description: `Runs the sync rules of the registry's config (sync:) once: copies the images each rule selects from
its upstream into this registry's storage, byte for byte and only what is missing, with their signatures and
SBOMs unless referrers: false. An interrupted run resumes where it stopped. Exits 1 when an image failed.`,
  flags: {
    ...STORAGE,
    rule: flag.list({ arg: 'NAME', split: true, help: 'run only these rules (default: all)' }),
    verbose: flag.boolean({ short: 'v', help: 'print every image as it is done' }),
    json,
  },
  args: [],
  examples: ['berth sync -c berth.yaml', 'berth sync -c berth.yaml --rule alpine --json'],
  async run({ flags: values }) {
    const config = existingStorageConfig('sync', values);
    const rules = syncRulesOf(config);
    if (!rules.length) throw new CLIError('the config has no sync rules: add a `sync:` list (README "Mirrors")');
    const unknown = (values.rule ?? []).filter((n) => !rules.some((r) => r.name === n));
    if (unknown.length)
      throw new CLIError(
        `no sync rule named ${unknown.join(', ')}; the config has ${rules.map((r) => r.name).join(', ')}`,
      );
    const log = createLogger(values.json ? 'error' : config.log.level === 'debug' ? 'debug' : 'error', false);
    const driver = await makeDriver(config, { cleanTemp: false });
    const store = createStore(driver, { maxManifestBytes: config.storage.maxManifestBytes });
    const job = createSync(rules, store, log);
    try {
      const results = await job.run(values.rule, {
        onImage: values.verbose
          ? (rule, image, r) =>
              console.error(
                r instanceof Error
                  ? `${rule}: ${image} failed: ${r.message}`
                  : `${rule}: ${image} ${r.skipped && !r.manifests ? 'already here' : `copied (${formatBytes(r.blobs.bytes)})`}`,
              )
          : undefined,
      });
      if (values.json) console.log(JSON.stringify({ rules: results }));
      else
        for (const r of results) {
          if (r.result === 'busy') {
            console.log(`${r.rule}: skipped, another process is running this rule`);
            continue;
          }
          console.log(
            `${r.rule}: ${r.result}: ${r.images.copied} copied, ${r.images.skipped} already here, ${r.images.failed} failed; ` +
              `${r.blobs.uploaded} blobs downloaded (${formatBytes(r.bytes)}), ${r.blobs.existed} present, ${r.referrers} referrers`,
          );
          for (const e of r.errors) console.log(`  ${e}`);
        }
      return results.some((r) => r.result === 'failed' || r.result === 'busy') ? 1 : 0;
    } finally {
      await driver.close?.();
    }
  },
});
