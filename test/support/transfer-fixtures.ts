// Shared by the transfer tests: the built CLI as a child process (so it can be interrupted), and an OCI layout
// holding one image with a large random (incompressible) layer, written streaming.
import { makeLayeredLayout } from './oci-layouts.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { findExecutable, freePort, run, stopProcess, type RunOptions, type RunResult } from './peers.js';

export const BERTH_BIN = fileURLToPath(new URL('../../bin/berth.js', import.meta.url));

/** `berth ARGS…` from dist/ (npm test builds it) to completion. */
export function berthCli(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [BERTH_BIN, ...args], opts);
}

/** `berth ARGS…` from dist/ as a child to watch and signal; `done` resolves with its exit code or signal. */
export function spawnBerth(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; stderr: () => string; done: Promise<{ code: number | null; signal: string | null }> } {
  const child = spawn(process.execPath, [BERTH_BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (b) => (err += b));
  child.stdout!.resume();
  const done = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stderr: () => err, done };
}

export interface BigImage {
  dir: string;
  tag: string;
  layer: { digest: string; size: number };
  manifest: string;
}

/** An OCI layout `dir:tag` with one image whose only layer is `size` random bytes. */
export async function makeBigLayout(dir: string, size: number, tag = 'v1'): Promise<BigImage> {
  const img = await makeLayeredLayout(dir, { layers: 1, layerBytes: size, tag });
  return { dir, tag, layer: { digest: img.layers[0].digest, size }, manifest: img.manifest };
}

/** Every file under `dir` (relative paths), for asserting what an interrupted run left behind. */
export async function listFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath ?? (e as any).path, e.name).slice(dir.length + 1))
    .sort();
}

export interface Tinyproxy {
  url: string;
  port: number;
  /** What tinyproxy logged (each proxied request and CONNECT tunnel is a `Request (…): …` line). */
  log(): Promise<string>;
  /** `Request` lines naming `host` (host:port of the target). */
  requestsTo(host: string): Promise<number>;
  stop(): Promise<void>;
}

/** A real forward proxy (Debian tinyproxy) on a free loopback port, with its own config and log in a temp dir. */
export async function startTinyproxy(t: TestContext): Promise<Tinyproxy> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-tinyproxy-'));
  await chmod(dir, 0o777); // tinyproxy may drop privileges before it opens its log
  const port = await freePort();
  const logFile = join(dir, 'tinyproxy.log');
  await writeFile(
    join(dir, 'tinyproxy.conf'),
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 120',
      `LogFile "${logFile}"`,
      'LogLevel Info',
      'MaxClients 64',
      'Allow 127.0.0.1',
      'DisableViaHeader Yes',
      '',
    ].join('\n'),
  );
  const child = spawn(findExecutable('tinyproxy') ?? 'tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')], {
    stdio: 'ignore',
  });
  const stop = async () => {
    await stopProcess(child, 5_000);
    await rm(dir, { recursive: true, force: true });
  };
  t.after(stop);
  const log = () => readFile(logFile, 'utf8').catch(() => '');
  const deadline = Date.now() + 10_000;
  while (!/Accepting connections/.test(await log())) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`tinyproxy did not start:\n${await log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log,
    requestsTo: async (host) =>
      (await log()).split('\n').filter((l) => /Request \(file descriptor \d+\):/.test(l) && l.includes(host)).length,
    stop,
  };
}
