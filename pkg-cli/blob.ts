// `berth blob NAME@DIGEST`: one blob, streamed and verified against its digest, to stdout or a file.
import { pipeline } from 'node:stream/promises';
import { CLIError, defineCommand, EXIT } from './command.js';
import { makeClient } from './_client.js';
import { output, REMOTE, ref } from './flags.js';
import { toOutput } from './_verbs.js';

export default defineCommand({
  usage: 'NAME@DIGEST [-o FILE]',
  description:
    'Streams the blob DIGEST of repository NAME, checking its size and digest. With -o the file appears only once\nevery byte is verified; on stdout a mismatch ends the output early with an error (exit status 7).',
  flags: { output, ...REMOTE },
  args: ['NAME@DIGEST'],
  examples: [
    'berth blob localhost:5000/app@sha256:… -o layer.tar.gz',
    'berth blob localhost:5000/app@sha256:… | tar -tzv',
  ],
  async run({ flags, args }) {
    const r = ref(args[0], 'NAME@DIGEST', 'blob');
    if (!r.digest) throw new CLIError(`${args[0]} names no digest; write it as NAME@sha256:<hex>`, EXIT.usage);
    const digest = r.digest;
    const repo = makeClient(flags).repository(r);
    const size = await repo.statBlob(digest);
    if (size === undefined || !Number.isFinite(size))
      throw new CLIError(`${r.registry}/${r.repository} has no blob ${digest}`, EXIT.notFound);
    await toOutput(flags.output, (out) => pipeline(repo.openBlob({ digest, size }), out));
  },
});
