// The benches `npm run bench` runs, in order. Add a bench by exporting a `Bench` (bench/types.ts) and listing it here;
// `--only NAME[,NAME]` picks some. Older benches that return their own result shape are adapted below.
import type { Bench, Row } from './types.js';
import { registryBench } from './registry.js';
import { fastBench } from './fast.js';
import { benchCopy } from './copy.js';
import { buildBench } from './build.js';
import { cicacheBench } from './cicache.js';
import { benchProxy } from './proxy.js';
import { gcBench } from './gc.js';
import { authBench } from './auth.js';
import { s3Bench } from './s3.js';
import { uiBench } from './ui.js';
import { debianBench } from './debian.js';
import { syncBench } from './sync.js';

interface ToolTiming {
  tool: string;
  seconds: number;
  ok: boolean;
  note?: string;
}

function _timings(list: ToolTiming[]): Row[] {
  return list.map((r) => ({
    name: r.tool,
    unit: 's',
    berth: r.seconds,
    better: 'lower',
    note: r.ok ? r.note : `FAILED ${r.note ?? ''}`,
  }));
}

export const benches: Bench[] = [
  registryBench,
  fastBench,
  { name: 'copy', run: async (ctx) => _timings(await benchCopy({ mib: ctx.quick ? 256 : 1024, rounds: ctx.rounds })) },
  buildBench,
  cicacheBench,
  {
    name: 'proxy',
    run: async (ctx) =>
      (await benchProxy({ mib: ctx.quick ? 256 : 1024, rounds: ctx.rounds })).map((r) => ({
        name: r.name,
        unit: r.unit,
        berth: r.value,
        note: r.note,
      })),
  },
  gcBench,
  authBench,
  uiBench,
  debianBench,
  syncBench,
];

/** `npm run bench -- --s3`: berth vs distribution on a real S3 server (SeaweedFS); not part of the default run. */
export { s3Bench };
