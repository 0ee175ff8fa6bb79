// `berth rebase REF`: put an image's own layers on a newer base without rebuilding them. The old base comes from
// the image's org.opencontainers.image.base.* annotations (berth build records them) or --old-base; the new one
// from --new-base or the newest digest of the old base's name.
import { remoteSource } from '../client/copy.js';
import { rebase, type BaseRef } from '../client/rebase.js';
import type { Client } from '../client/remote.js';
import { parseImageRef } from '../client/transports.js';
import { formatReference } from '../spec/reference.js';
import { CLIError, defineCommand, flag } from './command.js';
import { makeClient, printJson, refId, TRANSPORT_HELP } from './_client.js';
import { platform, platforms, REMOTE, ref, tagTo } from './flags.js';
import { openSource, openTarget, userError, written } from './_verbs.js';

export default defineCommand({
  usage: 'REF [--old-base REF] [--new-base REF] [-t REF]',
  description: `Swaps the base layers of REF (an image, or each platform of an index): the image must start with the old base's
layers; those are replaced by the new base's, and the layers on top, the config and the rest stay. The base
annotations are updated. Writes to REF's tag, or to --tag, and prints the new digest.

For images built FROM a base by \`berth build\` no flag is needed: the old base is the digest the build recorded
(org.opencontainers.image.base.digest) and the new base is the newest digest of its tag (…base.name).`,
  flags: {
    'old-base': flag.string({ arg: 'REF', help: 'the base the image was built on (default: from its annotations)' }),
    'new-base': flag.string({ arg: 'REF', help: "the base to put under it (default: the old base's tag, read now)" }),
    platform: platform('on an index, rebase only this platform (default: all)'),
    tag: tagTo,
    ...REMOTE,
  },
  args: ['REF'],
  notes: `${TRANSPORT_HELP}\nBases are registry references.`,
  examples: [
    'berth rebase localhost:5000/app:v1',
    'berth rebase localhost:5000/app:v1 --old-base localhost:5000/base@sha256:… --new-base localhost:5000/base:2',
  ],
  async run({ flags, args }) {
    const client = makeClient(flags);
    const oldBase = flags['old-base'] ? _base(client, flags['old-base'], '--old-base') : undefined;
    const newBase = flags['new-base'] ? _base(client, flags['new-base'], '--new-base') : undefined;
    const openBase = (name: string) => {
      try {
        return _base(client, name, 'the base annotation');
      } catch {
        throw new CLIError(
          `the image's base "${name}" is not a registry reference; name the bases with --old-base and --new-base`,
        );
      }
    };
    const src = await openSource(client, args[0], 'REF', 'rebase');
    let dst: Awaited<ReturnType<typeof openTarget>> | undefined;
    try {
      const mounts = [newBase?.ref, oldBase?.ref].filter((r) => r !== undefined);
      dst = await openTarget(
        client,
        src.image,
        flags.tag,
        'rebase',
        mounts.map((r) => parseImageRef(formatReference(r))),
      );
      const r = await rebase(src.source, src.reference, dst.target, dst.tag, {
        oldBase: oldBase?.base,
        newBase: newBase?.base,
        openBase: (name) => openBase(name).base,
        platforms: platforms(flags.platform),
      }).catch(userError);
      await dst.finish(r.digest).catch(userError);
      if (flags.json) printJson({ reference: written(dst.image, r.digest), ...r });
      else {
        if (r.digest === r.from) console.error(`already on ${r.newBase.name}@${r.newBase.digest}`);
        console.log(written(dst.image, r.digest));
      }
    } finally {
      await Promise.all([src.close(), dst?.close()]);
    }
  },
});

function _base(client: Client, input: string, what: string) {
  const r = ref(input, what, 'rebase');
  const base: BaseRef = {
    source: remoteSource(client.repository(r)),
    reference: refId(r),
    name: formatReference({ ...r, digest: undefined }),
  };
  return { ref: r, base };
}
