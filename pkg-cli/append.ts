// `berth append REF`: adds one layer (a tarball as it is, or a directory made into a layer reproducibly) on top of
// an image, or of every platform of an index, and pushes the result. Existing layers are not re-uploaded.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendLayer, makeLayer } from '../builder/append.js';
import { CLIError, parseFlags, type LegacyCommand, legacyCommand } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, platforms, positionals, printJson } from './_client.js';
import { openSource, openTarget, userError, written } from './_verbs.js';

const HELP = `Usage: berth append REF (--tarball FILE | --dir DIR) [flags]

Adds a layer on top of REF (an image, or each platform of an index) and pushes the result to REF's tag, or to
--tag. Prints the new digest. The config's diff_ids and history grow by one entry.

Flags:
  --tarball FILE     a tar, tar.gz or tar.zst file, used as the layer as it is (whiteouts .wh.NAME work)
  --dir DIR          a directory whose contents become the layer at the image root, reproducibly: sorted,
                     owner 0:0, modes 0644/0755, times at SOURCE_DATE_EPOCH (default 0)
  --compression C    gzip or zstd (default: the tarball's own, else gzip)
  --platform P       on an index, append only to this platform (repeatable; default: all)
  -t, --tag REF      write the result here instead of REF's tag
${COMMON_HELP}

Examples:
  berth append localhost:5000/app:v1 --dir ./dist -t localhost:5000/app:v1-dist
  berth append localhost:5000/base:1 --tarball certs.tar.gz`;

const command: LegacyCommand = {
  name: 'append',
  summary: 'add a tarball or directory as a new layer on an image',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('append', argv, {
      ...COMMON_FLAGS,
      tarball: { type: 'string' },
      dir: { type: 'string' },
      compression: { type: 'string' },
      platform: { type: 'string', multiple: true },
      tag: { type: 'string', short: 't' },
    });
    const client = makeClient(values);
    const src = openSource(client, positionals(pos, 1, 'berth append REF --tarball FILE')[0], 'REF', 'append');
    if (!!values.tarball === !!values.dir) throw new CLIError('pass exactly one of --tarball FILE or --dir DIR');
    const c = values.compression;
    if (c !== undefined && c !== 'gzip' && c !== 'zstd')
      throw new CLIError(`--compression ${c} is not supported; use gzip or zstd`);
    const epoch = _epoch(process.env.SOURCE_DATE_EPOCH);
    const dst = openTarget(client, src.ref, values.tag, 'append');
    const staging = await mkdtemp(join(tmpdir(), 'berth-append-'));
    try {
      const layer = await makeLayer(
        { tarball: values.tarball, dir: values.dir, compression: c as 'gzip' | 'zstd' | undefined, epoch },
        staging,
      ).catch(userError);
      const r = await appendLayer(src.source, src.reference, dst.target, dst.tag, layer, {
        platforms: platforms(values.platform),
        epoch,
        // No local path in the history: the same input must give the same image on every machine.
        createdBy: `berth append ${values.dir ? '--dir' : '--tarball'}`,
      }).catch(userError);
      const layerInfo = { digest: layer.digest, diffId: layer.diffId, size: layer.size, mediaType: layer.mediaType };
      if (values.json) printJson({ reference: written(dst.ref, r.digest), layer: layerInfo, ...r });
      else console.log(written(dst.ref, r.digest));
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  },
};

function _epoch(v: string | undefined): number {
  if (v === undefined || v === '') return 0;
  if (!/^\d{1,11}$/.test(v)) throw new CLIError(`SOURCE_DATE_EPOCH must be a whole number of seconds, not "${v}"`);
  return Number(v);
}
export default legacyCommand(command);
