// `berth copy SRC DST`: registry → registry, all platforms by default, referrers on request, mounts when both
// sides are the same registry. A re-copy of what is already there is a single HEAD.
import { openImage, writeImage } from '../client/transports.js';
import { formatReference } from '../spec/reference.js';
import { defineCommand, flag } from './command.js';
import { imageRef, makeClient, printJson, TRANSPORT_HELP } from './_client.js';
import { jobs, platform, platforms, TRANSFER } from './flags.js';
import { startProgress } from './progress.js';

export default defineCommand({
  usage: 'SRC DST [flags]',
  description: `Copies an image or index with all its platforms (or the ones you pick) between registries, OCI layouts and
archives. Blobs already in DST are skipped, blobs in another repository of the same registry are mounted, and
the copy is verified by digest. A docker-archive DST holds one platform (--platform, when SRC has several).`,
  flags: {
    platform: platform('copy only this platform (os/arch[/variant]); comma-separate for several'),
    referrers: flag.boolean({ help: 'also copy signatures, SBOMs and other referrers of every copied manifest' }),
    force: flag.boolean({ help: 'copy even if DST already has the same digest' }),
    jobs: jobs('blobs transferred in parallel'),
    ...TRANSFER,
  },
  args: ['SRC', 'DST'],
  notes: TRANSPORT_HELP,
  examples: [
    'berth copy docker.io/library/alpine:3.20 localhost:5000/alpine:3.20',
    'berth copy --referrers registry.example.com/app:v1 localhost:5000/app:v1',
    'berth copy --platform linux/arm64 localhost:5000/app:v1 localhost:5000/app:v1-arm64',
    'berth copy oci:./layout:1.0 docker-archive:app.tar:repo/app:1.0',
  ],
  async run({ flags, args: [s, d] }) {
    const src = imageRef(s, 'SRC', 'copy');
    const dst = imageRef(d, 'DST', 'copy');
    const wanted = platforms(flags.platform);
    const client = makeClient(flags);
    const opened = await openImage(src, client);
    const progress = startProgress('copy', flags);
    const started = Date.now();
    try {
      const r = await writeImage(opened.source, opened.reference, dst, client, {
        platforms: wanted,
        referrers: flags.referrers,
        force: flags.force,
        concurrency: flags.jobs,
        progress,
      });
      progress.done();
      const to = `${dst.ref ? formatReference({ ...dst.ref, digest: undefined }) : dst.input}@${r.digest}`;
      const from = src.ref ? formatReference(src.ref) : src.input;
      const result = r.copy ?? { digest: r.digest, mediaType: r.mediaType };
      if (flags.json) printJson({ source: from, destination: to, ...result, seconds: (Date.now() - started) / 1000 });
      else console.log(`${r.copy?.skipped ? 'up to date' : 'copied'} ${to}`);
    } finally {
      progress.done();
      await opened.close();
    }
  },
});
