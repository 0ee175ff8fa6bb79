// `berth logout [REGISTRY]`: forgets the credentials for a registry in every place berth reads them from.
import { DockerCredentialStore } from '../client/credentials.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, printJson } from './_client.js';
import { normaliseHost } from './login.js';

const HELP = `Usage: berth logout [REGISTRY] [--json]

Removes saved credentials for REGISTRY (default docker.io) from $REGISTRY_AUTH_FILE, podman's auth.json,
~/.docker/config.json and the configured credential helper.

Flags:
${COMMON_HELP}

Examples:
  berth logout localhost:5000
  berth logout ghcr.io`;

const command: Command = {
  name: 'logout',
  summary: 'remove saved registry credentials',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('logout', argv, { ...COMMON_FLAGS });
    if (pos.length > 1) throw new CLIError('expected at most one REGISTRY; see `berth logout --help`');
    const host = normaliseHost(pos[0] ?? 'docker.io');
    const removed = await new DockerCredentialStore().erase(host);
    if (values.json) printJson({ registry: host, removed });
    else console.log(removed ? `Removed credentials for ${host}` : `No credentials were saved for ${host}`);
  },
};
export default command;
