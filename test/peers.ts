// The real-peer harness every end-to-end test uses: find installed tools, start throwaway daemons (Docker engine,
// containerd, distribution) on loopback, run isolated clients (skopeo, crane, oras, regctl, podman) and build tiny
// runnable OCI layouts without docker. The rules it enforces come from shared/TESTING.md:
//  - a missing peer skips the test on a developer's machine but FAILS it under CI=true (CI can never pass by skipping);
//  - everything started is stopped by its own pid (SIGTERM, then SIGKILL), never by name, and its temp dir removed;
//  - only loopback addresses are used.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

export {
  makeBusyboxLayout,
  makeMultiArchLayout,
  DEFAULT_CMD,
  type BusyboxOptions,
  type LayoutImage,
  type LayoutIndex,
} from './oci-layouts.js';

/** Where `.ci/install-peers.sh` puts the Go-built tools (crane, oras, regctl, conformance.test). */
export const TOOLS_BIN = '/opt/berth-tools/bin';
const INSTALL_HINT = 'install it with `bash .ci/install-peers.sh`';

// ---------------------------------------------------------------------------------------------------------------
// Running commands

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The command line, for assertion messages. */
  command: string;
}

export interface RunOptions {
  /** Merged over process.env; `undefined` removes a variable. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Default 120 s. On expiry the process is killed by pid and the promise rejects. */
  timeoutMs?: number;
  input?: string | Buffer;
}

/** Runs a command to completion and collects its output. A non-zero exit is a result, not an error. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const command = [cmd, ...args].join(' ');
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: _env(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out after ${timeoutMs} ms: ${command}\n${Buffer.concat(err).toString()}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString() + (signal ? `\n(killed by ${signal})` : '');
      resolve({ code: code ?? -1, stdout, stderr, command });
    });
    child.stdin.on('error', () => {}); // the command may exit without reading its input
    child.stdin.end(opts.input);
  });
}

/** Returns stdout of a successful run; throws with the command and its stderr otherwise. */
export function ok(result: RunResult): string {
  if (result.code !== 0) {
    throw new Error(`exit ${result.code}: ${result.command}\n${result.stderr}${result.stdout}`);
  }
  return result.stdout;
}

function _env(overrides: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  // Loopback must never go through a proxy that a developer's shell may set.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NO_PROXY: '127.0.0.1,localhost,::1',
    no_proxy: '127.0.0.1,localhost,::1',
  };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

// ---------------------------------------------------------------------------------------------------------------
// Finding peers

// Peers that are more than one executable, or that must be a specific file (another `docker` client may come
// earlier on PATH; the test images need Debian's *static* busybox).
const PEER_FILES: Record<string, string[]> = {
  docker: ['/usr/bin/docker', '/usr/sbin/dockerd', 'containerd', 'runc'],
  containerd: ['containerd', 'ctr'],
  distribution: ['/usr/bin/docker-registry'],
  busybox: ['/bin/busybox'],
  podman: ['podman'],
};

// Daemons the harness runs rootful (the CI and dev machines are root; rootless engines are not set up here).
const ROOT_PEERS = new Set(['docker', 'containerd']);

/** Absolute path of an executable found in PATH or TOOLS_BIN (or the absolute path itself), else undefined. */
export function findExecutable(name: string): string | undefined {
  if (name.startsWith('/')) return _isExecutable(name) ? name : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), TOOLS_BIN];
  return dirs.map((dir) => join(dir, name)).find(_isExecutable);
}

function _isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Executables of `peer` that are not installed (empty when the peer is usable). */
export function missingPeerFiles(peer: string): string[] {
  return (PEER_FILES[peer] ?? [peer]).filter((f) => !findExecutable(f));
}

/**
 * Checks that every named peer is installed. Returns true when the test may go on. When one is missing the test
 * is skipped (and false returned) — except under CI=true, where this throws so the test fails.
 * Peer names: docker, containerd, distribution, busybox, podman, or any executable (skopeo, crane, oras, regctl…).
 */
