// `berth tags REPO`: every tag of a repository (follows pagination).
import { defineCommand } from './command.js';
import { makeClient, printJson } from './_client.js';
import { REMOTE, ref } from './flags.js';

export default defineCommand({
  usage: 'REPO [--json]',
  description: "Lists the tags of a repository, following the registry's pagination.",
  flags: { ...REMOTE },
  args: ['REPO'],
  examples: ['berth tags localhost:5000/app', 'berth tags --json docker.io/library/alpine'],
  async run({ flags, args }) {
    const r = ref(args[0], 'REPO', 'tags');
    const repo = makeClient(flags).repository(r);
    const tags: string[] = [];
    for await (const t of repo.tags()) {
      if (flags.json) tags.push(t);
      else console.log(t);
    }
    if (flags.json) printJson({ repository: `${r.registry}/${r.repository}`, tags });
  },
});
