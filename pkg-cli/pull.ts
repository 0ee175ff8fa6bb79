// `berth pull REF --oci-layout DIR[:TAG] | --docker-archive FILE`: registry → a file medium.
// An OCI layout keeps every platform (or the ones picked); a docker-archive holds one platform (this machine's
// unless --platform says otherwise), loadable with `docker load`.
import { copy, remoteSource, type CopyResult } from '../client/copy.js';
import { OciLayout, parseLayoutArg } from '../client/layout.js';
import { isIndexType } from '../spec/media-types.js';
import type { ImageIndex } from '../spec/manifest.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { formatReference } from '../spec/reference.js';
import { CLIError, defineCommand, EXIT, flag, UsageError } from './command.js';
import { hostPlatform, imageRef, makeClient, printJson, refId } from './_client.js';
import { saveDockerArchive, writeImage } from '../client/transports.js';
import { dockerTag, platform, platforms, ref, TRANSFER } from './flags.js';
import { startProgress } from './progress.js';

/** copy()'s result in a pull's words: blobs are downloaded into the medium, not uploaded (issue 17). */
function _pulled(r: CopyResult) {
  const { uploaded, existed, bytes } = r.blobs;
  return { ...r, blobs: { downloaded: uploaded, existed, bytes } };
}

export default defineCommand({
  usage: [
    'REF (--oci-layout DIR[:TAG] | --docker-archive FILE) [flags]',
    'REF (oci:DIR[:TAG] | oci-archive:FILE[:TAG] | docker-archive:FILE[:NAME:TAG]) [flags]',
  ],
  description: `Downloads an image into an OCI image layout directory (all platforms unless --platform) or a docker-archive tar
(one platform: this machine's unless --platform). Every blob is verified by digest; interrupted downloads resume (into a docker-archive too: blobs are staged beside the file).
The destination may also be named as a transport reference (as skopeo writes it); an oci-archive is a layout packed
into a tar that appears only when complete.`,
  flags: {
    'oci-layout': flag.string({
      arg: 'DIR[:TAG]',
      complete: 'dir',
      help: "write (or add to) an OCI layout; TAG defaults to the reference's tag",
    }),
    'docker-archive': flag.string({ arg: 'FILE', complete: 'file', help: 'write a tar for `docker load`' }),
    platform: platform('os/arch[/variant]; several only for layouts'),
    referrers: flag.boolean({
      help: 'also pull referrers (layouts only; listed in index.json, found by berth push and oras)',
    }),
    ...TRANSFER,
  },
  args: ['REF', '[DEST]'],
  examples: [
    'berth pull localhost:5000/app:v1 oci-archive:app.tar:v1',
    'berth pull localhost:5000/app:v1 --oci-layout ./app-layout',
    'berth pull localhost:5000/app:v1 --docker-archive app.tar && docker load -i app.tar',
    'berth pull --platform linux/arm64 localhost:5000/app:v1 --oci-layout out:v1-arm64',
  ],
  async run({ flags, args }) {
    const r = ref(args[0], 'REF', 'pull');
    const dest = args[1] === undefined ? undefined : imageRef(args[1], 'DEST', 'pull');
    if (dest?.transport === 'docker')
      throw new UsageError(
        `DEST ${args[1]} is a registry; pull writes oci:DIR, oci-archive:FILE or docker-archive:FILE (use berth copy between registries)`,
      );
    if ([flags['oci-layout'], flags['docker-archive'], dest].filter(Boolean).length !== 1) {
      throw new UsageError(
        'say where to write: exactly one of --oci-layout DIR, --docker-archive FILE or a DEST such as oci-archive:FILE',
      );
    }
    const wantedPlatforms = platforms(flags.platform);
    const client = makeClient(flags);
    const repo = client.repository(r);
    const src = remoteSource(repo);
    const progress = startProgress('pull', flags);
    try {
      if (dest) {
        const wanted = wantedPlatforms ?? (dest.transport === 'docker-archive' ? [hostPlatform()] : undefined);
        const res = await writeImage(src, refId(r), dest, client, {
          platforms: wanted,
          platform: wanted?.[0],
          referrers: flags.referrers,
          progress,
        });
        progress.done();
        const into = dest.path!;
        if (flags.json)
          printJson({
            reference: formatReference(r),
            destination: dest.input,
            digest: res.digest,
            mediaType: res.mediaType,
            ...(res.copy ? _pulled(res.copy) : {}),
          });
        else console.log(`pulled ${formatReference(r)}@${res.digest} into ${into}`);
        return;
      }
      if (flags['oci-layout']) {
        const { dir, tag } = parseLayoutArg(flags['oci-layout']);
        const layout = await OciLayout.create(dir);
        const res = await copy(src, refId(r), layout, tag ?? r.tag ?? '', {
          platforms: wantedPlatforms,
          referrers: flags.referrers,
          progress,
        });
        progress.done();
        if (flags.json) printJson({ reference: formatReference(r), layout: dir, ..._pulled(res) });
        else console.log(`pulled ${formatReference(r)}@${res.digest} into ${dir}`);
        return;
      }
      const wanted = wantedPlatforms ?? [hostPlatform()];
      if (wanted.length !== 1) throw new UsageError('a docker-archive holds one platform; pass a single --platform');
      let m = await src.manifest(refId(r));
      if (isIndexType(m.mediaType)) {
        const index = JSON.parse(m.bytes.toString('utf8')) as ImageIndex;
        const hit = index.manifests.find((d) => platformMatches(d.platform, wanted[0]));
        if (!hit) {
          const have = index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : '?')).join(', ');
          throw new CLIError(
            `${formatReference(r)} has no image for ${formatPlatform(wanted[0])}; available: ${have} — pick one with --platform`,
            EXIT.notFound,
          );
        }
        m = await src.manifest(hit.digest);
      }
      const file = flags['docker-archive']!;
      await saveDockerArchive(file, src, m, r.tag ? [dockerTag(r)] : [], { progress });
      progress.done();
      if (flags.json)
        printJson({ reference: formatReference(r), archive: file, digest: m.digest, mediaType: m.mediaType });
      else console.log(`pulled ${formatReference(r)}@${m.digest} into ${file}`);
    } finally {
      progress.done();
    }
  },
});
