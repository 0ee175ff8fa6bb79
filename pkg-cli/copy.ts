// `berth copy SRC DST`: registry → registry, all platforms by default, referrers on request, mounts when both
// sides are the same registry. A re-copy of what is already there is a single HEAD.
import { openImage, writeImage } from '../client/transports.js';
import { formatReference } from '../spec/reference.js';
import { parseFlags, type Command } from './command.js';
import {
  COMMON_FLAGS,
  COMMON_HELP,
  imageRef,
  makeClient,
  platforms,
  positionals,
  printJson,
  TRANSPORT_HELP,
} from './_client.js';
import { terminalProgress } from './progress.js';

const HELP = `Usage: berth copy SRC DST [flags]

Copies an image or index with all its platforms (or the ones you pick) between registries, OCI layouts and
archives. Blobs already in DST are skipped, blobs in another repository of the same registry are mounted, and
the copy is verified by digest. A docker-archive DST holds one platform (--platform, when SRC has several).

Flags:
  --platform P     copy only this platform (os/arch[/variant]); repeat or comma-separate for several
  --referrers      also copy signatures, SBOMs and other referrers of every copied manifest
  --force          copy even if DST already has the same digest
  --jobs N         blobs transferred in parallel (default 4)
${COMMON_HELP}

${TRANSPORT_HELP}

Examples:
  berth copy docker.io/library/alpine:3.20 localhost:5000/alpine:3.20
  berth copy oci:./layout:1.0 docker-archive:app.tar:repo/app:1.0
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
    const src = imageRef(s, 'SRC', 'copy');
    const dst = imageRef(d, 'DST', 'copy');
    const client = makeClient(values);
    const opened = await openImage(src, client);
    const progress = values.json ? undefined : terminalProgress();
    const started = Date.now();
    try {
      const r = await writeImage(opened.source, opened.reference, dst, client, {
        platforms: platforms(values.platform),
        referrers: !!values.referrers,
        force: !!values.force,
        concurrency: values.jobs ? Math.max(1, Number(values.jobs) || 4) : 4,
        progress,
      });
      progress?.stop();
      const to = `${dst.ref ? formatReference({ ...dst.ref, digest: undefined }) : dst.input}@${r.digest}`;
      const from = src.ref ? formatReference(src.ref) : src.input;
      const result = r.copy ?? { digest: r.digest, mediaType: r.mediaType };
      if (values.json) printJson({ source: from, destination: to, ...result, seconds: (Date.now() - started) / 1000 });
      else console.log(`${r.copy?.skipped ? 'up to date' : 'copied'} ${to}`);
    } finally {
      progress?.stop();
      await opened.close();
    }
  },
};
export default command;
