// The flags and arguments several commands share, declared once: output (--json, --quiet), the registry
// connection (--insecure), parallelism (--jobs), platforms, the registry's own storage (--config, --root), and the
// parsers for what commands take as arguments (image references, registry hosts). Commands spread these into
// their `flags` and never import each other.
import type { Platform } from '../spec/manifest.js';
import { parsePlatform } from '../spec/platform.js';
import { DOCKER_HUB, parseReference, type Reference } from '../spec/reference.js';
import { flag, UsageError } from './command.js';

export const json = flag.boolean({ help: 'machine-readable output on stdout' });
export const quiet = flag.boolean({ short: 'q', help: 'print no progress, only the result' });
export const insecure = flag.boolean({
  help: 'allow plain HTTP / unverified TLS for non-loopback registries (loopback is always allowed)',
});

/** --json and --insecure: every command that talks to a registry. */
export const caFile = flag.string({
  arg: 'FILE',
  help: 'trust the CA certificates in FILE (PEM) for every registry, in addition to the system ones',
});
export const certsDir = flag.string({
  arg: 'DIR',
  help: "read HOST[:PORT]/{ca.crt,client.cert,client.key} from DIR instead of docker's /etc/docker/certs.d and ~/.docker/certs.d",
});
/** Every command that talks to a registry: output, TLS trust (HTTP(S)_PROXY and NO_PROXY are honoured too). */
export const REMOTE = { json, insecure, 'ca-file': caFile, 'certs-dir': certsDir };
/** What transfer verbs (push, pull, copy, build) add: --quiet. */
export const TRANSFER = { quiet, ...REMOTE };

export function jobs(what = 'blobs transferred in parallel') {
  return flag.int({ short: 'j', arg: 'N', default: 4, min: 1, max: 64, help: what });
}

export function platform(help: string) {
  return flag.list({ arg: 'P', split: true, help });
}

/** The registry's own storage, for commands that open it directly (serve, gc, fsck, token). */
export const STORAGE = {
  config: flag.string({
    short: 'c',
    arg: 'FILE',
    complete: 'file',
    help: 'the registry\'s YAML configuration (see README "Configuration"); BERTH_* variables override its keys',
  }),
  root: flag.string({ arg: 'DIR', complete: 'dir', help: 'filesystem storage root (storage.filesystem.root)' }),
};

/** An image reference argument, with the accepted form in the error. */
export function ref(input: string | undefined, what = 'REF', command = ''): Reference {
  if (!input) throw new UsageError(`missing ${what}; see \`berth ${command} --help\``);
  try {
    return parseReference(input);
  } catch (e) {
    throw new UsageError(`${(e as Error).message}; write it as [HOST[:PORT]/]NAME[:TAG|@sha256:DIGEST]`);
  }
}

/** --platform values → platforms (undefined when none were given). */
export function platforms(values: string[] | undefined): Platform[] | undefined {
  if (!values?.length) return undefined;
  return values.map((v) => {
    try {
      return parsePlatform(v);
    } catch (e) {
      throw new UsageError(`--platform: ${(e as Error).message}`);
    }
  });
}

const HOST = /^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$/;

/** A registry host argument (`localhost:5000`, `https://ghcr.io/` → `ghcr.io`), Docker Hub's aliases → docker.io. */
export function registryHost(input: string): string {
  const host = input.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (!HOST.test(host))
    throw new UsageError(`"${input}" is not a registry host; write it as HOST[:PORT], e.g. localhost:5000`);
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB : host;
}

// The RepoTags docker load applies: one definition, in client/transports.ts.
export { dockerTag } from '../client/transports.js';

/** -t REF: where an image verb writes its result instead of REF itself. */
export const tagTo = flag.string({
  short: 't',
  arg: 'REF',
  help: "write the result here (any transport) instead of REF's own tag",
});
/** -o FILE: a file that appears only when complete, instead of stdout. */
export const output = flag.string({
  short: 'o',
  arg: 'FILE',
  complete: 'file',
  help: 'write to FILE (it appears only when complete) instead of stdout',
});
/** --platform for verbs that read one image of an index. */
export const onePlatform = flag.string({
  arg: 'P',
  help: "the platform to pick from an index (os/arch[/variant]; default this machine's)",
});
