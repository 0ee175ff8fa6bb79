// `berth delete REF`: deletes a manifest. A tag is resolved to its digest first (distribution deletes manifests
// by digest), so every tag pointing at that manifest goes with it — the command says which digest it removed.
import { formatReference } from '../spec/reference.js';
import { CLIError, defineCommand, EXIT } from './command.js';
import { makeClient, printJson } from './_client.js';
import { REMOTE, ref } from './flags.js';

export default defineCommand({
  usage: 'REF [--json]',
  description: `Deletes the manifest REF names. Given a tag, berth resolves it to a digest and deletes that manifest (all tags
pointing at it disappear). Blobs are reclaimed by the registry's garbage collection.`,
  flags: { ...REMOTE },
  args: ['REF'],
  examples: ['berth delete localhost:5000/app@sha256:…', 'berth delete localhost:5000/app:old'],
  async run({ flags, args }) {
    const r = ref(args[0], 'REF', 'delete');
    const repo = makeClient(flags).repository(r, { push: true });
    let digest = r.digest;
    if (!digest) {
      const head = (await repo.headManifest(r.tag!)) ?? undefined;
      digest = head?.digest ?? (await repo.getManifest(r.tag!).catch(() => undefined))?.digest;
      if (!digest)
        throw new CLIError(
          `${formatReference(r)} does not exist; check the tag with \`berth tags ${r.registry}/${r.repository}\``,
          EXIT.notFound,
        );
    }
    await repo.deleteManifest(digest);
    if (flags.json) printJson({ reference: formatReference(r), deleted: digest });
    else console.log(`deleted ${r.registry}/${r.repository}@${digest}`);
  },
});
