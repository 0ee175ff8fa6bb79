// `berth index create|add|remove`: make or amend a multi-platform index from per-platform images. Platforms come
// from each image's config; children are copied (mounted on the same registry) into the index's repository first.
import type { IndexInput } from '../client/indexes.js';
import { writeIndex } from '../client/indexes.js';
import { isDigest, type Digest } from '../spec/digest.js';
import { CLIError, defineCommand, EXIT, flag } from './command.js';
import { imageRef, makeClient, printJson, TRANSPORT_HELP } from './_client.js';
import { platform, platforms, REMOTE } from './flags.js';
import { keyValues, type Opened, openSource, openTarget, userError, written } from './_verbs.js';

export default defineCommand({
  usage: ['create REF IMAGE...', 'add REF IMAGE...', 'remove REF (--platform P | --digest D)...'],
  description: `create   writes a new index at REF listing each IMAGE under the platform its config names (an IMAGE that is an
         index contributes all its platforms); two images of one platform are refused.
add      amends the index at REF: each IMAGE is added, replacing the entry of the same platform.
remove   amends the index at REF without the entries of --platform or --digest.

Images from other repositories are copied into REF's repository first (mounted on the same registry).
Prints the new index's digest.`,
  flags: {
    annotation: flag.list({ arg: 'K=V', help: 'set an annotation on the index (create and add)' }),
    platform: platform('remove: the entry of this platform'),
    digest: flag.list({ arg: 'D', help: 'remove: the entry with this digest' }),
    ...REMOTE,
  },
  args: ['ACTION', 'REF', 'IMAGE...'],
  verbs: ['create', 'add', 'remove'],
  notes: TRANSPORT_HELP,
  examples: [
    'berth index create localhost:5000/app:v1 localhost:5000/app:v1-amd64 localhost:5000/app:v1-arm64',
    'berth index add localhost:5000/app:v1 localhost:5000/app:v1-riscv64',
    'berth index remove localhost:5000/app:v1 --platform linux/riscv64',
    'berth index create oci:./multi:v1 oci:./amd64:v1 oci:./arm64:v1',
  ],
  async run({ flags, args }) {
    const [action, target, ...images] = args;
    if (!['create', 'add', 'remove'].includes(action))
      throw new CLIError(`expected create, add or remove, not "${action}"; see \`berth index --help\``, EXIT.usage);
    if (action !== 'remove' && !images.length)
      throw new CLIError(`berth index ${action} needs at least one IMAGE`, EXIT.usage);
    if (action === 'remove' && images.length)
      throw new CLIError('berth index remove takes no IMAGE; name entries with --platform or --digest', EXIT.usage);
    if (action !== 'remove' && (flags.platform.length || flags.digest.length))
      throw new CLIError(
        '--platform and --digest are for `berth index remove`; create and add read platforms from each image',
        EXIT.usage,
      );
    const digests = flags.digest.map((d) => {
      if (!isDigest(d)) throw new CLIError(`--digest ${d} is not a digest (sha256:<64 hex>)`, EXIT.usage);
      return d as Digest;
    });
    if (action === 'remove' && !flags.platform.length && !digests.length)
      throw new CLIError('berth index remove needs --platform P or --digest D', EXIT.usage);
    const client = makeClient(flags);
    const opened: Opened[] = [];
    try {
      for (const i of images) opened.push(await openSource(client, i, 'IMAGE', 'index'));
      const dstInput = imageRef(target, 'REF', 'index');
      if (action !== 'create' && dstInput.transport.endsWith('-archive'))
        throw new CLIError(
          `berth index ${action} amends an index in a registry or an oci: layout; an archive is written whole — use berth index create`,
          EXIT.usage,
        );
      const base = action === 'create' ? undefined : await openSource(client, target, 'REF', 'index');
      if (base) opened.push(base);
      if (dstInput.ref?.digest || (dstInput.transport === 'oci' && dstInput.name?.includes(':')))
        throw new CLIError(`REF ${target} names a digest; an index is written to a tag`, EXIT.usage);
      const dst = await openTarget(
        client,
        dstInput,
        undefined,
        'index',
        opened.map((o) => o.image),
      );
      try {
        const add: IndexInput[] = opened
          .filter((o) => o !== base)
          .map((o) => ({ source: o.source, reference: o.reference }));
        const r = await writeIndex(dst.target, dst.tag, {
          base: base && (await base.source.manifest(base.reference).catch(userError)),
          add,
          removePlatforms: platforms(flags.platform),
          removeDigests: digests,
          annotations: keyValues(flags.annotation, '--annotation'),
        }).catch(userError);
        await dst.finish(r.digest).catch(userError);
        if (flags.json) printJson({ reference: written(dst.image, r.digest), ...r });
        else console.log(written(dst.image, r.digest));
      } finally {
        await dst.close();
      }
    } finally {
      await Promise.all(opened.map((o) => o.close()));
    }
  },
});
