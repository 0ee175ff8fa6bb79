// `berth config check|defaults`: validate a config file as `berth serve` would load it, and print every key with its
// default (registry/config-doc.ts, generated from spec/config-schema.ts).
import { defaultsYaml, effectiveYaml } from '../registry/config-doc.js';
import { checkSignatures } from '../registry/signatures.js';
import { CLIError, parseFlags, type LegacyCommand, legacyCommand } from './command.js';
import { storageConfig } from './_storage.js';

const HELP = `Usage:
  berth config check [-c FILE] [--root DIR] [--quiet]
  berth config defaults

check     loads FILE exactly as \`berth serve -c FILE\` would (BERTH_* variables included), reports the first
          problem with its file:line:column, key and fix, and prints the effective configuration (defaults
          filled in, secrets shown as <redacted>). Exit status 1 when the configuration is invalid.
defaults  prints the full default configuration as commented YAML: every key, what it does, its default.
          Keys without a default are commented out. The output is a valid config file to start from.

Flags:
  -c, --config FILE   the YAML configuration to check
      --root DIR      as for \`berth serve\` (storage.filesystem.root)
  -q, --quiet         print nothing when the configuration is valid

Examples:
  berth config check -c /etc/berth/berth.yaml
  berth config defaults > berth.yaml`;

const command: LegacyCommand = {
  name: 'config',
  summary: 'check a config file (file:line:col errors) or print the default config, commented',
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseFlags('config', argv, {
      config: { type: 'string', short: 'c' },
      root: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
    });
    const [verb, extra] = positionals;
    if (extra !== undefined) throw new CLIError(`unexpected argument "${extra}"; see \`berth config --help\``);
    switch (verb) {
      case 'check': {
        const config = storageConfig(values);
        checkSignatures(config.signatures); // the keys and certificates it names must be readable
        if (!values.quiet) {
          console.error(`${values.config ?? 'built-in defaults'}: valid; the effective configuration:`);
          process.stdout.write(effectiveYaml(config));
        }
        return 0;
      }
      case 'defaults':
        if (values.config || values.root)
          throw new CLIError('berth config defaults takes no flags; it prints the built-in defaults');
        process.stdout.write(defaultsYaml());
        return 0;
      default:
        throw new CLIError(
          `berth config: expected check or defaults${verb ? `, not "${verb}"` : ''}; see \`berth config --help\``,
        );
    }
  },
};
export default legacyCommand(command);
