// A real S3 server for tests: SeaweedFS (`weed`, built by .ci/install-s3.sh) in its single-process `mini` mode —
// master, volume server, filer and S3 gateway — on free loopback ports, data in a temp dir, stopped by its own pid.
// Not a fake: it is the S3 implementation berth supports in production (conditional writes, multipart, copies).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { findExecutable, freePort } from './peers.js';

export interface S3Server {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** Created and empty. */
  bucket: string;
  pid: number;
  /** Data and logs. */
  dir: string;
  stop(): Promise<void>;
}

/** The peer name for requirePeer(t, S3_PEER): the `weed` executable in PATH or /opt/berth-tools/bin. */
export const S3_PEER = 'weed';

export interface S3ServerOptions {
  /** Bucket to create (default `berth-test`). */
  bucket?: string;
  /** Start-up timeout (default 60 s). */
  timeoutMs?: number;
}

export async function startS3Server(opts: S3ServerOptions = {}): Promise<S3Server> {
  const weed = findExecutable(S3_PEER);
  if (!weed) throw new Error('weed (SeaweedFS) is not installed; install it with `bash .ci/install-s3.sh`');
  const dir = await mkdtemp('/tmp/s3-');
  // The OS may hand a probed port to another process before weed binds it: retry on a fresh set.
  for (let attempt = 1; ; attempt++) {
    try {
      return await _startOn(weed, dir, opts);
    } catch (e) {
      if (attempt >= 3) {
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
    }
  }
}

async function _startOn(weed: string, dir: string, opts: S3ServerOptions): Promise<S3Server> {
  const accessKeyId = `berth${randomBytes(6).toString('hex')}`;
  const secretAccessKey = randomBytes(20).toString('hex');
  const region = 'us-east-1';
  const bucket = opts.bucket ?? 'berth-test';
  const config = join(dir, 's3.json');
  await writeFile(
    config,
    JSON.stringify({
      identities: [
        {
          name: 'berth',
          credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }],
          actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'],
        },
      ],
    }),
  );
  const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3, s3Grpc, admin, adminGrpc] = await Promise.all(
    Array.from({ length: 10 }, () => freePort()),
  );
  const data = join(dir, `data-${s3}`);
  const args = [
    'mini',
    `-dir=${data}`,
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-master.port=${master}`,
    `-master.port.grpc=${masterGrpc}`,
    '-master.telemetry=false',
    `-volume.port=${volume}`,
    `-volume.port.grpc=${volumeGrpc}`,
    `-filer.port=${filer}`,
    `-filer.port.grpc=${filerGrpc}`,
    `-filer.localSocket=${join(dir, `filer-${filer}.sock`)}`,
    `-s3.port=${s3}`,
    `-s3.port.grpc=${s3Grpc}`,
    `-s3.localSocket=${join(dir, `s3-${s3}.sock`)}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    `-s3.config=${config}`,
    '-webdav=false',
    '-admin.ui=false',
    // The admin gRPC listener runs even without the UI: give it free ports too, so parallel servers never clash.
    `-admin.port=${admin}`,
    `-admin.port.grpc=${adminGrpc}`,
    '-admin.port.legacy=0',
  ];
  const log = join(dir, `weed-${s3}.log`);
  const fd = openSync(log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(weed, args, {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey },
    });
  } finally {
    closeSync(fd);
  }
  child.on('error', () => {}); // reported by the readiness loop
  const endpoint = `http://127.0.0.1:${s3}`;
  const onExit = () => {
    if (!_exited(child)) process.kill(child.pid!, 'SIGKILL');
  };
  process.on('exit', onExit);
  const stop = async () => {
    process.off('exit', onExit);
    await _stop(child);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await _createBucket(endpoint, region, accessKeyId, secretAccessKey, bucket, child, opts.timeoutMs ?? 60_000);
  } catch (e) {
    process.off('exit', onExit);
    await _stop(child);
    throw new Error(`${(e as Error).message}\n--- ${log} ---\n${_tail(log)}`);
  }
  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    accessKeyId,
    secretAccessKey,
    region,
    bucket,
    pid: child.pid!,
    dir,
    stop: () => (stopped ??= stop()),
  };
}

/** Creating the bucket is the readiness check: it needs the S3 gateway, the filer and the master all up. */
async function _createBucket(
  endpoint: string,
  region: string,
  accessKeyId: string,
  secretAccessKey: string,
  bucket: string,
  child: ChildProcess,
  timeoutMs: number,
): Promise<void> {
  const client = new S3Client({
    endpoint,
    region,
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    maxAttempts: 1,
    requestHandler: { requestTimeout: 5_000, connectionTimeout: 1_000 },
  });
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  try {
    while (Date.now() < deadline) {
      if (_exited(child)) throw new Error(`weed exited (${child.exitCode ?? child.signalCode}) before S3 was ready`);
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        return;
      } catch (e) {
        const name = (e as Error).name;
        if (name === 'BucketAlreadyOwnedByYou' || name === 'BucketAlreadyExists') return;
        last = `${name}: ${(e as Error).message}`;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`S3 at ${endpoint} not ready after ${timeoutMs} ms: ${last}`);
  } finally {
    client.destroy();
  }
}

function _exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM by pid, SIGKILL after 10 s. */
async function _stop(child: ChildProcess): Promise<void> {
  if (_exited(child)) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(timer);
}

function _tail(log: string): string {
  try {
    return readFileSync(log, 'utf8').trimEnd().split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A `berth serve` config (YAML) on `s3`'s bucket, request logs off; `endpoint` overrides (a fault proxy in front). */
export function s3ServeConfig(s3: S3Server, opts: { blobGet?: 'proxy' | 'redirect'; endpoint?: string } = {}): string {
  return `${[
    'storage:',
    '  s3:',
    `    bucket: ${s3.bucket}`,
    `    endpoint: ${opts.endpoint ?? s3.endpoint}`,
    `    region: ${s3.region}`,
    '    forcePathStyle: true',
    `    accessKeyId: ${s3.accessKeyId}`,
    `    secretAccessKey: ${s3.secretAccessKey}`,
    ...(opts.blobGet ? [`    blobGet: ${opts.blobGet}`] : []),
    'log: { requests: false }',
  ].join('\n')}\n`;
}
