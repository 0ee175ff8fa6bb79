// Plumbing shared by the commands that talk to registries (pull, push, copy, inspect…): the Client they use and
// how they print results. Their shared flags and argument parsers are in flags.ts.
import { setFlagsFromString } from 'node:v8';
import { Client } from '../client/remote.js';
import { parseImageRef, TransportError, type ImageRef } from '../client/transports.js';
import type { Platform } from '../spec/manifest.js';
import type { Reference } from '../spec/reference.js';
import { CLIError, UsageError } from './command.js';
import { exitCleanlyOnSignals } from './_signals.js';

export function makeClient(values: { insecure?: boolean; 'ca-file'?: string; 'certs-dir'?: string }): Client {
  // undici parses HTTP/1.1 with llhttp compiled to WebAssembly. V8's optimising tier compiles it in the background
  // on the first request, which costs ~35 MB of peak RSS and ~60 ms of CPU that a short CLI run never earns back;
  // the baseline (Liftoff) code is plenty for a parser that mostly skips over blob bodies. Wasm flags are read at
  // compile time, so setting this before the first request is well defined; only the CLI does it.
  setFlagsFromString('--liftoff-only');
  // Every verb that transfers makes a client: an interrupt then leaves only resumable partials (see _signals.ts).
  exitCleanlyOnSignals();
  return new Client({
    insecure: !!values.insecure,
    userAgent: 'berth',
    caFile: values['ca-file'],
    certsDirs: values['certs-dir'] ? [values['certs-dir']] : undefined,
  });
}

/** An image reference with an optional transport (`oci:DIR:TAG`, `docker-archive:FILE`, …; see client/transports.ts). */
export function imageRef(input: string | undefined, what = 'REF', command = ''): ImageRef {
  if (!input) throw new CLIError(`missing ${what}; see \`berth ${command} --help\``);
  try {
    return parseImageRef(input);
  } catch (e) {
    if (e instanceof TransportError) throw new UsageError(e.message);
    throw e;
  }
}

export const TRANSPORT_HELP = `References: [docker://]HOST/NAME[:TAG|@DIGEST], oci:DIR[:TAG|@DIGEST], oci-archive:FILE[:TAG],
docker-archive:FILE[:NAME:TAG] (as skopeo writes them).`;

/** The tag or digest to ask a registry for. */
export function refId(r: Reference): string {
  return r.digest ?? r.tag ?? 'latest';
}

/** This machine's platform, as docker picks it for single-platform outputs. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
