// `berth logout [REGISTRY]`: forgets the credentials for a registry in every place berth reads them from.
import { DockerCredentialStore } from '../client/credentials.js';
import { defineCommand } from './command.js';
import { printJson } from './_client.js';
import { json, registryHost } from './flags.js';

export default defineCommand({
  usage: '[REGISTRY] [--json]',
  description: `Removes saved credentials for REGISTRY (default docker.io) from $REGISTRY_AUTH_FILE, podman's auth.json,
~/.docker/config.json and the configured credential helper.`,
  flags: { json },
  args: ['[REGISTRY]'],
  examples: ['berth logout localhost:5000', 'berth logout ghcr.io'],
  async run({ flags, args }) {
    const host = registryHost(args[0] ?? 'docker.io');
    const removed = await new DockerCredentialStore().erase(host);
    if (flags.json) printJson({ registry: host, removed });
    else console.log(removed ? `Removed credentials for ${host}` : `No credentials were saved for ${host}`);
  },
});
