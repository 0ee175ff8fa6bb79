// `berth index create|add|remove`: make or amend a multi-platform index from per-platform images. Platforms come
// from each image's config; children are copied (mounted on the same registry) into the index's repository first.
import { remoteSource } from '../client/copy.js';
import { writeIndex, type IndexInput } from '../client/indexes.js';
import { isDigest, type Digest } from '../spec/digest.js';
import { CLIError, parseFlags, type LegacyCommand, legacyCommand } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, platforms, printJson, ref, refId } from './_client.js';
import { keyValues, openTarget, userError, written } from './_verbs.js';

const HELP = `Usage: berth index create REF IMAGE...
       berth index add REF IMAGE...
       berth index remove REF (--platform P | --digest D)...

create   writes a new index at REF listing each IMAGE under the platform its config names (an IMAGE that is an
         index contributes all its platforms); two images of one platform are refused.
add      amends the index at REF: each IMAGE is added, replacing the entry of the same platform.
remove   amends the index at REF without the entries of --platform or --digest.
Images from other repositories are copied into REF's repository first (mounted on the same registry).
Prints the new index's digest.

Flags:
  --annotation K=V   set an annotation on the index (repeatable)
  --platform P       remove: the platform to drop (repeatable)
  --digest D         remove: the manifest digest to drop (repeatable)
${COMMON_HELP}

Examples:
  berth index create localhost:5000/app:v1 localhost:5000/app:v1-amd64 localhost:5000/app:v1-arm64
  berth index add localhost:5000/app:v1 localhost:5000/app:v1-riscv64
  berth index remove localhost:5000/app:v1 --platform linux/riscv64`;

const command: LegacyCommand = {
  name: 'index',
  summary: 'create or amend a multi-platform index from per-platform images',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('index', argv, {
      ...COMMON_FLAGS,
      annotation: { type: 'string', multiple: true },
      platform: { type: 'string', multiple: true },
      digest: { type: 'string', multiple: true },
    });
    const [action, target, ...images] = pos;
    if (!['create', 'add', 'remove'].includes(action ?? ''))
      throw new CLIError(
        `expected create, add or remove, not ${action ? `"${action}"` : 'nothing'}; see \`berth index --help\``,
      );
    const client = makeClient(values);
    const dstRef = ref(target, 'REF', 'index');
    if (dstRef.digest) throw new CLIError(`REF ${target} names a digest; an index is written to a tag`);
    if (action !== 'remove' && !images.length) throw new CLIError(`berth index ${action} needs at least one IMAGE`);
    if (action === 'remove' && images.length)
      throw new CLIError('berth index remove takes no IMAGE; name entries with --platform or --digest');
    if (action !== 'remove' && (values.platform || values.digest))
      throw new CLIError(
        '--platform and --digest are for `berth index remove`; create and add read platforms from each image',
      );
    const inputs = images.map((i) => ref(i, 'IMAGE', 'index'));
    const dst = openTarget(client, dstRef, undefined, 'index', inputs);
    const add: IndexInput[] = inputs.map((r) => ({ source: remoteSource(client.repository(r)), reference: refId(r) }));
    const base = action === 'create' ? undefined : await client.repository(dstRef).getManifest(refId(dstRef));
    const digests = ((values.digest ?? []) as string[]).map((d) => {
      if (!isDigest(d)) throw new CLIError(`--digest ${d} is not a digest (sha256:<64 hex>)`);
      return d as Digest;
    });
    if (action === 'remove' && !values.platform?.length && !digests.length)
      throw new CLIError('berth index remove needs --platform P or --digest D');
    const r = await writeIndex(dst.target, dst.tag, {
      base,
      add,
      removePlatforms: platforms(values.platform),
      removeDigests: digests,
      annotations: keyValues(values.annotation, '--annotation'),
    }).catch(userError);
    if (values.json) printJson({ reference: written(dst.ref, r.digest), ...r });
    else console.log(written(dst.ref, r.digest));
  },
};
export default legacyCommand(command);
