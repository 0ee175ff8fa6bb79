// What a pull-through cache needs from an upstream, beyond remote.ts: a Registry with fixed per-upstream
// credentials (no docker config file) that only go to the upstream's own host and realms it trusts, a manifest
// HEAD that reports status/digest/type/size (for tag revalidation), and a blob GET that learns the size from the
// first response (no HEAD round trip before the first byte) and resumes with Range when the connection drops.
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseDigest, type Digest } from '../spec/digest.js';
import { ACCEPT_ALL_MANIFESTS, baseMediaType } from '../spec/media-types.js';
import { repoScope } from './auth.js';
import type { CredentialStore, Credentials } from './credentials.js';
import { Registry, RegistryError } from './registry.js';

export interface UpstreamOptions {
  /** `https://registry-1.docker.io` or `http://127.0.0.1:5001` (plain HTTP is allowed for this host). */
  url: string;
  username?: string;
  password?: string;
  /** Token realm hosts (`host[:port]`) besides the upstream's own host that may receive the credentials. */
  credentialsToRealm?: string[];
  /** Retries on 429/5xx/resets per request (default 1: a cache would rather serve stale than wait). */
  retries?: number;
  /** Carries every connection (redirects and token realms too); the server passes one that enforces its address policy. */
  dispatcher?: Dispatcher;
}

/** A Registry for one upstream. Credentials go to its host (Basic) and to token realms on it or listed. */
export function upstreamRegistry(opts: UpstreamOptions): Registry {
  const url = new URL(opts.url);
  const host = url.host;
  const creds: Credentials | undefined =
    opts.username !== undefined ? { username: opts.username, password: opts.password ?? '' } : undefined;
  const store: CredentialStore = { get: async (h) => (h === host ? creds : undefined) };
  const trusted = new Set([host, ...(opts.credentialsToRealm ?? [])]);
  return new Registry(host, {
    credentials: store,
    // Same host means same scheme too: an https upstream must not hand its password to an http realm.
    realmCredentials: (realm) => trusted.has(realm.host) && (realm.host !== host || realm.protocol === url.protocol),
    insecure: url.protocol === 'http:' ? [host] : false,
    retries: opts.retries ?? 1,
    backoffMs: 100,
    maxRetryAfterMs: 1_000,
    dispatcher: opts.dispatcher,
  });
}

export interface ManifestHead {
  /** 200 or 404. */
  status: number;
  digest?: Digest;
  mediaType?: string;
  size?: number;
}

/** HEAD /v2/<name>/manifests/<ref>: what the upstream would serve, without its body. Other statuses throw. */
export async function headManifest(
  registry: Registry,
  name: string,
  reference: string,
  signal?: AbortSignal,
): Promise<ManifestHead> {
  const res = await registry.request({
    method: 'HEAD',
    url: `/v2/${name}/manifests/${reference}`,
    headers: { accept: ACCEPT_ALL_MANIFESTS },
    scopes: [repoScope(name, ['pull'])],
    ok: [200, 404],
    signal,
  });
  await res.dump();
  if (res.status === 404) return { status: 404 };
  const raw = res.header('docker-content-digest');
  let digest: Digest | undefined;
  try {
    digest = raw ? parseDigest(raw).digest : undefined;
  } catch {
    digest = undefined;
  }
  const size = Number(res.header('content-length'));
  return {
    status: 200,
    digest,
    mediaType: baseMediaType(res.header('content-type')),
    size: Number.isFinite(size) ? size : undefined,
  };
}

/** HEAD /v2/<name>/blobs/<digest>: its size, or undefined when the upstream repository does not have it. */
export async function statBlob(
  registry: Registry,
  name: string,
  digest: Digest,
  signal?: AbortSignal,
): Promise<number | undefined> {
  const res = await registry.request({
    method: 'HEAD',
    url: `/v2/${name}/blobs/${digest}`,
    scopes: [repoScope(name, ['pull'])],
    ok: [200, 404],
    signal,
  });
  await res.dump();
  const size = Number(res.header('content-length'));
  return res.status === 200 && Number.isFinite(size) ? size : undefined;
}

export interface BlobDownload {
  size: number;
  /** The blob's bytes (not verified here: the caller hashes them before publishing). */
  body: Readable;
}

const RESUMES = 5;

/**
 * GET /v2/<name>/blobs/<digest>, resolving once the upstream answered (so the size is known) and continuing with
 * `Range: bytes=N-` when the connection drops. The body errors if the upstream sends more or fewer bytes.
 */
export async function downloadBlob(
  registry: Registry,
  name: string,
  digest: Digest,
  signal?: AbortSignal,
): Promise<BlobDownload> {
  const get = (at: number) =>
    registry.request({
      method: 'GET',
      url: `/v2/${name}/blobs/${digest}`,
      headers: at > 0 ? { range: `bytes=${at}-` } : {},
      scopes: [repoScope(name, ['pull'])],
      ok: [200, 206],
      signal,
    });
  const first = await get(0);
  const size = Number(first.header('content-length'));
  if (first.status !== 200 || !Number.isSafeInteger(size) || size < 0) {
    first.body.destroy();
    throw new RegistryError(`GET blob ${digest} on ${registry.host}: no usable Content-Length`, first.status);
  }
  async function* bytes(): AsyncGenerator<Buffer> {
    let res = first;
    let at = 0;
    let failures = 0;
    for (;;) {
      // A server that ignores Range answers 200 with the whole blob: skip what was already passed on.
      let skip = at > 0 && res.status === 200 ? at : 0;
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          let c = chunk;
          if (skip) {
            if (c.length <= skip) {
              skip -= c.length;
              continue;
            }
            c = c.subarray(skip);
            skip = 0;
          }
          if (at + c.length > size)
            throw new RegistryError(`blob ${digest} on ${registry.host} is larger than ${size} bytes`, 0);
          at += c.length;
          yield c;
        }
        if (at === size) return;
        throw Object.assign(new Error('connection closed early'), { code: 'ECONNRESET' });
      } catch (e) {
        res.body.destroy();
        if (signal?.aborted || ++failures > RESUMES || !_resumable(e)) throw e;
        await sleep(100 * 2 ** failures);
        res = await get(at);
      }
    }
  }
  return { size, body: Readable.from(bytes(), { objectMode: false, highWaterMark: 1 << 20 }) };
}

function _resumable(e: unknown): boolean {
  const code = (e as any)?.code ?? (e as any)?.cause?.code;
  return (
    [
      'ECONNRESET',
      'EPIPE',
      'ETIMEDOUT',
      'UND_ERR_SOCKET',
      'UND_ERR_CLOSED',
      'ECONNABORTED',
      'UND_ERR_ABORTED',
      'ERR_STREAM_PREMATURE_CLOSE',
    ].includes(code) || /terminated|other side closed/i.test((e as Error)?.message ?? '')
  );
}
