// `berth blob NAME@DIGEST`: one blob, streamed and verified against its digest, to stdout or a file.
import { pipeline } from 'node:stream/promises';
import { CLIError, parseFlags, type LegacyCommand, legacyCommand } from './command.js';
import { makeClient, positionals, ref } from './_client.js';
import { toOutput } from './_verbs.js';

const HELP = `Usage: berth blob NAME@DIGEST [-o FILE]

Streams the blob DIGEST of repository NAME, checking its size and digest. With -o the file appears only once
every byte is verified; on stdout a mismatch ends the output early with an error (exit status 1).

Flags:
  -o, --output F   write to F instead of stdout
  --insecure       allow plain HTTP / unverified TLS for non-loopback registries

Examples:
  berth blob localhost:5000/app@sha256:… -o layer.tar.gz
  berth blob localhost:5000/app@sha256:… | tar -tzv`;

const command: LegacyCommand = {
  name: 'blob',
  summary: 'fetch one blob by digest (verified)',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('blob', argv, {
      insecure: { type: 'boolean' },
      output: { type: 'string', short: 'o' },
    });
    const input = positionals(pos, 1, 'berth blob NAME@DIGEST')[0];
    const r = ref(input, 'NAME@DIGEST', 'blob');
    if (!r.digest) throw new CLIError(`${input} names no digest; write it as NAME@sha256:<hex>`);
    const digest = r.digest;
    const repo = makeClient(values).repository(r);
    const size = await repo.statBlob(digest);
    if (size === undefined || !Number.isFinite(size))
      throw new CLIError(`${r.registry}/${r.repository} has no blob ${digest}`, 1);
    await toOutput(values.output, (out) => pipeline(repo.openBlob({ digest, size }), out));
  },
};
export default legacyCommand(command);
