// `berth copy SRC DST`: registry → registry, all platforms by default, referrers on request, mounts when both
// sides are the same registry. A re-copy of what is already there is a single HEAD.
import { copy, remoteSource, remoteTarget } from '../client/copy.js';
import { formatReference } from '../spec/reference.js';
import { defineCommand, flag } from './command.js';
import { makeClient, printJson, refId } from './_client.js';
import { jobs, platform, platforms, ref, TRANSFER } from './flags.js';
import { startProgress } from './progress.js';

export default defineCommand({
  usage: 'SRC DST [flags]',
  description: `Copies an image or index with all its platforms (or the ones you pick) between registries. Blobs already in
DST are skipped, blobs in another repository of the same registry are mounted, and the copy is verified by digest.`,
  flags: {
    platform: platform('copy only this platform (os/arch[/variant]); comma-separate for several'),
    referrers: flag.boolean({ help: 'also copy signatures, SBOMs and other referrers of every copied manifest' }),
    force: flag.boolean({ help: 'copy even if DST already has the same digest' }),
    jobs: jobs('blobs transferred in parallel'),
    ...TRANSFER,
  },
  args: ['SRC', 'DST'],
  examples: [
    'berth copy docker.io/library/alpine:3.20 localhost:5000/alpine:3.20',
    'berth copy --referrers registry.example.com/app:v1 localhost:5000/app:v1',
    'berth copy --platform linux/arm64 localhost:5000/app:v1 localhost:5000/app:v1-arm64',
  ],
  async run({ flags, args: [s, d] }) {
    const src = ref(s, 'SRC', 'copy');
    const dst = ref(d, 'DST', 'copy');
    const wanted = platforms(flags.platform);
    const client = makeClient(flags);
    const srcRepo = client.repository(src);
    const dstRepo = client.repository(dst, {
      push: true,
      mountFrom: src.registry === dst.registry ? [src.repository] : [],
    });
    const progress = startProgress('copy', flags);
    const started = Date.now();
    try {
      const r = await copy(remoteSource(srcRepo), refId(src), remoteTarget(dstRepo), dst.tag ?? '', {
        platforms: wanted,
        referrers: flags.referrers,
        force: flags.force,
        concurrency: flags.jobs,
        progress,
      });
      progress.done();
      const to = `${formatReference({ ...dst, digest: undefined, tag: dst.tag })}@${r.digest}`;
      if (flags.json)
        printJson({ source: formatReference(src), destination: to, ...r, seconds: (Date.now() - started) / 1000 });
      else console.log(`${r.skipped ? 'up to date' : 'copied'} ${to}`);
    } finally {
      progress.done();
    }
  },
});
