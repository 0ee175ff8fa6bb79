// distribution 2.8.2 (Debian docker-registry) started on loopback for one test: the reference registry, and an
// upstream for the pull-through cache. Stopped by its own pid; its temp dir removed.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  freePort,
  once,
  removeOnError,
  removeTree,
  shortTempDir,
  spawnDaemon,
  startDaemon,
  stopProcess,
  tool,
  waitForHttp,
} from './peers.js';

// ---------------------------------------------------------------------------------------------------------------
// distribution 2.8.2 (Debian docker-registry): the reference registry, and an upstream for the pull-through cache

export interface DistributionOptions {
  /** htpasswd file (bcrypt) to require Basic auth. */
  htpasswd?: string;
  /**
   * Make it a pull-through cache of this upstream. Quirk: distribution 2.8.2 authenticates to an upstream only with
   * the token flow; behind a Basic-auth upstream every pull through the cache is "manifest unknown".
   */
  proxy?: { remoteurl: string; username?: string; password?: string };
  /** Storage driver block replacing the filesystem one, e.g. `{ s3: { … }, redirect: { disable: true } }`. */
  storage?: Record<string, unknown>;
  /** Its log level (default info, which logs a line per request; the fast bench uses warn, as berth's). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

export interface Distribution {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`, for image references. */
  host: string;
  port: number;
  /** Its filesystem storage root. */
  root: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts distribution on a free loopback port with filesystem storage in a temp dir and deletes enabled. */
export async function startDistribution(opts: DistributionOptions = {}): Promise<Distribution> {
  const bin = tool('/usr/bin/docker-registry');
  const dir = await shortTempDir('dist');
  const root = join(dir, 'storage');
  await mkdir(root);
  return removeOnError(
    dir,
    () => {},
    async () => {
      // The OS may hand the probed port to someone else before distribution binds it: try a few ports.
      for (let attempt = 1; ; attempt++) {
        try {
          return await _startDistributionOn(await freePort(), dir, root, bin, opts);
        } catch (e) {
          if (attempt >= 3) throw e;
        }
      }
    },
  );
}

async function _startDistributionOn(
  port: number,
  dir: string,
  root: string,
  bin: string,
  opts: DistributionOptions,
): Promise<Distribution> {
  const config = join(dir, 'config.yml');
  await writeFile(config, _distributionConfig(root, port, opts));
  const url = `http://127.0.0.1:${port}`;
  return startDaemon(
    // aws-sdk-go 1.x in distribution's s3 driver panics at start when AWS_CA_BUNDLE is set ("unsupported transport");
    // a loopback bucket over plain HTTP needs no CA anyway.
    () =>
      spawnDaemon(
        bin,
        ['serve', config],
        join(dir, 'registry.log'),
        opts.storage ? { AWS_CA_BUNDLE: undefined } : undefined,
      ),
    async ({ child }) => {
      await waitForHttp(`${url}/v2/`, { process: child, timeoutMs: 20_000 });
      const stop = once(async () => {
        await stopProcess(child);
        await removeTree(dir);
      });
      return { url, host: `127.0.0.1:${port}`, port, root, pid: child.pid!, stop };
    },
  );
}

function _distributionConfig(root: string, port: number, opts: DistributionOptions): string {
  // JSON is YAML: no YAML writer needed, and no quoting surprises in paths.
  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: opts.logLevel ?? 'info', accesslog: { disabled: true } },
    storage: {
      ...(opts.storage ?? { filesystem: { rootdirectory: root } }),
      delete: { enabled: true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: { addr: `127.0.0.1:${port}`, headers: { 'X-Content-Type-Options': ['nosniff'] } },
  };
  if (opts.htpasswd) config.auth = { htpasswd: { realm: 'berth-test', path: opts.htpasswd } };
  if (opts.proxy) config.proxy = opts.proxy;
  return JSON.stringify(config, null, 2);
}
