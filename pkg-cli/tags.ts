// `berth tags REPO`: every tag of a repository (follows pagination).
import { parseFlags, type Command } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, positionals, printJson, ref } from './_client.js';

const HELP = `Usage: berth tags REPO [--json]

Lists the tags of a repository, following the registry's pagination.

Flags:
${COMMON_HELP}

Examples:
  berth tags localhost:5000/app
  berth tags --json docker.io/library/alpine`;

const command: Command = {
  name: 'tags',
  summary: 'list the tags of a repository',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('tags', argv, { ...COMMON_FLAGS });
    const r = ref(positionals(pos, 1, 'berth tags REPO')[0], 'REPO', 'tags');
    const repo = makeClient(values).repository(r);
    const tags: string[] = [];
    for await (const t of repo.tags()) {
      if (values.json) tags.push(t);
      else console.log(t);
    }
    if (values.json) printJson({ repository: `${r.registry}/${r.repository}`, tags });
  },
};
export default command;
