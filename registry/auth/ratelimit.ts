// Brute-force protection: failed logins are counted per account and per client address in a sliding window; once
// either count reaches its limit, further attempts (even correct ones) get 429 + Retry-After until old failures age
// out. A success clears the account's count only — an attacker holding one valid account can't reset an address.
import { LRUCache } from 'lru-cache';

export interface RateLimitOptions {
  maxFailures: number;
  maxFailuresPerAddress: number;
  windowMs: number;
}

export class LoginLimiter {
  private readonly failures = new LRUCache<string, number[]>({ max: 50_000 });

  constructor(private readonly opts: RateLimitOptions) {}

  /** Seconds to wait before trying again, or 0 when an attempt is allowed now. */
  retryAfter(account: string | undefined, address: string | undefined, now = Date.now()): number {
    let wait = 0;
    for (const [key, max] of this._keys(account, address)) {
      const times = this._recent(key, now);
      if (times.length >= max) wait = Math.max(wait, Math.ceil((times[times.length - max] + this.opts.windowMs - now) / 1000));
    }
    return wait;
  }

  fail(account: string | undefined, address: string | undefined, now = Date.now()): void {
    for (const [key] of this._keys(account, address)) this.failures.set(key, [...this._recent(key, now), now].slice(-1000));
  }

  succeed(account: string | undefined): void {
    if (account !== undefined) this.failures.delete(`account:${account}`);
  }

  private _keys(account: string | undefined, address: string | undefined): Array<[string, number]> {
    const keys: Array<[string, number]> = [];
    if (account !== undefined) keys.push([`account:${account}`, this.opts.maxFailures]);
    if (address !== undefined) keys.push([`address:${address}`, this.opts.maxFailuresPerAddress]);
    return keys;
  }

  private _recent(key: string, now: number): number[] {
    return (this.failures.get(key) ?? []).filter((t) => t > now - this.opts.windowMs);
  }
}
