// Sync rules as `berth sync` and `berth bundle create --rule` read them (their own module: loading the mirror code
// costs only the commands that use it).
import { ConfigError, type Config } from '../registry/index.js';
import { resolveSyncRules, type ResolvedSyncRule } from '../registry/mirror/sync.js';
import { resolveUpstreams } from '../registry/proxy/config.js';
import { CLIError } from './command.js';

/** The config's sync rules, resolved against its upstreams (`berth sync`, `berth bundle create --rule`). */
export function syncRulesOf(config: Config): ResolvedSyncRule[] {
  try {
    return resolveSyncRules(config.sync, resolveUpstreams(config.proxy));
  } catch (e) {
    if (e instanceof ConfigError) throw new CLIError(e.message);
    throw e;
  }
}
