// `berth tag REF NEWTAG`: points another tag of the same repository at REF's manifest (no blob moves).
import { isValidTag } from '../spec/reference.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, positionals, printJson, ref, refId } from './_client.js';

const HELP = `Usage: berth tag REF NEWTAG [--json]

Adds NEWTAG to the manifest REF points at, in the same repository (copies only the manifest).

Flags:
${COMMON_HELP}

Examples:
  berth tag localhost:5000/app:v1.2.3 stable
  berth tag localhost:5000/app@sha256:… v1`;

const command: Command = {
  name: 'tag',
  summary: 'add a tag to an existing manifest',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('tag', argv, { ...COMMON_FLAGS });
    const [input, newTag] = positionals(pos, 2, 'berth tag REF NEWTAG');
    const r = ref(input, 'REF', 'tag');
    if (!isValidTag(newTag))
      throw new CLIError(`invalid tag "${newTag}"; tags match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}`);
    const repo = makeClient(values).repository(r, { push: true });
    const m = await repo.getManifest(refId(r));
    await repo.putManifest(newTag, m.bytes, m.mediaType);
    const name = `${r.registry}/${r.repository}:${newTag}`;
    if (values.json) printJson({ reference: name, digest: m.digest });
    else console.log(`tagged ${name}@${m.digest}`);
  },
};
export default command;
