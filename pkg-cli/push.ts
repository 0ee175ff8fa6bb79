// `berth push (DIR[:TAG] | FILE) REF`: an OCI layout directory or a docker-archive tar → a registry.
import { stat } from 'node:fs/promises';
import { copy, remoteTarget, type ImageSource } from '../client/copy.js';
import { DockerArchive } from '../client/docker-archive.js';
import { OciLayout, parseLayoutArg } from '../client/layout.js';
import { formatReference } from '../spec/reference.js';
import { CLIError, defineCommand, EXIT, flag } from './command.js';
import { imageRef, makeClient, printJson } from './_client.js';
import type { Client } from '../client/remote.js';
import { openImage } from '../client/transports.js';
import { jobs, platform, platforms, ref, TRANSFER } from './flags.js';
import { startProgress } from './progress.js';

const NONE = async () => {};

/** SOURCE: a transport reference (oci:, oci-archive:, docker-archive:), else a directory or tar file by what it is. */
async function openSource(
  arg: string,
  client: Client,
): Promise<{ source: ImageSource; reference: string; close(): Promise<void> }> {
  if (/^(oci|oci-archive|docker-archive):/.test(arg)) {
    return openImage(imageRef(arg, 'SOURCE', 'push'), client);
  }
  const { dir, tag } = parseLayoutArg(arg);
  for (const [path, name] of [
    [arg, ''],
    [dir, tag ?? ''],
  ] as const) {
    let s;
    try {
      s = await stat(path);
    } catch {
      continue;
    }
    if (s.isDirectory()) return { source: await OciLayout.open(path), reference: name, close: NONE };
    return { source: await DockerArchive.open(path), reference: name, close: NONE };
  }
  throw new CLIError(`${dir} does not exist; pass an OCI layout directory or a docker-archive tar file`, EXIT.notFound);
}

export default defineCommand({
  usage: '(DIR[:TAG] | FILE[:IMAGE] | oci:DIR[:TAG] | oci-archive:FILE[:TAG] | docker-archive:FILE[:NAME:TAG]) REF',
  description: `Uploads an image from an OCI layout directory (written by berth pull, berth build, skopeo, umoci…) or from a
docker-archive tar (docker save, berth pull --docker-archive) to a registry. Blobs the registry already has are
skipped. A layout with several images needs :TAG; an archive with several images needs :IMAGE (a RepoTag).`,
  flags: {
    platform: platform('push only this platform of an index (os/arch[/variant])'),
    referrers: flag.boolean({
      help: 'also push the referrers a layout lists (signatures, SBOMs written by berth pull --referrers, oras…)',
    }),
    jobs: jobs('blobs uploaded in parallel'),
    ...TRANSFER,
  },
  args: ['SOURCE', 'REF'],
  examples: [
    'berth push ./app-layout localhost:5000/app:v1',
    'berth push ./layout:v2 registry.example.com/team/app:v2',
    'berth push --referrers ./signed-layout:v1 localhost:5000/app:v1',
    'docker save busybox:latest -o bb.tar && berth push bb.tar localhost:5000/busybox:latest',
    'berth push oci-archive:app.tar:v1 localhost:5000/app:v1',
  ],
  async run({ flags, args: [from, to] }) {
    const dst = ref(to, 'REF', 'push');
    const wanted = platforms(flags.platform);
    const client = makeClient(flags);
    const { source, reference, close } = await openSource(from, client);
    const repo = client.repository(dst, { push: true });
    const progress = startProgress('push', flags);
    try {
      const r = await copy(source, reference, remoteTarget(repo), dst.tag ?? '', {
        platforms: wanted,
        referrers: flags.referrers,
        concurrency: flags.jobs,
        progress,
      });
      const name = `${formatReference({ ...dst, digest: undefined })}@${r.digest}`;
      progress.done();
      if (flags.json) printJson({ source: source.label, destination: name, ...r });
      else console.log(`pushed ${name}`);
    } finally {
      progress.done();
      await close();
    }
  },
});
