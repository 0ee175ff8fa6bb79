// Where berth may connect on its own: the one address policy for every URL the server follows — webhook receivers,
// pull-through upstreams (their blob redirects and token realms included) and the JWKS URLs of trusted issuers.
// Loopback, private, link-local, metadata and other special-purpose addresses are refused unless the configuration
// allows private networks (`allowPrivateNetworks: true`, or a list of CIDRs that alone are allowed).
//
// The check runs on the address actually connected to: in the DNS lookup the socket itself uses (so a name that
// resolves to a public address for a pre-check and to 127.0.0.1 for the connection — DNS rebinding — gains
// nothing), on literal IPs (which skip DNS), and once more on the connected socket's remote address. Every hop of a
// redirect and every token realm is a new connection through the same check.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type Socket } from 'node:net';
import { Agent, buildConnector, fetch as undiciFetch, type Dispatcher } from 'undici';

/** `allowPrivateNetworks` as configured: false (default), true (any address), or CIDRs/IPs that are allowed. */
export type PrivateNetworks = boolean | string[] | undefined;

/** Addresses nobody reaches unless allowed: loopback, private, CGNAT, link-local (cloud metadata), multicast, … */
const BLOCKED = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv4');
}
// Also NAT64 local-use (RFC 8215), Teredo and discard-only; IPv4 embedded in IPv6 is unwrapped below (_unmap).
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['fd00:ec2::', 32],
  ['64:ff9b:1::', 48],
  ['2001::', 32],
  ['100::', 64],
] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv6');
}

/**
 * The IPv4 address an IPv6 address carries, when it carries one that a network may route to: IPv4-mapped
 * (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d, RFC 6052) and 6to4 (2002:AABB:CCDD::).
 * `64:ff9b::7f00:1` reaches 127.0.0.1 through a NAT64 gateway, so it is judged as 127.0.0.1.
 */
function _unmap(address: string): string {
  if (isIP(address) !== 6) return address;
  const g = _groups(address);
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zero(0, 5) && g[5] === 0xffff) return v4(g[6], g[7]);
  if (zero(0, 6) && (g[6] !== 0 || g[7] > 1)) return v4(g[6], g[7]);
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return v4(g[6], g[7]);
  if (g[0] === 0x2002) return v4(g[1], g[2]);
  return address;
}

/** The eight 16-bit groups of an IPv6 address (which may end in a dotted IPv4 part). */
function _groups(address: string): number[] {
  let a = address.split('%')[0];
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (dotted) {
    const [, b1, b2, b3, b4] = dotted.map(Number);
    a = `${a.slice(0, dotted.index)}${((b1 << 8) | b2).toString(16)}:${((b3 << 8) | b4).toString(16)}`;
  }
  const [head, tail] = a.split('::');
  const parse = (part: string | undefined) => (part ? part.split(':').map((x) => parseInt(x, 16)) : []);
  const h = parse(head);
  const t = parse(tail);
  return tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
}

export function isBlockedAddress(address: string): boolean {
  const a = _unmap(address);
  const family = isIP(a);
  if (family === 0) return true;
  return BLOCKED.check(a, family === 6 ? 'ipv6' : 'ipv4');
}

/** A connection refused by the policy; `blocked` lets callers tell it from a network failure. */
export class BlockedAddressError extends Error {
  readonly blocked = true;
  constructor(
    readonly host: string,
    readonly address: string,
  ) {
    super(
      `${host === address ? address : `${host} (${address})`} is a loopback, private, link-local or otherwise internal address; not allowed (allowPrivateNetworks)`,
    );
  }
}

export function isBlockedError(e: unknown): e is BlockedAddressError {
  for (
    let x = e as { blocked?: unknown; cause?: unknown } | undefined, i = 0;
    x && i < 4;
    x = x.cause as typeof x, i++
  ) {
    if (x.blocked === true) return true;
  }
  return false;
}

export interface AddressPolicy {
  /** Whether a connection to this IP address may be made. */
  allows(address: string): boolean;
  /** Throws BlockedAddressError when `host` is a literal IP the policy refuses (names are checked on lookup). */
  checkHost(host: string): void;
  /** A dns.lookup for net/tls/http options that fails with BlockedAddressError on a refused address. */
  lookup: typeof dnsLookup;
}

