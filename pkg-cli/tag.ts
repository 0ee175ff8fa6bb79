// `berth tag REF NEWTAG`: points another tag of the same repository at REF's manifest (no blob moves).
import { isValidTag } from '../spec/reference.js';
import { defineCommand, UsageError } from './command.js';
import { makeClient, printJson, refId } from './_client.js';
import { REMOTE, ref } from './flags.js';

export default defineCommand({
  usage: 'REF NEWTAG [--json]',
  description: 'Adds NEWTAG to the manifest REF points at, in the same repository (copies only the manifest).',
  flags: { ...REMOTE },
  args: ['REF', 'NEWTAG'],
  examples: ['berth tag localhost:5000/app:v1.2.3 stable', 'berth tag localhost:5000/app@sha256:… v1'],
  async run({ flags, args: [input, newTag] }) {
    const r = ref(input, 'REF', 'tag');
    if (!isValidTag(newTag))
      throw new UsageError(`invalid tag "${newTag}"; tags match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}`);
    const repo = makeClient(flags).repository(r, { push: true });
    const m = await repo.getManifest(refId(r));
    await repo.putManifest(newTag, m.bytes, m.mediaType);
    const name = `${r.registry}/${r.repository}:${newTag}`;
    if (flags.json) printJson({ reference: name, digest: m.digest });
    else console.log(`tagged ${name}@${m.digest}`);
  },
});