export function requirePeer(t: TestContext, ...peers: string[]): boolean {
  const missing = peers.flatMap((p) => missingPeerFiles(p).map((f) => (f === p ? p : `${p} (${f})`)));
  const asRoot = process.getuid?.() === 0;
  missing.push(...peers.filter((p) => ROOT_PEERS.has(p) && !asRoot).map((p) => `${p} (must run as root)`));
  if (missing.length === 0) return true;
  const message = `missing peer: ${missing.join(', ')}; ${INSTALL_HINT}`;
  if (process.env.CI === 'true') throw new Error(message);
  t.skip(message);
  return false;
}

/** Like findExecutable, but throws naming the installer; for helpers that need a tool. */
function _tool(name: string): string {
  const path = findExecutable(name);
  if (!path) throw new Error(`${name} is not installed; ${INSTALL_HINT}`);
  return path;
}

// ---------------------------------------------------------------------------------------------------------------
// Network

/** A TCP port free on 127.0.0.1 right now (the OS picks it; a race with other processes is possible but rare). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface WaitOptions {
  timeoutMs?: number;
  /** Which statuses count as ready; default: any HTTP answer (a 401 from /v2/ still means "up"). */
  ready?: (status: number) => boolean;
  /** Stop waiting early, with an error, if this process exits. */
  process?: ChildProcess;
}

