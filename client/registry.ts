// HTTP to one registry host: scheme choice (plain HTTP for loopback like docker, `insecure` for others), auth
// (ping, challenges, tokens via auth.ts), retries with backoff on 429/5xx/connection resets honouring Retry-After,
// and redirects followed by hand so `Authorization` never reaches another origin (e.g. a 307 to object storage).
// Bodies stream both ways (undici); a request body is a factory so a retry can open it again. Connections go
// through transport.ts: HTTP(S)_PROXY/NO_PROXY, --ca-file and docker's certs.d per host.
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { backoffDelay, isRetryableError, RETRY_STATUS } from '../spec/retry.js';
import { Authenticator, AuthError, mergeScopes, parseChallenges } from './auth.js';
import type { CredentialStore } from './credentials.js';
import { DockerCredentialStore } from './credentials.js';
import { defaultCertsDirs, dispatcherFor, hostTls, undici, type HostTls } from './transport.js';

export type Body = Buffer | string | Readable;

export interface RegistryOptions {
  /** Where credentials come from; default: docker config.json / auth.json / helpers. */
  credentials?: CredentialStore;
  /** Whether credentials may be sent to a token realm (default: any); see Authenticator. */
  realmCredentials?: (realm: URL) => boolean;
  /** Hosts allowed over plain HTTP or with unverified TLS (`true` = every host). Loopback is always allowed. */
  insecure?: boolean | string[];
  /** Retries after the first attempt on 429/5xx/resets (default 5). */
  retries?: number;
  /** First backoff in ms (doubles each retry, ±25 % jitter; default 200). */
  backoffMs?: number;
  /** Longest wait honoured from Retry-After (ms, default 60 000). */
  maxRetryAfterMs?: number;
  userAgent?: string;
  /** Parallel connections per origin (default 16). */
  connections?: number;
  /** A PEM file of CAs trusted for every registry in addition to the system roots (`--ca-file`). */
  caFile?: string;
  /** Docker-style `HOST[:PORT]/{*.crt,*.cert,*.key}` directories (default /etc/docker/certs.d, ~/.docker/certs.d). */
  certsDirs?: string[];
  /** Honour HTTP_PROXY / HTTPS_PROXY / NO_PROXY (default true). */
  proxyFromEnv?: boolean;
  /**
   * The undici dispatcher for every connection this registry makes — redirect hops and token realms included —
   * e.g. one that refuses internal addresses (a server following URLs it was handed). Replaces the shared agent,
   * so `insecure` TLS does not apply to it. Default: a shared Agent.
   */
  dispatcher?: Dispatcher;
}

export interface RequestSpec {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** A path under the registry (`/v2/…`) or an absolute URL (upload Locations, redirects). */
  url: string;
  headers?: Record<string, string>;
  /** A factory, so retries and auth round-trips can send the body again. */
  body?: () => Body;
  /** Token scopes this request needs (merged per operation by the caller). */
  scopes?: string[];
  /** Statuses that count as success; anything else becomes a RegistryError. Default: 2xx. */
  ok?: number[];
  /** Set false for requests that must not be repeated (non-idempotent without a replayable body). */
  retry?: boolean;
  /**
   * The body carries credentials (an OAuth2 password or refresh-token form). It is never replayed to another
   * origin: a cross-origin 307/308 is returned unfollowed, as the 3xx it is.
   */
  secretBody?: boolean;
  signal?: AbortSignal;
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The response body; consume it or call `dump()`. */
  body: Readable;
  url: string;
  header(name: string): string | undefined;
  text(limit?: number): Promise<string>;
  bytes(limit: number): Promise<Buffer>;
  dump(): Promise<void>;
}

/** A failed registry exchange; `code` is the first OCI error code in the body when there is one. */
export class RegistryError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
    readonly retryable = false,
  ) {
    super(message);
  }
}

const MAX_REDIRECTS = 5;

export function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h.endsWith('.localhost');
}

