// Who the client is and which URL it used, when berth runs behind a reverse proxy (config `http.trustedProxies`).
// X-Forwarded-Proto/Host/For and RFC 7239 `Forwarded` are claims anyone can send: they are believed only when the
// direct peer (the socket's remote address) is one of the trusted proxies, and then only as far back as the chain
// of trusted hops goes — the first address from the right that is not a trusted proxy is the client (the algorithm
// of nginx's real_ip_recursive and Express's `trust proxy`). From any other peer the headers change nothing.
// Used for the token realm (auth/middleware.ts), the client address of request logs (server.ts), login throttling
// (auth/ratelimit.ts) and the audit log (audit.ts). Location headers are relative, so a proxy needs nothing there.
// spec: RFC 7239 (Forwarded); X-Forwarded-* are de facto (MDN "X-Forwarded-For").
import type { IncomingHttpHeaders } from 'node:http';
import { BlockList, isIP } from 'node:net';
import { parseCidr } from './net-policy.js';

/** Whether an address is a trusted proxy. */
export type TrustedProxies = (address: string | undefined) => boolean;

export interface Client {
  /** The client's IP: the socket's peer, or what trusted proxies say it is. */
  address?: string;
  /** The scheme and Host the client used, when a trusted proxy said so. */
  proto?: 'http' | 'https';
  host?: string;
  /** Whether the values came from a trusted proxy's headers. */
  forwarded: boolean;
}

const NOBODY: TrustedProxies = () => false;

/** Compiles `http.trustedProxies`; throws naming the bad entry. */
export function trustedProxies(cidrs: string[] | undefined): TrustedProxies {
  if (!cidrs?.length) return NOBODY;
  const list = new BlockList();
  for (const entry of cidrs) {
    const cidr = parseCidr(entry);
    if (!cidr)
      throw new Error(
        `http.trustedProxies: "${entry.slice(0, 80)}" is not an IP address or CIDR such as 10.0.0.0/8, 127.0.0.1 or fd00::/8`,
      );
    list.addSubnet(cidr.net, cidr.bits, cidr.family);
  }
  return (address) => {
    const a = unmapped(address);
    const family = a ? isIP(a) : 0;
    return family !== 0 && list.check(a!, family === 6 ? 'ipv6' : 'ipv4');
  };
}

/** `::ffff:1.2.3.4` (an IPv4 peer on a dual-stack socket) → `1.2.3.4`. */
export function unmapped(address: string | undefined): string | undefined {
  return address?.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
}

const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(:\d{1,5})?$/;

interface Request {
  socket?: { remoteAddress?: string } | null;
  headers: IncomingHttpHeaders;
}

const cache = new WeakMap<object, Client>();

/** The client behind `req` (computed once per request). */
export function resolveClient(req: Request, trusted: TrustedProxies = NOBODY): Client {
  let client = cache.get(req);
  if (!client) {
    client = _resolve(req, trusted);
    cache.set(req, client);
  }
  return client;
}

function _resolve(req: Request, trusted: TrustedProxies): Client {
  const peer = unmapped(req.socket?.remoteAddress);
  if (!trusted(peer)) return { address: peer, forwarded: false };
  const forwarded = _header(req.headers.forwarded);
  if (forwarded) {
    const elements = _parseForwarded(forwarded);
    if (elements.length) {
      // Each proxy appends one element whose `for` is the hop before it: walk back while that hop is trusted.
      let i = elements.length - 1;
      while (i > 0 && trusted(_node(elements[i].for))) i--;
      const el = elements[i];
      return {
        address: _node(el.for) ?? peer,
        proto: _proto(el.proto),
        host: _host(el.host),
        forwarded: true,
      };
    }
  }
  const chain = _list(req.headers['x-forwarded-for']);
  let j = chain.length - 1;
  while (j > 0 && trusted(_node(chain[j]))) j--;
  const proto = _proto(_last(req.headers['x-forwarded-proto']));
  let host = _host(_last(req.headers['x-forwarded-host']));
  const port = _last(req.headers['x-forwarded-port']);
  // X-Forwarded-Host usually carries no port (nginx's $host); X-Forwarded-Port completes it when not the default.
  const hasPort = host !== undefined && /:\d+$/.test(host.replace(/^\[[^\]]*\]/, ''));
  if (host && !hasPort && port && /^\d{1,5}$/.test(port) && port !== (proto === 'https' ? '443' : '80'))
    host = `${host}:${port}`;
  return { address: (j >= 0 ? _node(chain[j]) : undefined) ?? peer, proto, host, forwarded: true };
}

function _header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

function _list(v: string | string[] | undefined): string[] {
  const text = _header(v);
  return text
    ? text
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

/** The value the nearest proxy set (the last of a list): the only one a trusted peer vouches for. */
function _last(v: string | string[] | undefined): string | undefined {
  const list = _list(v);
  return list[list.length - 1];
}

function _proto(v: string | undefined): 'http' | 'https' | undefined {
  const p = v?.toLowerCase();
  return p === 'http' || p === 'https' ? p : undefined;
}

function _host(v: string | undefined): string | undefined {
  return v && HOST.test(v) ? v.toLowerCase() : undefined;
}

/** An address from `for=` or X-Forwarded-For, without a port: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`. */
function _node(v: string | undefined): string | undefined {
  if (!v) return undefined;
  if (isIP(v)) return unmapped(v);
  const m = /^\[([0-9A-Fa-f:.]+)\](?::\d+)?$/.exec(v) ?? /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(v);
  return m && isIP(m[1]) ? unmapped(m[1]) : undefined;
}

/** RFC 7239 §4: `for=192.0.2.43;proto=https, for="[2001:db8::1]:4711";host=a.example` → one record per element. */
function _parseForwarded(text: string): Array<Record<string, string>> {
  const out: Array<Record<string, string>> = [];
  // A token or a quoted-string per value; commas separate elements, semicolons pairs.
  // Tokens are RFC 9110 tchars (plus `:` and brackets, which some proxies send unquoted).
  const re = /\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[-!#$%&'*+.^_`|~0-9A-Za-z:[\]]*)\s*([;,]|$)/y;
  let el: Record<string, string> = {};
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) return []; // malformed: believe none of it
    el[m[1].toLowerCase()] = m[2].startsWith('"') ? m[2].slice(1, -1).replace(/\\(.)/g, '$1') : m[2];
    pos = re.lastIndex;
    if (m[3] !== ';') {
      out.push(el);
      el = {};
    }
    if (m[0] === '' || (m[3] === '' && pos < text.length)) return [];
  }
  return out.slice(0, 64);
}
