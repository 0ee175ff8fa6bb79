// `berth copy SRC DST`: registry → registry, all platforms by default, referrers on request, mounts when both
// sides are the same registry. A re-copy of what is already there is a single HEAD.
import { copy, remoteSource, remoteTarget } from '../client/copy.js';
import { formatReference } from '../spec/reference.js';
import { parseFlags, type Command } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, makeClient, platforms, positionals, printJson, ref, refId } from './_client.js';
import { terminalProgress } from './progress.js';

const HELP = `Usage: berth copy SRC DST [flags]

Copies an image or index with all its platforms (or the ones you pick) between registries. Blobs already in
DST are skipped, blobs in another repository of the same registry are mounted, and the copy is verified by digest.

Flags:
  --platform P     copy only this platform (os/arch[/variant]); repeat or comma-separate for several
  --referrers      also copy signatures, SBOMs and other referrers of every copied manifest
  --force          copy even if DST already has the same digest
  --jobs N         blobs transferred in parallel (default 4)
${COMMON_HELP}

Examples:
  berth copy docker.io/library/alpine:3.20 localhost:5000/alpine:3.20
  berth copy --referrers registry.example.com/app:v1 localhost:5000/app:v1
  berth copy --platform linux/arm64 localhost:5000/app:v1 localhost:5000/app:v1-arm64`;

const command: Command = {
  name: 'copy',
  summary: 'copy an image (all platforms, optionally referrers) between registries',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('copy', argv, {
      ...COMMON_FLAGS,
      platform: { type: 'string', multiple: true },
      referrers: { type: 'boolean' },
      force: { type: 'boolean' },
      jobs: { type: 'string' },
    });
    const [s, d] = positionals(pos, 2, 'berth copy SRC DST');
    const src = ref(s, 'SRC', 'copy');
    const dst = ref(d, 'DST', 'copy');
    const client = makeClient(values);
    const srcRepo = client.repository(src);
    const dstRepo = client.repository(dst, {
      push: true,
      mountFrom: src.registry === dst.registry ? [src.repository] : [],
    });
    const progress = values.json ? undefined : terminalProgress();
    const started = Date.now();
    try {
      const r = await copy(remoteSource(srcRepo), refId(src), remoteTarget(dstRepo), dst.tag ?? '', {
        platforms: platforms(values.platform),
        referrers: !!values.referrers,
        force: !!values.force,
        concurrency: values.jobs ? Math.max(1, Number(values.jobs) || 4) : 4,
        progress,
      });
      progress?.stop();
      const to = `${formatReference({ ...dst, digest: undefined, tag: dst.tag })}@${r.digest}`;
      if (values.json)
        printJson({ source: formatReference(src), destination: to, ...r, seconds: (Date.now() - started) / 1000 });
      else console.log(`${r.skipped ? 'up to date' : 'copied'} ${to}`);
    } finally {
      progress?.stop();
    }
  },
};
export default command;