/** One registry host. Cheap to create; share one per host within an operation so tokens are reused. */
export class Registry {
  readonly auth: Authenticator;
  private base?: Promise<string>;
  private readonly opts: Required<
    Omit<
      RegistryOptions,
      'credentials' | 'insecure' | 'realmCredentials' | 'dispatcher' | 'caFile' | 'certsDirs' | 'proxyFromEnv'
    >
  > & { insecure: boolean };
  private readonly dispatcher?: Dispatcher;
  private readonly network: Pick<RegistryOptions, 'caFile' | 'certsDirs' | 'proxyFromEnv'>;
  private tls?: Promise<HostTls>;

  constructor(
    readonly host: string,
    options: RegistryOptions = {},
  ) {
    const insecure = options.insecure === true || (Array.isArray(options.insecure) && options.insecure.includes(host));
    this.opts = {
      retries: options.retries ?? 5,
      backoffMs: options.backoffMs ?? 200,
      maxRetryAfterMs: options.maxRetryAfterMs ?? 60_000,
      userAgent: options.userAgent ?? 'berth',
      connections: options.connections ?? 16,
      insecure,
    };
    this.dispatcher = options.dispatcher;
    this.network = { caFile: options.caFile, certsDirs: options.certsDirs, proxyFromEnv: options.proxyFromEnv };
    const creds = options.credentials ?? new DockerCredentialStore();
    this.auth = new Authenticator(
      host,
      creds,
      async (r) => {
        const body = r.body;
        const res = await this._send(
          {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: body === undefined ? undefined : () => body,
            secretBody: body !== undefined,
          },
          true,
        );
        return { status: res.status, text: await res.text(64 * 1024) };
      },
      options.realmCredentials,
    );
  }

  /** `https://host` or `http://host`, decided once by pinging /v2/ (which also records the auth challenge). */
  baseUrl(): Promise<string> {
    this.base ??= this._ping().catch((e) => {
      this.base = undefined;
      throw e;
    });
    return this.base;
  }

  /** This host's TLS settings (read once): --ca-file, certs.d, --insecure. */
  private _tls(): Promise<HostTls> {
    this.tls ??= hostTls(this.host, {
      caFile: this.network.caFile,
      certsDirs: this.network.certsDirs,
      insecureTls: this.opts.insecure,
    });
    return this.tls;
  }

  /**
   * The connection pool for a URL: the caller's dispatcher, else one with this host's TLS settings. Other origins
   * (token realms, blob redirects) get the same trust but never this host's client certificate.
   */
  private async _dispatcherFor(url: string): Promise<Dispatcher> {
    if (this.dispatcher) return this.dispatcher;
    let t = await this._tls();
    if (new URL(url).host !== this.host && t.cert) t = { ...t, cert: undefined, key: undefined };
    return dispatcherFor(t, { connections: this.opts.connections, proxyFromEnv: this.network.proxyFromEnv });
  }

  private async _ping(): Promise<string> {
    // A loopback registry is tried over plain HTTP first (as docker does), unless certs.d configures TLS for it.
    const tlsFirst = !!(await this._tls()).certsDir;
    const schemes =
      isLoopback(this.host) && !tlsFirst ? ['http', 'https'] : this.opts.insecure ? ['https', 'http'] : ['https'];
    let last: unknown;
    for (const scheme of schemes) {
      const base = `${scheme}://${this.host}`;
      try {
        const res = await this._send({ method: 'GET', url: `${base}/v2/` }, true);
        await res.dump();
        if (res.status === 401) this.auth.observe(res.headers['www-authenticate']);
        else if (res.status >= 300 && res.status !== 404) {
          // Some registries serve /v2/ only with auth or behind odd proxies; anything but a network error decides the scheme.
        }
        return base;
      } catch (e) {
        last = e;
      }
    }
    throw _unreachable(this.host, last, this.opts.insecure, this.network.certsDirs ?? defaultCertsDirs());
  }

