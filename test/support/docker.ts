// Throwaway container engines on loopback for one test: the Docker engine (Debian docker.io 20.10, rootful,
// without iptables or bridge) and containerd (Debian 1.6) with ctr. Stopped by their own pid; temp dirs removed.
import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type RunOptions,
  type RunResult,
  exited,
  killPidFile,
  once,
  removeOnError,
  removeTree,
  run,
  shortTempDir,
  sleep,
  spawnDaemon,
  startDaemon,
  stopProcess,
  tool,
} from './peers.js';

// ---------------------------------------------------------------------------------------------------------------
// Docker engine (Debian docker.io 20.10), rootful, without iptables or bridge

export interface DockerdOptions {
  /** `host:port` registries reached over plain HTTP, e.g. `127.0.0.1:5000`. */
  insecureRegistries: string[];
  /** Mirrors of docker.io, e.g. `http://127.0.0.1:5000`. */
  registryMirrors?: string[];
  /**
   * Host names this engine alone resolves to ::1, with their own /etc/docker/certs.d: the engine runs in a mount
   * namespace of its own (unshare) where /etc/hosts and /etc/docker are files of this test. dockerd treats every
   * registry in 127.0.0.0/8 as insecure (TLS without verification, certs.d not read), so a name on ::1 is how a
   * test makes it verify a private CA as it does for a real host. Put `ca.crt` in `certsDir(HOST:PORT)`.
   */
  namesOnIpv6Loopback?: string[];
}

export interface Dockerd {
  /** Runs `/usr/bin/docker` against this engine, with its own client config dir (credentials stay here). */
  docker(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** `unix://…/docker.sock` */
  host: string;
  dir: string;
  /** With `namesOnIpv6Loopback`: the directory this engine sees as /etc/docker/certs.d/HOST:PORT (created). */
  certsDir(hostPort: string): Promise<string>;
  pid: number;
  stop(): Promise<void>;
}

/** Starts a private dockerd (its own data root, exec root, socket and managed containerd) and waits until it answers. */
export async function startDockerd(opts: DockerdOptions): Promise<Dockerd> {
  const dockerd = tool('/usr/sbin/dockerd');
  const client = tool('/usr/bin/docker');
  const dir = await shortTempDir('bd');
  const host = `unix://${dir}/docker.sock`;
  // An empty daemon.json keeps the machine's /etc/docker/daemon.json out of the test.
  await writeFile(join(dir, 'daemon.json'), '{}\n');
  await mkdir(join(dir, 'config'));
  const args = [
    '--config-file',
    join(dir, 'daemon.json'),
    '--data-root',
    join(dir, 'root'),
    '--exec-root',
    join(dir, 'exec'),
    '-H',
    host,
    '--pidfile',
    join(dir, 'pid'),
    '--iptables=false',
    '--ip6tables=false',
    '--bridge=none',
    '--storage-driver=vfs',
    ...opts.insecureRegistries.flatMap((r) => ['--insecure-registry', r]),
    ...(opts.registryMirrors ?? []).flatMap((m) => ['--registry-mirror', m]),
  ];
  const docker = (dargs: string[], ropts: RunOptions = {}) =>
    run(client, dargs, {
      ...ropts,
      env: { ...ropts.env, DOCKER_HOST: host, DOCKER_CONFIG: join(dir, 'config'), DOCKER_CONTEXT: undefined },
    });
  const etcDocker = join(dir, 'etc-docker');
  let spawnIt = () => spawnDaemon(dockerd, args, join(dir, 'dockerd.log'));
  if (opts.namesOnIpv6Loopback?.length) {
    // The same pid as dockerd (unshare without --fork, then exec), so stopping it by pid still works.
    const hosts = join(dir, 'hosts');
    await writeFile(hosts, `127.0.0.1 localhost\n::1 ${opts.namesOnIpv6Loopback.join(' ')}\n`);
    await mkdir(join(etcDocker, 'certs.d'), { recursive: true });
    // /etc/docker is the mount point (any dockerd run makes it, for its key.json); the test's files hide its content.
    const script =
      'mkdir -p /etc/docker && mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/docker && shift 2 && exec "$@"';
    const wrapped = ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', hosts, etcDocker];
    spawnIt = () => spawnDaemon(tool('unshare'), [...wrapped, dockerd, ...args], join(dir, 'dockerd.log'));
  }
  const certsDir = async (hostPort: string) => {
    if (!opts.namesOnIpv6Loopback?.length) throw new Error('certsDir needs namesOnIpv6Loopback');
    const d = join(etcDocker, 'certs.d', hostPort);
    await mkdir(d, { recursive: true });
    return d;
  };
  // dockerd stops its managed containerd on SIGTERM; after a SIGKILL that containerd would be orphaned.
  const killManagedContainerd = () => killPidFile(join(dir, 'exec', 'containerd', 'containerd.pid'));
  return removeOnError(dir, killManagedContainerd, () =>
    startDaemon(spawnIt, async ({ child }) => {
      await _waitFor(
        'dockerd',
        child,
        async () => (await docker(['version'], { timeoutMs: 5_000 })).code === 0,
        60_000,
      );
      const stop = once(async () => {
        await stopProcess(child, 15_000);
        killManagedContainerd();
        await removeTree(dir);
      });
      return { docker, host, dir, certsDir, pid: child.pid!, stop };
    }),
  );
}

/** Polls `check` until true; fails early when the daemon exits. */
async function _waitFor(
  name: string,
  child: ChildProcess,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited(child)) throw new Error(`${name} (pid ${child.pid}) exited during start-up`);
    if (await check().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`${name} (pid ${child.pid}) not ready after ${timeoutMs} ms`);
}

// ---------------------------------------------------------------------------------------------------------------
// containerd (Debian 1.6) with ctr

export interface Containerd {
  /** Runs `ctr --address SOCK …` (namespace `default`). */
  ctr(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** The gRPC socket path. */
  address: string;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts a private containerd (own root, state and sockets; the CRI plugin disabled — tests never need it). */
export async function startContainerd(): Promise<Containerd> {
  const containerd = tool('containerd');
  const ctrBin = tool('ctr');
  const dir = await shortTempDir('ct');
  const address = join(dir, 'c.sock');
  const config = join(dir, 'config.toml');
  await writeFile(config, _containerdConfig(dir, address));
  const ctr = (args: string[], opts: RunOptions = {}) => run(ctrBin, ['--address', address, ...args], opts);
  const spawnIt = () => spawnDaemon(containerd, ['--config', config], join(dir, 'containerd.log'));
  return removeOnError(
    dir,
    () => {},
    () =>
      startDaemon(spawnIt, async ({ child }) => {
        await _waitFor(
          'containerd',
          child,
          async () => (await ctr(['version'], { timeoutMs: 5_000 })).code === 0,
          30_000,
        );
        const stop = once(async () => {
          await stopProcess(child);
          await removeTree(dir);
        });
        return { ctr, address, dir, pid: child.pid!, stop };
      }),
  );
}

function _containerdConfig(dir: string, address: string): string {
  const q = JSON.stringify; // TOML basic strings accept JSON string syntax for plain paths
  return [
    'version = 2',
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    // CRI wants CNI and cgroups; nothing here uses it.
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = ${q(address)}`,
    '[ttrpc]',
    `  address = ${q(`${address}.ttrpc`)}`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
    '',
  ].join('\n');
}
