// Starts `berth serve` (the built CLI, dist/) for end-to-end tests, on a free loopback port with its own storage.
// Stopped by its own pid; `kill()` simulates a crash (SIGKILL) and `restart()` brings it back on the same root.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { get } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { freePort, waitForHttp } from './peers.js';

const BERTH = fileURLToPath(new URL('../../bin/berth.js', import.meta.url));

export interface BerthOptions {
  /** Storage root; a temp dir (removed at the end) when omitted. */
  root?: string;
  /** YAML text of a config file. */
  config?: string;
  env?: Record<string, string>;
  port?: number;
  /** Listen on the IPv6 loopback `[::1]` instead of 127.0.0.1 (url and host name it). */
  ipv6?: boolean;
  /** The config serves HTTPS (http.tls): readiness is checked over TLS trusting this CA file. */
  tlsCa?: string;
  /** With `tlsCa` under mTLS (http.tls.clientCAs): the client certificate and key files the readiness check shows. */
  readyCert?: { cert: string; key: string };
}

export interface Berth {
  url: string;
  /** `127.0.0.1:PORT` (or `[::1]:PORT`), for image references. */
  host: string;
  port: number;
  root: string;
  /** The `berth serve` process (with http.workers > 1: the cluster's primary). */
  readonly pid: number;
  /** Everything the server printed (JSON log lines). */
  logs(): string;
  stop(): Promise<void>;
  /** SIGKILL: no cleanup, like a crash. */
  kill(): Promise<void>;
  /** Starts again on the same port and root. */
  restart(): Promise<void>;
}

export async function startBerth(t: TestContext | undefined, opts: BerthOptions = {}): Promise<Berth> {
  const root = opts.root ?? (await mkdtemp('/tmp/berth-e2e-'));
  const port = opts.port ?? (await freePort());
  const ip = opts.ipv6 ? '::1' : '127.0.0.1';
  const hostPort = opts.ipv6 ? `[::1]:${port}` : `127.0.0.1:${port}`;
  const args = [BERTH, 'serve', '--addr', hostPort];
  // --root selects filesystem storage; a config with S3 storage keeps `root` only for the config file.
  if (!/^\s+s3:/m.test(opts.config ?? '')) args.push('--root', root);
  if (opts.config) {
    const file = join(`${root}-config.yaml`);
    await writeFile(file, opts.config);
    args.push('--config', file);
  }
  let child: ChildProcess;
  let output = '';
  const start = async () => {
    child = spawn(process.execPath, args, {
      // One process unless a test asks for workers (test/workers.test.ts, conformance): the suite's servers start
      // faster on a loaded machine, and the cluster is tested where it is named.
      env: { ...process.env, BERTH_LOG_LEVEL: 'warn', BERTH_HTTP_WORKERS: '1', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (b) => (output += b));
    child.stderr!.on('data', (b) => (output += b));
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`berth serve exited (${code}) before it was ready:\n${output}`))),
    );
    const ready = opts.tlsCa
      ? waitForHttps(ip, port, opts.tlsCa, opts.readyCert)
      : waitForHttp(`http://${hostPort}/v2/`, { timeoutMs: 30_000 });
    try {
      await Promise.race([ready, exited]);
    } catch (e) {
      // Not ready in time: stop it here (no t.after is registered yet), else it — and a cluster's workers — linger.
      child.kill('SIGKILL');
      throw e;
    }
  };
  const waitExit = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  await start();
  const berth: Berth = {
    url: `${opts.tlsCa ? 'https' : 'http'}://${hostPort}`,
    host: hostPort,
    port,
    root,
    get pid() {
      return child.pid!;
    },
    logs: () => output,
    stop: async () => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await waitExit('SIGTERM');
      clearTimeout(timer);
    },
    kill: () => waitExit('SIGKILL'),
    restart: start,
  };
  t?.after(async () => {
    await berth.stop();
    if (!opts.root) await rm(root, { recursive: true, force: true });
    if (opts.config) await rm(`${root}-config.yaml`, { force: true });
  });
  return berth;
}

/** Polls https://IP:PORT/v2/ trusting only `caFile` until it answers. */
async function waitForHttps(
  ip: string,
  port: number,
  caFile: string,
  client?: { cert: string; key: string },
  timeoutMs = 15_000,
): Promise<void> {
  const ca = await readFile(caFile);
  const mine = client ? { cert: await readFile(client.cert), key: await readFile(client.key) } : {};
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      await new Promise<void>((resolve, reject) => {
        const req = get({ host: ip, port, path: '/v2/', ca, ...mine, agent: false, timeout: 2_000 }, (res) => {
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', reject);
        req.on('timeout', () => req.destroy(new Error('timeout')));
      });
      return;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`https://${ip.includes(':') ? `[${ip}]` : ip}:${port}/v2/ not ready: ${last}`);
}

/** Waits until the server printed a line matching `pattern` (e.g. the cluster's "all workers listening"). */
export async function waitForLog(logs: () => string, pattern: RegExp, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(logs())) {
    if (Date.now() > deadline) throw new Error(`no log line ${pattern} within ${timeoutMs} ms:\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
