// `berth push (DIR[:TAG] | FILE) REF`: an OCI layout directory or a docker-archive tar → a registry.
import { stat } from 'node:fs/promises';
import { copy, remoteTarget, type ImageSource } from '../client/copy.js';
import { DockerArchive } from '../client/docker-archive.js';
import { OciLayout, parseLayoutArg } from '../client/layout.js';
import { formatReference } from '../spec/reference.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, platforms, positionals, printJson, ref } from './_client.js';
import { terminalProgress } from './progress.js';

const HELP = `Usage: berth push (DIR[:TAG] | FILE[:IMAGE]) REF [flags]

Uploads an image from an OCI layout directory (written by berth pull, berth build, skopeo, umoci…) or from a
docker-archive tar (docker save, berth pull --docker-archive) to a registry. Blobs the registry already has are
skipped. A layout with several images needs :TAG; an archive with several images needs :IMAGE (a RepoTag).

Flags:
  --platform P   push only this platform of an index (os/arch[/variant]); repeatable
  --referrers    also push the referrers a layout lists (signatures, SBOMs written by berth pull --referrers, oras…)
  --jobs N       blobs uploaded in parallel (default 4)
${COMMON_HELP}

Examples:
  berth push ./app-layout localhost:5000/app:v1
  berth push ./layout:v2 registry.example.com/team/app:v2
  berth push --referrers ./signed-layout:v1 localhost:5000/app:v1
  docker save busybox:latest -o bb.tar && berth push bb.tar localhost:5000/busybox:latest`;

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
  throw new CLIError(`${dir} does not exist; pass an OCI layout directory or a docker-archive tar file`);
}

const command: Command = {
  name: 'push',
  summary: 'upload an OCI layout directory or a docker-archive tar to a registry',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('push', argv, {
      ...COMMON_FLAGS,
      platform: { type: 'string', multiple: true },
      referrers: { type: 'boolean' },
      jobs: { type: 'string' },
    });
    const [from, to] = positionals(pos, 2, 'berth push (DIR|FILE) REF');
    const dst = ref(to, 'REF', 'push');
    const { source, reference } = await openSource(from);
    const repo = makeClient(values).repository(dst, { push: true });
    const progress = values.json ? undefined : terminalProgress();
    try {
      const r = await copy(source, reference, remoteTarget(repo), dst.tag ?? '', {
        platforms: platforms(values.platform),
        referrers: !!values.referrers,
        concurrency: values.jobs ? Math.max(1, Number(values.jobs) || 4) : 4,
        progress,
      });
      progress?.stop();
      const name = `${formatReference({ ...dst, digest: undefined })}@${r.digest}`;
      if (values.json) printJson({ source: source.label, destination: name, ...r });
      else console.log(`pushed ${name}`);
    } finally {
      progress?.stop();
    }
  },
};
export default command;
