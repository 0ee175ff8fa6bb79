// How berth's client connects: HTTP(S)_PROXY / NO_PROXY from the environment (undici's EnvHttpProxyAgent, the
// same variables curl and Go honour), and per-registry TLS read like docker does.
// TLS trust for a registry host, as docker's daemon reads it (moby registry.ReadCertsDirectory):
//   <certs dir>/<host[:port]>/*.crt                      extra CA roots (added to the system's, not replacing them)
//   <certs dir>/<host[:port]>/<name>.cert + <name>.key   a client certificate (mTLS); a .key without its .cert fails
// from /etc/docker/certs.d and ~/.docker/certs.d (or the dirs given with --certs-dir), plus --ca-file for every host.
// `insecure` (crane's --insecure) skips verification; certificates still go out when configured.
// https://docs.docker.com/engine/security/certificates/
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { readdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import type { Dispatcher } from 'undici';

export interface TransportOptions {
  /** Skip TLS verification (hosts the user named insecure). */
  insecureTls?: boolean;
  /** Parallel connections per origin. */
  connections?: number;
  /** A PEM file of CA certificates trusted for every registry, in addition to the system's. */
  caFile?: string;
  /** Where `HOST[:PORT]/{*.crt,*.cert,*.key}` live; default /etc/docker/certs.d and ~/.docker/certs.d. */
  certsDirs?: string[];
  /** Honour HTTP_PROXY/HTTPS_PROXY/NO_PROXY (default true). */
  proxyFromEnv?: boolean;
}

export interface HostTls {
  /** Trusted roots when more than the system's (undefined: Node's defaults, NODE_EXTRA_CA_CERTS included). */
  ca?: string[];
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
  /** The certs.d directory that configured this host, for messages. */
  certsDir?: string;
}

export class TransportError extends Error {}

export function defaultCertsDirs(): string[] {
  return ['/etc/docker/certs.d', join(homedir(), '.docker', 'certs.d')];
}

/** The TLS settings for `host` (`name[:port]`): --ca-file, then the first certs.d directory that has the host. */
export async function hostTls(host: string, opts: TransportOptions): Promise<HostTls> {
  const extra: string[] = [];
  const out: HostTls = {};
  if (opts.caFile) extra.push(await _readPem(opts.caFile, '--ca-file'));
  for (const root of opts.certsDirs ?? defaultCertsDirs()) {
    const dir = join(root, host);
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch {
      continue;
    }
    out.certsDir = dir;
    for (const name of names) {
      if (name.endsWith('.crt')) extra.push(await _readPem(join(dir, name), 'certs.d'));
      else if (name.endsWith('.cert') || name.endsWith('.key')) {
        const base = name.replace(/\.(cert|key)$/, '');
        if (!names.includes(`${base}.cert`) || !names.includes(`${base}.key`)) {
          const missing = name.endsWith('.key') ? `${base}.cert` : `${base}.key`;
          throw new TransportError(
            `${join(dir, name)} has no matching ${missing}; client certificates need both files`,
          );
        }
        if (name.endsWith('.cert')) {
          out.cert = await _readPem(join(dir, name), 'certs.d');
          out.key = await _readPem(join(dir, `${base}.key`), 'certs.d');
        }
      }
    }
    break; // docker uses the first directory that exists for the host
  }
  if (extra.length) out.ca = [..._systemRoots(), ...extra];
  if (opts.insecureTls) out.rejectUnauthorized = false;
  return out;
}

async function _readPem(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new TransportError(`${what}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
}

/** What Node trusts by default: its bundled roots plus NODE_EXTRA_CA_CERTS (an explicit `ca` replaces both). */
function _systemRoots(): string[] {
  const get = (tls as { getCACertificates?: (kind: string) => string[] }).getCACertificates;
  if (get) return get('default');
  const roots = [...tls.rootCertificates];
  const extraFile = process.env.NODE_EXTRA_CA_CERTS;
  if (extraFile) {
    try {
      roots.push(readFileSync(extraFile, 'utf8'));
    } catch {
      /* Node itself warns about an unreadable NODE_EXTRA_CA_CERTS */
    }
  }
  return roots;
}

/** The parts of undici the client uses. */
export interface Undici {
  Agent: typeof import('undici').Agent;
  EnvHttpProxyAgent: typeof import('undici').EnvHttpProxyAgent;
  /** undici's request() with the dispatcher always given. */
  request(url: string, opts: _RequestOptions): Promise<Dispatcher.ResponseData>;
}

type _RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & {
  method: Dispatcher.HttpMethod;
  dispatcher: Dispatcher;
};

// undici is loaded on the first request: a build that writes only an OCI layout never needs it. Its index also
// builds fetch, WebSocket, EventSource, the caches and the mocks (~80 ms of CPU, beside a `go build` in a preset go
// build); the client needs an Agent and Dispatcher#request only, which load in half that. The package has no exports
// map, so those modules can be required by path; should a release move them, the whole package is loaded instead.
let _undici: Promise<Undici> | undefined;
export function undici(): Promise<Undici> {
  _undici ??= _slimUndici().catch(() => import('undici'));
  return _undici;
}

async function _slimUndici(): Promise<Undici> {
  const require = createRequire(import.meta.url);
  // undici's dispatchers call each other's API methods (a proxy agent CONNECTs through its client with
  // `connect`), which its index puts on Dispatcher.prototype: do the same, or HTTPS through HTTP(S)_PROXY fails.
  const Dispatcher = require('undici/lib/dispatcher/dispatcher.js') as (new () => object) | undefined;
  const api = require('undici/lib/api/index.js') as Record<string, unknown>;
  if (typeof Dispatcher !== 'function' || typeof api?.connect !== 'function')
    throw new Error('undici moved its modules');
  if (!('connect' in Dispatcher.prototype)) Object.assign(Dispatcher.prototype, api);
  const Agent = require('undici/lib/dispatcher/agent.js') as Undici['Agent'];
  const EnvHttpProxyAgent = require('undici/lib/dispatcher/env-http-proxy-agent.js') as Undici['EnvHttpProxyAgent'];
  // Dispatcher#request as a function of its dispatcher (undici's index puts it on Dispatcher.prototype).
  const dispatcherRequest = require('undici/lib/api/api-request.js') as (
    this: Dispatcher,
    o: Dispatcher.RequestOptions,
  ) => Promise<Dispatcher.ResponseData>;
  if (typeof Agent !== 'function' || typeof EnvHttpProxyAgent !== 'function' || typeof dispatcherRequest !== 'function')
    throw new Error('undici moved its modules');
  return {
    Agent,
    EnvHttpProxyAgent,
    request(url, { dispatcher, ...opts }) {
      const u = new URL(url);
      return dispatcherRequest.call(dispatcher, { ...opts, origin: u.origin, path: `${u.pathname}${u.search}` });
    },
  };
}

const _dispatchers = new Map<string, Dispatcher>();

/** One connection pool per distinct TLS + proxy setting (shared by every registry that has the same). */
export async function dispatcherFor(t: HostTls, opts: TransportOptions): Promise<Dispatcher> {
  const proxy = opts.proxyFromEnv !== false;
  const connections = opts.connections ?? 16;
  const key = createHash('sha256')
    .update(JSON.stringify([proxy, connections, t.ca ?? null, t.cert ?? null, t.rejectUnauthorized ?? null]))
    .digest('hex');
  let d = _dispatchers.get(key);
  if (!d) {
    const u = await undici();
    const connect = { ca: t.ca, cert: t.cert, key: t.key, rejectUnauthorized: t.rejectUnauthorized };
    const base = { connections, keepAliveTimeout: 30_000, connect };
    // Through a proxy, TLS to the registry runs inside the CONNECT tunnel: `requestTls` carries the same settings.
    d = proxy && _proxyConfigured() ? new u.EnvHttpProxyAgent({ ...base, requestTls: connect }) : new u.Agent(base);
    _dispatchers.set(key, d);
  }
  return d;
}

function _proxyConfigured(): boolean {
  const e = process.env;
  return !!(e.http_proxy || e.HTTP_PROXY || e.https_proxy || e.HTTPS_PROXY);
}
