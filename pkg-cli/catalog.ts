// `berth catalog REGISTRY`: every repository a registry lists (follows pagination).
import { CLIError, parseFlags, type Command } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, positionals, printJson } from './_client.js';

const HELP = `Usage: berth catalog REGISTRY [--json]

Lists the repositories of a registry (GET /v2/_catalog), following pagination. Registries may restrict this
(token auth needs the registry:catalog:* scope; Docker Hub does not offer it).

Flags:
${COMMON_HELP}

Examples:
  berth catalog localhost:5000
  berth catalog --json registry.example.com`;

const command: Command = {
  name: 'catalog',
  summary: 'list the repositories of a registry',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('catalog', argv, { ...COMMON_FLAGS });
    const [host] = positionals(pos, 1, 'berth catalog REGISTRY');
    if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$/.test(host)) {
      throw new CLIError(`"${host}" is not a registry host; write it as HOST[:PORT], e.g. localhost:5000`);
    }
    const repos: string[] = [];
    for await (const name of makeClient(values).catalog(host)) {
      if (values.json) repos.push(name);
      else console.log(name);
    }
    if (values.json) printJson({ registry: host, repositories: repos });
  },
};
export default command;
