// `berth rebase REF`: put an image's own layers on a newer base without rebuilding them. The old base comes from
// the image's org.opencontainers.image.base.* annotations (berth build records them) or --old-base; the new one
// from --new-base or the newest digest of the old base's name.
import { remoteSource } from '../client/copy.js';
import { rebase, type BaseRef } from '../client/rebase.js';
import type { Client } from '../client/remote.js';
import { formatReference } from '../spec/reference.js';
import { CLIError, parseFlags, type LegacyCommand, legacyCommand } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, platforms, positionals, printJson, ref, refId } from './_client.js';
import { openSource, openTarget, userError, written } from './_verbs.js';

const HELP = `Usage: berth rebase REF [--old-base REF] [--new-base REF] [-t REF]

Swaps the base layers of REF (an image, or each platform of an index): the image must start with the old base's
layers; those are replaced by the new base's, and the layers on top, the config and the rest stay. The base
annotations are updated. Pushes to REF's tag, or to --tag, and prints the new digest.

For images built FROM a base by \`berth build\` no flag is needed: the old base is the digest the build recorded
(org.opencontainers.image.base.digest) and the new base is the newest digest of its tag (…base.name).

Flags:
  --old-base REF     the base the image was built on (default: from its annotations)
  --new-base REF     the base to put under it (default: the old base's tag, read now)
  --platform P       on an index, rebase only this platform (repeatable; default: all)
  -t, --tag REF      write the result here instead of REF's tag
${COMMON_HELP}

Examples:
  berth rebase localhost:5000/app:v1
  berth rebase localhost:5000/app:v1 --old-base localhost:5000/base@sha256:… --new-base localhost:5000/base:2`;

const command: LegacyCommand = {
  name: 'rebase',
  summary: "swap an image's base layers for a newer base",
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('rebase', argv, {
      ...COMMON_FLAGS,
      'old-base': { type: 'string' },
      'new-base': { type: 'string' },
      platform: { type: 'string', multiple: true },
      tag: { type: 'string', short: 't' },
    });
    const client = makeClient(values);
    const src = openSource(client, positionals(pos, 1, 'berth rebase REF')[0], 'REF', 'rebase');
    const oldBase = values['old-base'] ? _base(client, values['old-base'], '--old-base') : undefined;
    const newBase = values['new-base'] ? _base(client, values['new-base'], '--new-base') : undefined;
    const openBase = (name: string) => {
      try {
        return _base(client, name, 'the base annotation');
      } catch {
        throw new CLIError(
          `the image's base "${name}" is not a registry reference; name the bases with --old-base and --new-base`,
        );
      }
    };
    const mounts = [newBase?.ref, oldBase?.ref].filter((r) => r !== undefined);
    const dst = openTarget(client, src.ref, values.tag, 'rebase', mounts);
    const r = await rebase(src.source, src.reference, dst.target, dst.tag, {
      oldBase: oldBase?.base,
      newBase: newBase?.base,
      openBase: (name) => openBase(name).base,
      platforms: platforms(values.platform),
    }).catch(userError);
    if (values.json) printJson({ reference: written(dst.ref, r.digest), ...r });
    else {
      if (r.digest === r.from) console.error(`already on ${r.newBase.name}@${r.newBase.digest}`);
      console.log(written(dst.ref, r.digest));
    }
  },
};

function _base(client: Client, input: string, what: string) {
  const r = ref(input, what, 'rebase');
  const base: BaseRef = {
    source: remoteSource(client.repository(r)),
    reference: refId(r),
    name: formatReference({ ...r, digest: undefined }),
  };
  return { ref: r, base };
}
export default legacyCommand(command);