/** Polls `url` until it answers. Throws after the timeout (default 30 s) or when `process` has exited. */
export async function waitForHttp(url: string, opts: WaitOptions = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const ready = opts.ready ?? (() => true);
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (opts.process && _exited(opts.process))
      throw new Error(`process ${opts.process.pid} exited before ${url} answered`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (ready(res.status)) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await _sleep(100);
  }
  throw new Error(`${url} not ready: ${last}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Daemons: started detached from our stdio (output goes to a log file so a full pipe never blocks them), stopped by pid

interface Daemon {
  child: ChildProcess;
  /** Log file; its tail goes into start-up error messages. */
  log: string;
}

// Safety net: if the test process exits without running its t.after hooks, do not leave daemons behind.
const _liveDaemons = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of _liveDaemons) if (!_exited(child)) process.kill(child.pid!, 'SIGKILL');
});

function _spawnDaemon(cmd: string, args: string[], log: string, env?: Record<string, string | undefined>): Daemon {
  const fd = openSync(log, 'a');
  try {
    const child = spawn(cmd, args, { env: _env(env), stdio: ['ignore', fd, fd] });
    if (child.pid === undefined) throw new Error(`cannot start ${cmd}`);
    _liveDaemons.add(child);
    child.on('exit', () => _liveDaemons.delete(child));
    child.on('error', () => {}); // reported through the readiness check
    return { child, log };
  } finally {
    closeSync(fd);
  }
}

function _exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (_exited(child)) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
  const inTime = await Promise.race([gone.then(() => true), deadline]);
  clearTimeout(timer); // a pending timer would keep the test process alive
  if (!inTime) {
    child.kill('SIGKILL');
    await gone;
  }
}

/** Kills a process named by a pid file we own (e.g. the containerd dockerd started), if it is still alive. */
function _killPidFile(pidFile: string): void {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** The last lines of a daemon's log, for error messages. */
function _logTail(log: string, lines = 30): string {
  try {
    return readFileSync(log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Removes a temp dir we made. Container runtimes may leave mounts inside it (shm, rootfs) — unmount those first,
 * deepest first, or rm fails with EBUSY.
 */
async function _removeTree(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m], { timeoutMs: 10_000 });
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * A short temp dir directly under /tmp (not os.tmpdir(), which TMPDIR may make long): unix socket paths are
 * limited to 108 bytes, and dockerd/containerd nest sockets several levels deep under their exec/state dirs.
 */
function _shortTempDir(prefix: string): Promise<string> {
  return mkdtemp(`/tmp/${prefix}-`);
}

/** Spawns a daemon and waits for `ready`; on failure stops it and throws with the tail of its log. */
async function _startDaemon<T>(spawnIt: () => Daemon, ready: (d: Daemon) => Promise<T>): Promise<T> {
  const d = spawnIt();
  try {
    return await ready(d);
  } catch (e) {
    await stopProcess(d.child, 2_000);
    throw new Error(`${(e as Error).message}\n--- ${d.log} ---\n${_logTail(d.log)}`);
  }
}

/** Runs `start`; if it throws, runs `cleanUp` and removes `dir` (which the caller made for it), then rethrows. */
async function _removeOnError<T>(dir: string, cleanUp: () => void, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (e) {
    cleanUp();
    await _removeTree(dir);
    throw e;
  }
}

function _once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

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
  const bin = _tool('/usr/bin/docker-registry');
  const dir = await _shortTempDir('dist');
  const root = join(dir, 'storage');
  await mkdir(root);
  return _removeOnError(
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
  return _startDaemon(
    // aws-sdk-go 1.x in distribution's s3 driver panics at start when AWS_CA_BUNDLE is set ("unsupported transport");
    // a loopback bucket over plain HTTP needs no CA anyway.
    () =>
      _spawnDaemon(
        bin,
        ['serve', config],
        join(dir, 'registry.log'),
        opts.storage ? { AWS_CA_BUNDLE: undefined } : undefined,
      ),
    async ({ child }) => {
      await waitForHttp(`${url}/v2/`, { process: child, timeoutMs: 20_000 });
      const stop = _once(async () => {
        await stopProcess(child);
        await _removeTree(dir);
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

// ---------------------------------------------------------------------------------------------------------------
// Docker engine (Debian docker.io 20.10), rootful, without iptables or bridge

export interface DockerdOptions {
  /** `host:port` registries reached over plain HTTP, e.g. `127.0.0.1:5000`. */
  insecureRegistries: string[];
  /** Mirrors of docker.io, e.g. `http://127.0.0.1:5000`. */
  registryMirrors?: string[];
}

export interface Dockerd {
  /** Runs `/usr/bin/docker` against this engine, with its own client config dir (credentials stay here). */
  docker(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** `unix://…/docker.sock` */
  host: string;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts a private dockerd (its own data root, exec root, socket and managed containerd) and waits until it answers. */
export async function startDockerd(opts: DockerdOptions): Promise<Dockerd> {
  const dockerd = _tool('/usr/sbin/dockerd');
  const client = _tool('/usr/bin/docker');
  const dir = await _shortTempDir('bd');
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
  const spawnIt = () => _spawnDaemon(dockerd, args, join(dir, 'dockerd.log'));
  // dockerd stops its managed containerd on SIGTERM; after a SIGKILL that containerd would be orphaned.
  const killManagedContainerd = () => _killPidFile(join(dir, 'exec', 'containerd', 'containerd.pid'));
  return _removeOnError(dir, killManagedContainerd, () =>
    _startDaemon(spawnIt, async ({ child }) => {
      await _waitFor(
        'dockerd',
        child,
        async () => (await docker(['version'], { timeoutMs: 5_000 })).code === 0,
        60_000,
      );
      const stop = _once(async () => {
        await stopProcess(child, 15_000);
        killManagedContainerd();
        await _removeTree(dir);
      });
      return { docker, host, dir, pid: child.pid!, stop };
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
    if (_exited(child)) throw new Error(`${name} (pid ${child.pid}) exited during start-up`);
    if (await check().catch(() => false)) return;
    await _sleep(200);
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
  const containerd = _tool('containerd');
  const ctrBin = _tool('ctr');
  const dir = await _shortTempDir('ct');
  const address = join(dir, 'c.sock');
  const config = join(dir, 'config.toml');
  await writeFile(config, _containerdConfig(dir, address));
  const ctr = (args: string[], opts: RunOptions = {}) => run(ctrBin, ['--address', address, ...args], opts);
  const spawnIt = () => _spawnDaemon(containerd, ['--config', config], join(dir, 'containerd.log'));
  return _removeOnError(
    dir,
    () => {},
    () =>
      _startDaemon(spawnIt, async ({ child }) => {
        await _waitFor(
          'containerd',
          child,
          async () => (await ctr(['version'], { timeoutMs: 5_000 })).code === 0,
          30_000,
        );
        const stop = _once(async () => {
          await stopProcess(child);
          await _removeTree(dir);
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

// ---------------------------------------------------------------------------------------------------------------
// Registry clients with a private home: credentials, policies and storage never leak between tests

export interface Clients {
  /** The private HOME; config files of every client live under it. */
  home: string;
  skopeo(args: string[], opts?: RunOptions): Promise<RunResult>;
  crane(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Remember `--plain-http` for loopback registries. */
  oras(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Call `regctl(['registry', 'set', '--tls', 'disabled', host])` first for plain-HTTP registries. */
  regctl(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** podman with `--root/--runroot/--tmpdir` in the home and `--storage-driver vfs`. Use docker to run images. */
  podman(args: string[], opts?: RunOptions): Promise<RunResult>;
}

/** Makes a fresh client home for one test; it is removed when the test ends. */
export async function makeClients(t: TestContext): Promise<Clients> {
  const home = await mkdtemp('/tmp/peer-home-');
  t.after(() => _removeTree(home));
  const env = await _clientEnv(home);
  const bound =
    (name: string, pre: string[] = []) =>
    (args: string[], opts: RunOptions = {}) =>
      run(_tool(name), [...pre, ...args], { ...opts, env: { ...env, ...opts.env } });
  const storage = join(home, 'podman');
  return {
    home,
    skopeo: bound('skopeo'),
    crane: bound('crane'),
    oras: bound('oras'),
    regctl: bound('regctl'),
    podman: bound('podman', [
      '--root',
      join(storage, 'root'),
      '--runroot',
      join(storage, 'run'),
      '--tmpdir',
      join(storage, 'tmp'),
      '--storage-driver',
      'vfs',
      '--cgroup-manager',
      'cgroupfs',
      '--events-backend',
      'file',
    ]),
  };
}

/** Writes the containers/* policy and registries files and returns the env that points every client at `home`. */
async function _clientEnv(home: string): Promise<Record<string, string>> {
  const containers = join(home, '.config', 'containers');
  await mkdir(containers, { recursive: true });
  await mkdir(join(home, 'run'), { recursive: true });
  // c/image (skopeo, podman) prefers $HOME/.config/containers/policy.json over /etc.
  await writeFile(join(containers, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  // No search registries: a short name must never reach out to the internet.
  await writeFile(join(containers, 'registries.conf'), 'unqualified-search-registries = []\n');
  // podman 4.3 refuses a storage.conf without runroot ("runroot must be set") even when --runroot is given.
  const storage = join(home, 'podman');
  const storageConf = `[storage]\ndriver = "vfs"\ngraphroot = ${JSON.stringify(join(storage, 'root'))}\nrunroot = ${JSON.stringify(join(storage, 'run'))}\n`;
  await writeFile(join(containers, 'storage.conf'), storageConf);
  // As root, podman raises a container's nofile/nproc to values above this machine's hard limits and runc then
  // fails ("error setting rlimit type 7"); defaults within the limits make `podman run` work.
  const containersConf = [
    '[containers]',
    'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    '',
  ].join('\n');
  await writeFile(join(containers, 'containers.conf'), containersConf);
  // podman fails with "stat …/auth.json" when REGISTRY_AUTH_FILE names a file that does not exist yet.
  await writeFile(join(home, 'auth.json'), JSON.stringify({ auths: {} }));
  return {
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_RUNTIME_DIR: join(home, 'run'),
    DOCKER_CONFIG: join(home, '.docker'),
    REGISTRY_AUTH_FILE: join(home, 'auth.json'),
    CONTAINERS_REGISTRIES_CONF: join(containers, 'registries.conf'),
    CONTAINERS_STORAGE_CONF: join(containers, 'storage.conf'),
    CONTAINERS_CONF: join(containers, 'containers.conf'),
    REGCTL_CONFIG: join(home, '.regctl', 'config.json'),
  };
}

// ---------------------------------------------------------------------------------------------------------------

function _sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reads a JSON file (handy for layouts and daemon state in assertions). */
export async function readJson<T = unknown>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}
