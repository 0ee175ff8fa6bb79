// `berth delete REF`: deletes a manifest. A tag is resolved to its digest first (distribution deletes manifests
// by digest), so every tag pointing at that manifest goes with it — the command says which digest it removed.
import { formatReference } from '../spec/reference.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, positionals, printJson, ref } from './_client.js';

const HELP = `Usage: berth delete REF [--json]

Deletes the manifest REF names. Given a tag, berth resolves it to a digest and deletes that manifest (all tags
pointing at it disappear). Blobs are reclaimed by the registry's garbage collection.

Flags:
${COMMON_HELP}

Examples:
  berth delete localhost:5000/app@sha256:…
  berth delete localhost:5000/app:old`;

const command: Command = {
  name: 'delete',
  summary: 'delete a manifest (by digest, or the digest a tag points at)',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('delete', argv, { ...COMMON_FLAGS });
    const r = ref(positionals(pos, 1, 'berth delete REF')[0], 'REF', 'delete');
    const repo = makeClient(values).repository(r, { push: true });
    let digest = r.digest;
    if (!digest) {
      const head = (await repo.headManifest(r.tag!)) ?? undefined;
      digest = head?.digest ?? (await repo.getManifest(r.tag!).catch(() => undefined))?.digest;
      if (!digest)
        throw new CLIError(
          `${formatReference(r)} does not exist; check the tag with \`berth tags ${r.registry}/${r.repository}\``,
        );
    }
    await repo.deleteManifest(digest);
    if (values.json) printJson({ reference: formatReference(r), deleted: digest });
    else console.log(`deleted ${r.registry}/${r.repository}@${digest}`);
  },
};
export default command;
