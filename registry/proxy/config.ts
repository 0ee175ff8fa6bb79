// `proxy:` configuration and the request → upstream mapping of the pull-through cache.
//
// A request for repository N reaches an upstream in one of three ways (first match wins):
//   1. containerd's `?ns=<host>` (hosts.toml mirrors): the upstream whose `host` (or prefix, or name) is <host>;
//      N is the remote name;
//   2. a path prefix: N = `<prefix>/<remote name>` (`/v2/docker.io/library/alpine/…`);
//   3. the `default` upstream, for docker's `registry-mirrors` (`/v2/library/alpine/…`), when N matches its `allow`
//      and no `ns` names another registry.
// Anything else is a hosted repository. Cached content is stored under `<prefix>/<remote name>` whichever way it was
// asked for, so the three ways share one cache, and hosted repositories (never under a prefix) cannot collide.
import { isIP } from 'node:net';
import picomatch from 'picomatch';
import { isValidName } from '../../spec/index.js';
import type { LoadedProxyConfig, LoadedUpstreamConfig } from '../../spec/config-schema.js';
import { parseDuration } from '../../spec/units.js';
import { ConfigError } from '../config.js';
import { addressPolicy, privateNetworksProblem, type AddressPolicy } from '../net-policy.js';

export type { LoadedProxyConfig, LoadedUpstreamConfig, ProxyConfig, UpstreamConfig } from '../../spec/config-schema.js';

export interface Upstream {
  name: string;
  url: string;
  prefix: string;
  host: string;
  isDefault: boolean;
  tagTtlMs: number;
  timeoutMs: number;
  allowPush: boolean;
  /** Where this upstream's requests may connect (every hop, realms included). */
  policy: AddressPolicy;
  config: LoadedUpstreamConfig;
  /** Whether the remote repository may be fetched through this mirror. */
  allows(remote: string): boolean;
}

/** Validates and normalises `proxy.upstreams`; throws ConfigError naming the bad entry. */
export function resolveUpstreams(config: LoadedProxyConfig | undefined): Upstream[] {
  const out: Upstream[] = [];
  for (const [i, u] of (config?.upstreams ?? []).entries()) {
    const where = `proxy.upstreams[${i}] (${u.name})`;
    const prefix = u.prefix ?? u.name;
    if (!isValidName(prefix))
      throw new ConfigError(
        `${where}: prefix "${prefix}" must be a valid repository path such as docker.io or mirror/quay`,
      );
    if (
      out.some((o) => o.prefix === prefix || o.prefix.startsWith(`${prefix}/`) || prefix.startsWith(`${o.prefix}/`))
    ) {
      throw new ConfigError(`${where}: prefix "${prefix}" overlaps another upstream's`);
    }
    if (u.default && out.some((o) => o.isDefault))
      throw new ConfigError(`${where}: only one upstream can be the default`);
    const url = new URL(u.url);
    const problem = privateNetworksProblem(u.allowPrivateNetworks);
    if (problem) throw new ConfigError(`${where}: ${problem}`);
    const policy = addressPolicy(u.allowPrivateNetworks);
    // An upstream on a literal internal address could never be reached: say so at start-up, not on every pull.
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (
      (isIP(host) && !policy.allows(host)) ||
      (/^localhost$|\.localhost$/i.test(host) && !policy.allows('127.0.0.1'))
    ) {
      throw new ConfigError(
        `${where}: ${url.host} is a loopback or private address; set allowPrivateNetworks: true (or list its network) to mirror it`,
      );
    }
    const matcher = u.allow?.length ? picomatch(u.allow, { dot: true }) : () => true;
    out.push({
      name: u.name,
      url: url.origin,
      prefix,
      host: u.host ?? url.host,
      isDefault: u.default,
      tagTtlMs: parseDuration(u.tagTtl),
      timeoutMs: parseDuration(u.timeout),
      allowPush: u.allowPush,
      policy,
      config: u,
      allows: (remote) => matcher(remote),
    });
  }
  return out;
}

export interface Mapping {
  upstream: Upstream;
  /** The repository name on the upstream. */
  remote: string;
  /** Where the cache stores it: `<prefix>/<remote>`. */
  local: string;
}

/** Maps a requested repository (and containerd's `ns`) to an upstream, or undefined for a hosted repository. */
export function mapRepository(upstreams: Upstream[], name: string, ns: string | undefined): Mapping | undefined {
  const mapped = (upstream: Upstream, remote: string): Mapping | undefined => {
    const local = `${upstream.prefix}/${remote}`;
    return isValidName(local) ? { upstream, remote, local } : undefined;
  };
  if (ns) {
    const byHost = upstreams.find((u) => u.host === ns || u.prefix === ns || u.name === ns);
    if (byHost) return mapped(byHost, name);
  }
  for (const u of upstreams) {
    if (name.startsWith(`${u.prefix}/`)) return mapped(u, name.slice(u.prefix.length + 1));
  }
  // An `ns` naming another registry (berth itself, say) is not a request for the default upstream's content.
  const fallback = ns ? undefined : upstreams.find((u) => u.isDefault);
  if (fallback?.allows(name)) return mapped(fallback, name);
  return undefined;
}
