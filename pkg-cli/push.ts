// `berth push (DIR[:TAG] | FILE) REF`: an OCI layout directory or a docker-archive tar → a registry.
import { stat } from 'node:fs/promises';
import { copy, remoteTarget, type ImageSource } from '../client/copy.js';
import { DockerArchive } from '../client/docker-archive.js';
import { OciLayout, parseLayoutArg } from '../client/layout.js';
import { formatReference } from '../spec/reference.js';
import { CLIError, defineCommand, EXIT, flag } from './command.js';
import { makeClient, printJson } from './_client.js';
import { jobs, platform, platforms, ref, TRANSFER } from './flags.js';
import { startProgress } from './progress.js';

async function openSource(arg: string): Promise<{ source: ImageSource; reference: string }> {
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
    if (s.isDirectory()) return { source: await OciLayout.open(path), reference: name };
    return { source: await DockerArchive.open(path), reference: name };
  }
  throw new CLIError(`${dir} does not exist; pass an OCI layout directory or a docker-archive tar file`, EXIT.notFound);
}

export default defineCommand({
  usage: '(DIR[:TAG] | FILE[:IMAGE]) REF [flags]',
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
  ],
  async run({ flags, args: [from, to] }) {
    const dst = ref(to, 'REF', 'push');
    const wanted = platforms(flags.platform);
    const { source, reference } = await openSource(from);
    const repo = makeClient(flags).repository(dst, { push: true });
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
    }
  },
});
