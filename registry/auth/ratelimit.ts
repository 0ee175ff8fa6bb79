// Brute-force protection that cannot be turned into a lockout. Failed logins are counted in a sliding window under
// three keys, and an attempt (even a correct one) gets 429 + Retry-After when
// - this address failed `maxFailures` times for this account (the usual guesser: one address, one account);
// - this address failed `maxFailuresPerAddress` times over all accounts (spraying one password over many users);
// - the account failed `maxFailuresPerAccount` times over all addresses (a distributed guesser) AND this address is
//   one of those that failed for it: each attacking address then gets one guess per window, while an address that
//   has not failed for the account — the real user's — still logs in.
// An attacker elsewhere can therefore slow down guesses on an account but never lock its owner out (the lockout
// DoS that per-account-only counting allows; distribution has no lockout at all, Harbor and GitLab throttle per
// address). Addresses are compared as the client's network: IPv4, or the /64 of IPv6 (one host owns a whole /64).
// A success clears only its own account-and-address count: a valid account can't reset an address or an account.
import { isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';
import { parseDuration } from '../../spec/units.js';
import type { LoadedAuthConfig } from './config.js';

export interface RateLimitOptions {
  maxFailures: number;
  maxFailuresPerAddress: number;
  maxFailuresPerAccount: number;
  windowMs: number;
}

/**
 * The limiter as auth uses it: LoginLimiter in this process, or one whose state lives in the cluster's primary
 * (registry/cluster.ts), shared by every worker.
 */
export interface Limiter {
  retryAfter(account: string | undefined, address: string | undefined): number | Promise<number>;
  fail(account: string | undefined, address: string | undefined): void | Promise<void>;
  succeed(account: string | undefined, address: string | undefined): void | Promise<void>;
}

/** The limits of `auth.rateLimit` as loaded (the schema's defaults filled in). */
export function limiterOptions(rl: LoadedAuthConfig['rateLimit']): RateLimitOptions {
  return {
    maxFailures: rl.maxFailures,
    maxFailuresPerAddress: rl.maxFailuresPerAddress,
    maxFailuresPerAccount: rl.maxFailuresPerAccount,
    windowMs: parseDuration(rl.window),
  };
}

/** A caller with no known address (in-process requests) counts as one address. */
const UNKNOWN = 'unknown';

export class LoginLimiter implements Limiter {
  private readonly failures = new LRUCache<string, number[]>({ max: 50_000 });

  constructor(private readonly opts: RateLimitOptions) {}

  /** Seconds to wait before trying again, or 0 when an attempt is allowed now. */
  retryAfter(account: string | undefined, address: string | undefined, now = Date.now()): number {
    const from = addressKey(address);
    const limits: Array<[string, number]> = [[`address:${from}`, this.opts.maxFailuresPerAddress]];
    if (account !== undefined) {
      const pair = `pair:${account}\n${from}`;
      const underAttack = this._recent(`account:${account}`, now).length >= this.opts.maxFailuresPerAccount;
      limits.push([pair, underAttack ? 1 : this.opts.maxFailures]);
    }
    let wait = 0;
    for (const [key, max] of limits) {
      const times = this._recent(key, now);
      if (times.length >= max)
        wait = Math.max(wait, Math.ceil((times[times.length - max] + this.opts.windowMs - now) / 1000));
    }
    return wait;
  }

  fail(account: string | undefined, address: string | undefined, now = Date.now()): void {
    const from = addressKey(address);
    const keys = [`address:${from}`];
    if (account !== undefined) keys.push(`account:${account}`, `pair:${account}\n${from}`);
    for (const key of keys) this.failures.set(key, [...this._recent(key, now), now].slice(-1000));
  }

  succeed(account: string | undefined, address: string | undefined): void {
    if (account !== undefined) this.failures.delete(`pair:${account}\n${addressKey(address)}`);
  }

  private _recent(key: string, now: number): number[] {
    return (this.failures.get(key) ?? []).filter((t) => t > now - this.opts.windowMs);
  }
}

/** The network an address stands for: `::ffff:1.2.3.4` → `1.2.3.4`; IPv6 → its /64 (`2001:db8:1:2::/64`). */
export function addressKey(address: string | undefined): string {
  if (!address) return UNKNOWN;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!isIPv6(address)) return address;
  return `${_expandIPv6(address).slice(0, 4).join(':')}::/64`;
}

/** The first groups of an IPv6 address (an embedded IPv4 tail counts as two), lowercase hex without leading zeros. */
function _expandIPv6(address: string): string[] {
  const [head, tail] = address.toLowerCase().split('%')[0].split('::');
  const part = (s: string | undefined) => (s ? s.split(':') : []);
  const width = (groups: string[]) => groups.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const groups =
    tail === undefined
      ? part(head)
      : [...part(head), ...Array(8 - width(part(head)) - width(part(tail))).fill('0'), ...part(tail)];
  return groups.map((g) => (g.includes('.') ? g : parseInt(g, 16).toString(16)));
}
