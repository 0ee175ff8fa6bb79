// `berth pull REF --oci-layout DIR[:TAG] | --docker-archive FILE`: registry → a file medium.
// An OCI layout keeps every platform (or the ones picked); a docker-archive holds one platform (this machine's
// unless --platform says otherwise), loadable with `docker load`.
import { copy, remoteSource } from '../client/copy.js';
import { writeDockerArchive } from '../client/docker-archive.js';
import { OciLayout, parseLayoutArg } from '../client/layout.js';
import { isIndexType } from '../spec/media-types.js';
import type { ImageIndex } from '../spec/manifest.js';
import { formatPlatform, platformMatches } from '../spec/platform.js';
import { formatReference } from '../spec/reference.js';
import { dockerTag } from '../client/transports.js';
import { CLIError, parseFlags, type Command } from './command.js';
import {
  COMMON_FLAGS,
  COMMON_HELP,
  hostPlatform,
  makeClient,
  platforms,
  positionals,
  printJson,
  ref,
  refId,
} from './_client.js';
import { terminalProgress } from './progress.js';

const HELP = `Usage: berth pull REF (--oci-layout DIR[:TAG] | --docker-archive FILE) [flags]

Downloads an image into an OCI image layout directory (all platforms unless --platform) or a docker-archive tar
(one platform: this machine's unless --platform). Every blob is verified by digest; interrupted downloads resume.

Flags:
  --oci-layout DIR[:TAG]   write (or add to) an OCI layout; TAG defaults to the reference's tag
  --docker-archive FILE    write a tar for \`docker load\`
  --platform P             os/arch[/variant]; repeatable for layouts
  --referrers              also pull referrers (layouts only; listed in index.json, found by berth push and oras)
${COMMON_HELP}

Examples:
  berth pull localhost:5000/app:v1 --oci-layout ./app-layout
  berth pull localhost:5000/app:v1 --docker-archive app.tar && docker load -i app.tar
  berth pull --platform linux/arm64 localhost:5000/app:v1 --oci-layout out:v1-arm64`;

/** The RepoTags docker load will apply (kept here for build.ts; the one definition is in client/transports.ts). */
export { dockerTag };

const command: Command = {
  name: 'pull',
  summary: 'download an image to an OCI layout directory or a docker-archive tar',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('pull', argv, {
      ...COMMON_FLAGS,
      'oci-layout': { type: 'string' },
      'docker-archive': { type: 'string' },
      platform: { type: 'string', multiple: true },
      referrers: { type: 'boolean' },
    });
    const [input] = positionals(pos, 1, 'berth pull REF --oci-layout DIR | --docker-archive FILE');
    const r = ref(input, 'REF', 'pull');
    if (!values['oci-layout'] === !values['docker-archive']) {
      throw new CLIError('say where to write: exactly one of --oci-layout DIR or --docker-archive FILE');
    }
    const repo = makeClient(values).repository(r);
    const src = remoteSource(repo);
    const progress = values.json ? undefined : terminalProgress();
    try {
      if (values['oci-layout']) {
        const { dir, tag } = parseLayoutArg(values['oci-layout']);
        const layout = await OciLayout.create(dir);
        const res = await copy(src, refId(r), layout, tag ?? r.tag ?? '', {
          platforms: platforms(values.platform),
          referrers: !!values.referrers,
          progress,
        });
        progress?.stop();
        if (values.json) printJson({ reference: formatReference(r), layout: dir, ...res });
        else console.log(`pulled ${formatReference(r)}@${res.digest} into ${dir}`);
        return;
      }
      const wanted = platforms(values.platform) ?? [hostPlatform()];
      if (wanted.length !== 1) throw new CLIError('a docker-archive holds one platform; pass a single --platform');
      let m = await src.manifest(refId(r));
      if (isIndexType(m.mediaType)) {
        const index = JSON.parse(m.bytes.toString('utf8')) as ImageIndex;
        const hit = index.manifests.find((d) => platformMatches(d.platform, wanted[0]));
        if (!hit) {
          const have = index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : '?')).join(', ');
          throw new CLIError(
            `${formatReference(r)} has no image for ${formatPlatform(wanted[0])}; available: ${have} — pick one with --platform`,
          );
        }
        m = await src.manifest(hit.digest);
      }
      const file = values['docker-archive']!;
      progress?.blobStart(m.digest, 0);
      await writeDockerArchive(file, src, m, r.tag ? [dockerTag(r)] : [], {
        onBytes: (d, n) => progress?.blobBytes(d, n),
      });
      progress?.stop();
      if (values.json)
        printJson({ reference: formatReference(r), archive: file, digest: m.digest, mediaType: m.mediaType });
      else console.log(`pulled ${formatReference(r)}@${m.digest} into ${file}`);
    } finally {
      progress?.stop();
    }
  },
};
export default command;