  /** Sends a request with auth, retries and redirects. Non-success statuses throw RegistryError. */
  async request(spec: RequestSpec): Promise<Response> {
    const base = await this.baseUrl();
    const url = /^https?:\/\//.test(spec.url) ? spec.url : base + spec.url;
    const scopes = spec.scopes ?? [];
    let authorization = await this.auth.header(scopes);
    let res = await this._send(
      { ...spec, url, headers: { ...spec.headers, ...(authorization ? { authorization } : {}) } },
      spec.retry ?? true,
    );
    if (res.status === 401) {
      const www = res.headers['www-authenticate'];
      await res.dump();
      const retryWith = await this.auth.challenge(www, scopes);
      if (retryWith && retryWith !== authorization) {
        authorization = retryWith;
        res = await this._send({ ...spec, url, headers: { ...spec.headers, authorization } }, spec.retry ?? true);
      } else if (!retryWith && !(await this.auth.credentials())) {
        throw new AuthError(`${this.host} requires authentication; run \`berth login ${this.host}\``, 401);
      }
    }
    const ok = spec.ok ?? [];
    if ((res.status >= 200 && res.status < 300 && !ok.length) || ok.includes(res.status)) return res;
    let denied: string | undefined;
    if (res.status === 401 || res.status === 403) {
      // Logged in but refused: "run berth login" would be the wrong fix.
      const creds = await this.auth.credentials().catch(() => undefined);
      const challenge = parseChallenges(res.headers['www-authenticate']).find((c) => c.scheme === 'bearer');
      const wanted = (challenge?.params.scope?.split(' ') ?? mergeScopes(scopes)).map(_describeScope).join(', ');
      if (
        creds?.username &&
        (res.status === 403 || challenge?.params.error === 'insufficient_scope' || authorization?.startsWith('Bearer'))
      ) {
        denied = `; user "${creds.username}" is not allowed to ${wanted || 'do this'} — ask the registry's admin for access, or \`berth login ${this.host}\` as another user`;
      }
    }
    throw await _errorFrom(spec.method, url, res, this.host, denied);
  }

  /** One exchange with retries and manual redirects; does not interpret 4xx. */
  private async _send(spec: RequestSpec, retry: boolean): Promise<Response> {
    let attempt = 0;
    for (;;) {
      let res: Response | undefined;
      let err: unknown;
      try {
        res = await this._follow(spec);
      } catch (e) {
        err = e;
      }
      const retryable =
        retry && attempt < this.opts.retries && (err ? isRetryableError(err) : RETRY_STATUS.has(res!.status));
      if (!retryable) {
        if (err) throw err;
        return res!;
      }
      const wait = backoffDelay(attempt, {
        baseMs: this.opts.backoffMs,
        retryAfter: res?.header('retry-after'),
        maxRetryAfterMs: this.opts.maxRetryAfterMs,
      });
      if (res) await res.dump();
      attempt++;
      await sleep(wait, undefined, { signal: spec.signal });
    }
  }

  private async _follow(spec: RequestSpec): Promise<Response> {
    let url = spec.url;
    let method = spec.method;
    let headers: Record<string, string> = { 'user-agent': this.opts.userAgent, ...spec.headers };
    let body = spec.body;
    const origin = new URL(url).origin;
    const { request } = await undici();
    for (let hop = 0; ; hop++) {
      const r = await request(url, {
        method,
        headers,
        body: body ? _toUndiciBody(body()) : undefined,
        dispatcher: await this._dispatcherFor(url),
        signal: spec.signal,
      });
      const res = _wrap(r, url);
      const location = res.header('location');
      if (![301, 302, 303, 307, 308].includes(res.status) || !location || hop >= MAX_REDIRECTS) return res;
      // Upload endpoints answer POST/PATCH with 202 + Location (not a redirect); only 3xx are followed here.
      const next = new URL(location, url);
      const keepsBody = body !== undefined && (res.status === 307 || res.status === 308);
      // A 307/308 replays the body; a credential form must not reach another host (a realm redirecting the
      // password grant elsewhere would hand it the password). The caller sees the 3xx and can fall back.
      if (keepsBody && spec.secretBody && next.origin !== origin) return res;
      await res.dump();
      if (next.origin !== origin) {
        // Never send registry credentials to another host (object storage signs its own URLs).
        const { authorization: _drop, ...rest } = headers;
        headers = rest;
      }
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        const { 'content-type': _type, 'content-length': _length, ...rest } = headers;
        headers = rest;
      }
      url = next.toString();
    }
  }
}

function _toUndiciBody(b: Body): Buffer | string | Readable {
  return b;
}

