// `berth catalog REGISTRY`: every repository a registry lists (follows pagination).
import { defineCommand } from './command.js';
import { makeClient, printJson } from './_client.js';
import { REMOTE, registryHost } from './flags.js';

export default defineCommand({
  usage: 'REGISTRY [--json]',
  description: `Lists the repositories of a registry (GET /v2/_catalog), following pagination. Registries may restrict this
(token auth needs the registry:catalog:* scope; Docker Hub does not offer it).`,
  flags: { ...REMOTE },
  args: ['REGISTRY'],
  examples: ['berth catalog localhost:5000', 'berth catalog --json registry.example.com'],
  async run({ flags, args }) {
    const host = registryHost(args[0]);
    const repos: string[] = [];
    for await (const name of makeClient(flags).catalog(host)) {
      if (flags.json) repos.push(name);
      else console.log(name);
    }
    if (flags.json) printJson({ registry: host, repositories: repos });
  },
});
