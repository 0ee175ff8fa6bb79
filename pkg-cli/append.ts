// `berth append REF`: adds one layer (a tarball as it is, or a directory made into a layer reproducibly) on top of
// an image, or of every platform of an index, and writes the result. Existing layers are not re-uploaded.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendLayer, makeLayer } from '../builder/append.js';
import { BuildOptionError } from '../builder/spec.js';
import { CLIError, defineCommand, flag } from './command.js';
import { makeClient, printJson, TRANSPORT_HELP } from './_client.js';
import { platform, platforms, REMOTE, tagTo } from './flags.js';
import { openSource, openTarget, userError, written } from './_verbs.js';

export default defineCommand({
  usage: 'REF (--tarball FILE | --dir DIR) [flags]',
  description:
    "Adds a layer on top of REF (an image, or each platform of an index) and writes the result to REF's tag, or to\n--tag. Prints the new digest. The config's diff_ids and history grow by one entry.",
  flags: {
    tarball: flag.string({
      arg: 'FILE',
      complete: 'file',
      help: 'a tar, tar.gz or tar.zst file, used as the layer as it is (whiteouts .wh.NAME work)',
    }),
    dir: flag.string({
      arg: 'DIR',
      complete: 'dir',
      help: 'a directory whose contents become the layer at the image root, reproducibly: sorted, owner 0:0, modes 0644/0755, times at SOURCE_DATE_EPOCH (default 0)',
    }),
    compression: flag.choice(['gzip', 'zstd'], {
      help: "the layer's compression (default: the tarball's own, else gzip)",
    }),
    platform: platform('on an index, append only to this platform (default: all)'),
    tag: tagTo,
    ...REMOTE,
  },
  args: ['REF'],
  notes: TRANSPORT_HELP,
  examples: [
    'berth append localhost:5000/app:v1 --dir ./dist -t localhost:5000/app:v1-dist',
    'berth append localhost:5000/base:1 --tarball certs.tar.gz',
    'berth append oci:./layout:v1 --dir ./dist -t oci:./layout:v2',
  ],
  async run({ flags, args }) {
    if (!!flags.tarball === !!flags.dir) throw new CLIError('pass exactly one of --tarball FILE or --dir DIR', 2);
    const epoch = _epoch(process.env.SOURCE_DATE_EPOCH);
    const client = makeClient(flags);
    const src = await openSource(client, args[0], 'REF', 'append');
    const staging = await mkdtemp(join(tmpdir(), 'berth-append-'));
    let dst: Awaited<ReturnType<typeof openTarget>> | undefined;
    try {
      dst = await openTarget(client, src.image, flags.tag, 'append');
      const layer = await makeLayer(
        { tarball: flags.tarball, dir: flags.dir, compression: flags.compression, epoch },
        staging,
      ).catch(userError);
      const r = await appendLayer(src.source, src.reference, dst.target, dst.tag, layer, {
        platforms: platforms(flags.platform),
        epoch,
        // No local path in the history: the same input must give the same image on every machine.
        createdBy: `berth append ${flags.dir ? '--dir' : '--tarball'}`,
      }).catch((e) =>
        userError(
          // builder/ names the fix in its own terms; the flag that applies it is this command's.
          e instanceof BuildOptionError && e.option === 'compression'
            ? new CLIError(`${e.message} (--compression gzip)`)
            : e,
        ),
      );
      await dst.finish(r.digest).catch(userError);
      const layerInfo = { digest: layer.digest, diffId: layer.diffId, size: layer.size, mediaType: layer.mediaType };
      if (flags.json) printJson({ reference: written(dst.image, r.digest), layer: layerInfo, ...r });
      else console.log(written(dst.image, r.digest));
    } finally {
      await Promise.all([src.close(), dst?.close(), rm(staging, { recursive: true, force: true })]);
    }
  },
});

function _epoch(v: string | undefined): number {
  if (v === undefined || v === '') return 0;
  if (!/^\d{1,11}$/.test(v)) throw new CLIError(`SOURCE_DATE_EPOCH must be a whole number of seconds, not "${v}"`);
  return Number(v);
}