/** What is wrong with an allowPrivateNetworks value (an entry that is not an IP or CIDR), if anything. */
export function privateNetworksProblem(value: PrivateNetworks): string | undefined {
  const bad = Array.isArray(value) ? value.find((entry) => !parseCidr(entry)) : undefined;
  return bad === undefined
    ? undefined
    : `allowPrivateNetworks: "${bad}" is not an IP address or CIDR such as 10.0.0.0/8 or fd00::/8`;
}

export function addressPolicy(allow: PrivateNetworks): AddressPolicy {
  let allowed: BlockList | undefined;
  if (Array.isArray(allow)) {
    allowed = new BlockList();
    for (const entry of allow) {
      const cidr = parseCidr(entry);
      if (!cidr) throw new Error(privateNetworksProblem(allow));
      allowed.addSubnet(cidr.net, cidr.bits, cidr.family);
    }
  }
  const allows = (address: string): boolean => {
    if (allow === true) return true;
    const a = _unmap(address);
    if (!isBlockedAddress(a)) return true;
    const family = isIP(a);
    return !!allowed && family !== 0 && allowed.check(a, family === 6 ? 'ipv6' : 'ipv4');
  };
  const checkHost = (host: string) => {
    const h = host.replace(/^\[|\]$/g, '');
    if (isIP(h) && !allows(h)) throw new BlockedAddressError(h, h);
  };
  type Callback = (err: Error | null, address: string | LookupAddress[], family?: number) => void;
  const lookup = ((host: string, opts: object | Callback, callback?: Callback) => {
    const [options, cb] = typeof opts === 'function' ? [{}, opts] : [opts, callback!];
    dnsLookup(host, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return cb(err, '');
      const bad = addresses.find((a) => !allows(a.address));
      if (bad) return cb(new BlockedAddressError(host, bad.address), '');
      if ((options as { all?: boolean }).all) return cb(null, addresses);
      cb(null, addresses[0].address, addresses[0].family);
    });
  }) as unknown as typeof dnsLookup;
  return { allows, checkHost, lookup };
}

/**
 * An undici dispatcher whose every connection obeys `policy` (checked before connecting and on the connected
 * socket). Give it to every request that follows a URL from outside: redirects reuse it hop by hop.
 */
export function guardedAgent(policy: AddressPolicy, opts: { connections?: number } = {}): Agent {
  const base = buildConnector({ lookup: policy.lookup } as buildConnector.BuildOptions);
  const connect: buildConnector.connector = (options, callback) => {
    try {
      policy.checkHost(options.hostname);
    } catch (e) {
      return callback(e as Error, null);
    }
    base(options, (err, socket) => {
      if (err || !socket) return callback(err ?? new Error('no socket'), null);
      const remote = (socket as Socket).remoteAddress;
      if (remote && !policy.allows(remote)) {
        socket.destroy();
        return callback(new BlockedAddressError(options.hostname, remote), null);
      }
      callback(null, socket);
    });
  };
  return new Agent({ connections: opts.connections ?? 16, keepAliveTimeout: 30_000, connect });
}

/** A fetch (for libraries that take one, e.g. jose's JWKS) that goes through a guarded agent. */
export function guardedFetch(policy: AddressPolicy): (url: string, init?: RequestInit) => Promise<Response> {
  const dispatcher: Dispatcher = guardedAgent(policy, { connections: 2 });
  return (url, init) => undiciFetch(url, { ...(init as object), dispatcher }) as unknown as Promise<Response>;
}

/** `10.0.0.0/8`, `fd00::/8` or a single address (a /32 or /128); undefined when it is neither. */
export function parseCidr(entry: string): { net: string; bits: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [net, len, extra] = entry.split('/');
  const family = isIP(net ?? '');
  if (family === 0 || extra !== undefined) return undefined;
  const max = family === 4 ? 32 : 128;
  const bits = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!(bits >= 0 && bits <= max)) return undefined;
  return { net, bits, family: family === 4 ? 'ipv4' : 'ipv6' };
}
