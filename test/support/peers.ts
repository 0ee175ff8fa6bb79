// The core of the real-peer harness every end-to-end test uses: run commands, find installed tools, pick free
// loopback ports, start and stop daemons. The peers themselves live beside it: docker.ts (Docker engine, containerd),
// distribution.ts (the reference registry), clients.ts (skopeo, crane, oras, regctl, podman); oci-layouts.ts builds
// tiny runnable OCI layouts without docker. The rules it enforces come from shared/TESTING.md:
//  - a missing peer skips the test on a developer's machine but FAILS it under CI=true (CI can never pass by skipping);
//  - everything started is stopped by its own pid (SIGTERM, then SIGKILL), never by name, and its temp dir removed;
//  - only loopback addresses are used.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

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
    // Bare names resolve through PATH *and* TOOLS_BIN: CI does not put the Go-built tools on PATH.
    const file = findExecutable(cmd) ?? cmd;
    const child = spawn(file, args, { cwd: opts.cwd, env: _env(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
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
export function tool(name: string): string {
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
    if (opts.process && exited(opts.process))
      throw new Error(`process ${opts.process.pid} exited before ${url} answered`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (ready(res.status)) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${url} not ready: ${last}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Daemons: started detached from our stdio (output goes to a log file so a full pipe never blocks them), stopped by pid

export interface Daemon {
  child: ChildProcess;
  /** Log file; its tail goes into start-up error messages. */
  log: string;
}

// Safety net: if the test process exits without running its t.after hooks, do not leave daemons behind.
const _liveDaemons = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of _liveDaemons) if (!exited(child)) process.kill(child.pid!, 'SIGKILL');
});

export function spawnDaemon(
  cmd: string,
  args: string[],
  log: string,
  env?: Record<string, string | undefined>,
): Daemon {
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

export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (exited(child)) return;
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
export function killPidFile(pidFile: string): void {
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
export async function removeTree(dir: string): Promise<void> {
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
export function shortTempDir(prefix: string): Promise<string> {
  return mkdtemp(`/tmp/${prefix}-`);
}

/** Spawns a daemon and waits for `ready`; on failure stops it and throws with the tail of its log. */
export async function startDaemon<T>(spawnIt: () => Daemon, ready: (d: Daemon) => Promise<T>): Promise<T> {
  const d = spawnIt();
  try {
    return await ready(d);
  } catch (e) {
    await stopProcess(d.child, 2_000);
    throw new Error(`${(e as Error).message}\n--- ${d.log} ---\n${_logTail(d.log)}`);
  }
}

/** Runs `start`; if it throws, runs `cleanUp` and removes `dir` (which the caller made for it), then rethrows. */
export async function removeOnError<T>(dir: string, cleanUp: () => void, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (e) {
    cleanUp();
    await removeTree(dir);
    throw e;
  }
}

export function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

// ---------------------------------------------------------------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reads a JSON file (handy for layouts and daemon state in assertions). */
export async function readJson<T = unknown>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}
