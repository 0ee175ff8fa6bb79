// A garbage collection that gets stuck on purpose, for crash tests (test/ops-gc-crash.test.ts): runs the real
// GarbageCollector over a filesystem or S3 driver, freezes its first storage call of the chosen phase (the mark's
// first listing of repositories, or the sweep's first delete), prints `stuck <phase>` and waits there until the test
// SIGKILLs it — a `berth gc` killed mid-run, with the lease and state files exactly as it left them.
// With `foreign`, its lease and state name another host, as a GC in another pod would: readers cannot check its
// process and must go by the heartbeat alone.
//   node --import tsx test/support/gc-victim.ts mark|sweep '{"fs":"/root"}' | '{"s3":{…S3DriverOptions}}' [foreign]
import { FsDriver } from '../../storage/fs.js';
import { S3Driver } from '../../storage/s3.js';
import { GarbageCollector } from '../../storage/gc.js';
import { paths } from '../../storage/paths.js';
import type { Driver } from '../../storage/driver.js';

const [phase, spec, foreign] = process.argv.slice(2);
const where = JSON.parse(spec) as { fs?: string; s3?: ConstructorParameters<typeof S3Driver>[0] };
const inner: Driver = where.fs ? new FsDriver({ root: where.fs }) : new S3Driver(where.s3!);
let marking = false;
const freeze = (): Promise<never> => {
  process.stdout.write(`stuck ${phase}\n`);
  return new Promise<never>(() => {});
};
const driver = new Proxy(inner, {
  get(target, prop, receiver) {
    const value = Reflect.get(target, prop, receiver);
    if (typeof value !== 'function') return value;
    return (...args: unknown[]) => {
      const path = String(args[0]);
      if (foreign && prop === 'put' && path.startsWith('gc/')) {
        const record = JSON.parse(String(args[1]));
        if (record.owner) record.owner = { host: 'another-host', pid: 1 };
        args[1] = JSON.stringify(record);
      }
      if (prop === 'put' && path === paths.gcState && String(args[1]).includes('"mark"')) marking = true;
      if (phase === 'mark' && marking && prop === 'list' && path.startsWith(paths.repositoriesRoot)) return freeze();
      if (phase === 'sweep' && prop === 'delete' && !path.startsWith('gc/')) return freeze();
      return value.apply(target, args);
    };
  },
});
await new GarbageCollector(driver).run({ graceMs: 0, now: () => Date.now() + 60_000 });
process.stdout.write('finished\n');
