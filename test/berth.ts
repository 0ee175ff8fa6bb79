// Starts `berth serve` (the built CLI, dist/) for end-to-end tests, on a free loopback port with its own storage.
// Stopped by its own pid; `kill()` simulates a crash (SIGKILL) and `restart()` brings it back on the same root.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { freePort, waitForHttp } from './peers.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

export interface BerthOptions {
  /** Storage root; a temp dir (removed at the end) when omitted. */
  root?: string;
  /** YAML text of a config file. */
  config?: string;
  env?: Record<string, string>;
  port?: number;
}

export interface Berth {
  url: string;
  /** `127.0.0.1:PORT`, for image references. */
  host: string;
  port: number;
  root: string;
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
  const args = [BERTH, 'serve', '--addr', `127.0.0.1:${port}`];
  // --root selects filesystem storage; a config with S3 storage keeps `root` only for the config file.
  if (!/^\s+s3:/m.test(opts.config ?? '')) args.push('--root', root);
  if (opts.config) {
    const file = join(root + '-config.yaml');
    await writeFile(file, opts.config);
    args.push('--config', file);
  }
  let child: ChildProcess;
  let output = '';
  const start = async () => {
    child = spawn(process.execPath, args, {
      env: { ...process.env, BERTH_LOG_LEVEL: 'warn', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (b) => (output += b));
    child.stderr!.on('data', (b) => (output += b));
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`berth serve exited (${code}) before it was ready:\n${output}`))),
    );
    await Promise.race([waitForHttp(`http://127.0.0.1:${port}/v2/`, { timeoutMs: 15_000 }), exited]);
  };
  const waitExit = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  await start();
  const berth: Berth = {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    root,
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
    if (opts.config) await rm(root + '-config.yaml', { force: true });
  });
  return berth;
}
