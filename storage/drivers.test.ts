import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDriverSuite } from './driver-suite.js';
import { MemoryDriver } from './memory.js';
import { FsDriver } from './fs.js';

runDriverSuite('memory', async () => ({ driver: new MemoryDriver() }));
runDriverSuite('filesystem', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-fs-'));
  return { driver: new FsDriver({ root }), cleanup: () => rm(root, { recursive: true, force: true }) };
});
