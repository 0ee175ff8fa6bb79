// `berth build`'s head start: main.ts runs this with the raw arguments before it loads build.ts, so preset go's
// `go build` is under way ~50 ms sooner (builder/prestart.ts, builder/go-build.ts). Only the flags that decide
// the go runs are read here — -f, --context, --cache, --no-cache, --platform, --check-reproducible, as build.ts
// declares them — leniently: anything this cannot read means no head start, and build.ts then parses the
// arguments properly and reports what is wrong.
import { parseArgs } from 'node:util';
import { prestartBuild } from '../builder/prestart.js';
import { parsePlatform } from '../spec/platform.js';

export default async function buildHeadStart(args: string[]): Promise<void> {
  try {
    const { values } = parseArgs({
      args,
      strict: false,
      allowPositionals: true,
      options: {
        file: { type: 'string', short: 'f' },
        context: { type: 'string' },
        cache: { type: 'string' },
        'no-cache': { type: 'boolean' },
        platform: { type: 'string', multiple: true },
        'check-reproducible': { type: 'boolean' },
      },
    });
    const text = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
    const listed = (values.platform ?? []) as unknown[];
    if (!listed.every((p) => typeof p === 'string')) return;
    await prestartBuild({
      file: text(values.file) ?? 'berth.yaml',
      context: text(values.context),
      cacheDir: values['no-cache'] === true ? false : text(values.cache),
      platforms: (listed as string[])
        .flatMap((p) => p.split(','))
        .filter(Boolean)
        .map((p) => parsePlatform(p)),
      checkReproducible: values['check-reproducible'] === true,
    });
  } catch {
    // Unreadable arguments: no head start.
  }
}