function _wrap(r: Dispatcher.ResponseData, url: string): Response {
  const headers = r.headers as Record<string, string | string[] | undefined>;
  const body = r.body as unknown as Readable;
  const header = (name: string) => {
    const v = headers[name.toLowerCase()];
    return Array.isArray(v) ? v[0] : v;
  };
  const bytes = async (limit: number) => {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of body) {
      n += c.length;
      if (n > limit) {
        body.destroy();
        throw new RegistryError(`response from ${url} is larger than ${limit} bytes`, r.statusCode);
      }
      chunks.push(c as Buffer);
    }
    return Buffer.concat(chunks);
  };
  return {
    status: r.statusCode,
    headers,
    body,
    url,
    header,
    bytes,
    text: async (limit = 1 << 20) => {
      try {
        return (await bytes(limit)).toString('utf8');
      } catch {
        return '';
      }
    },
    dump: async () => {
      try {
        await r.body.dump({ limit: 64 * 1024 });
      } catch {
        /* connection already gone */
      }
    },
  };
}

/** Whether an upload or download may go on after `e` (a retryable answer, or a connection that broke). */
export function isResumable(e: unknown): boolean {
  if (e instanceof RegistryError) return e.retryable;
  const code = (e as any)?.code ?? (e as any)?.cause?.code;
  return (
    [
      'ECONNRESET',
      'EPIPE',
      'ETIMEDOUT',
      'UND_ERR_SOCKET',
      'UND_ERR_CLOSED',
      'ECONNABORTED',
      'ECONNREFUSED',
      'UND_ERR_ABORTED',
      'ERR_STREAM_PREMATURE_CLOSE',
    ].includes(code) || /terminated|other side closed|socket/i.test((e as Error)?.message ?? '')
  );
}

/** `repository:team/app:pull,push` → `pull,push team/app`. */
function _describeScope(scope: string): string {
  const m = /^repository:(.+):([^:]*)$/.exec(scope);
  return m ? `${m[2]} ${m[1]}` : scope;
}

function _unreachable(host: string, e: unknown, insecure: boolean, certsDirs: string[]): Error {
  const code = (e as any)?.code ?? (e as any)?.cause?.code ?? '';
  const msg = (e as Error)?.message ?? String(e);
  if (/certificate|self.signed|SSL|TLS|EPROTO/i.test(code + msg) && !insecure) {
    const where = certsDirs.map((d) => `${d}/${host}/ca.crt`).join(' or ');
    return new RegistryError(
      `cannot verify TLS for ${host} (${code || msg}); trust its CA with --ca-file FILE or by putting it in ${where}, or pass --insecure to skip verification (or to use plain HTTP)`,
      0,
    );
  }
  // The cause stays attached: a caller may need to tell a refused connection (an address policy) from a dead host.
  return Object.assign(
    new RegistryError(
      `cannot reach registry ${host} (${code || msg}); check the address and that the registry is running`,
      0,
    ),
    { cause: e },
  );
}

async function _errorFrom(
  method: string,
  url: string,
  res: Response,
  host: string,
  deniedHint?: string,
): Promise<RegistryError> {
  const text = method === 'HEAD' ? '' : await res.text(64 * 1024);
  let code: string | undefined;
  let message = '';
  try {
    const e = JSON.parse(text)?.errors?.[0];
    if (e) {
      code = e.code;
      message = e.message ?? '';
    }
  } catch {
    message = text.slice(0, 200).trim();
  }
  const path = url.replace(/^https?:\/\/[^/]+/, '');
  let hint = '';
  if (deniedHint) hint = deniedHint;
  else if (res.status === 401) hint = `; run \`berth login ${host}\``;
  else if (res.status === 403) hint = `; your account lacks permission for this repository`;
  else if (res.status === 405) hint = '; the registry does not allow this operation (deletes disabled?)';
  const label = [code, message].filter(Boolean).join(': ');
  return new RegistryError(
    `${method} ${path} on ${host}: ${res.status}${label ? ` ${label}` : ''}${hint}`,
    res.status,
    code,
    RETRY_STATUS.has(res.status),
  );
}
