// `berth config check|defaults`: validate a config file as `berth serve` would load it, and print every key with its
// default (registry/config-doc.ts, generated from spec/config-schema.ts).
import { defaultsYaml, effectiveYaml } from '../registry/config-doc.js';
import { checkSignatures } from '../registry/signatures.js';
import { CLIError, defineCommand, EXIT, flag } from './command.js';
import { STORAGE } from './flags.js';
import { storageConfig } from './_storage.js';

export default defineCommand({
  usage: ['check [-c FILE] [--root DIR] [--quiet]', 'defaults'],
  description: `check     loads FILE exactly as \`berth serve -c FILE\` would (BERTH_* variables included), reports the first
          problem with its file:line:column, key and fix, and prints the effective configuration (defaults
          filled in, secrets shown as <redacted>). Exit status 1 when the configuration is invalid.
defaults  prints the full default configuration as commented YAML: every key, what it does, its default.
          Keys without a default are commented out. The output is a valid config file to start from.`,
  flags: { ...STORAGE, quiet: flag.boolean({ short: 'q', help: 'print nothing when the configuration is valid' }) },
  args: ['ACTION'],
  verbs: ['check', 'defaults'],
  examples: ['berth config check -c /etc/berth/berth.yaml', 'berth config defaults > berth.yaml'],
  async run({ flags, args }) {
    switch (args[0]) {
      case 'check': {
        const config = storageConfig(flags);
        checkSignatures(config.signatures); // the keys and certificates it names must be readable
        if (!flags.quiet) {
          console.error(`${flags.config ?? 'built-in defaults'}: valid; the effective configuration:`);
          process.stdout.write(effectiveYaml(config));
        }
        return 0;
      }
      case 'defaults':
        if (flags.config || flags.root)
          throw new CLIError('berth config defaults takes no flags; it prints the built-in defaults', EXIT.usage);
        process.stdout.write(defaultsYaml());
        return 0;
      default:
        throw new CLIError(
          `berth config: expected check or defaults, not "${args[0]}"; see \`berth config --help\``,
          EXIT.usage,
        );
    }
  },
});
