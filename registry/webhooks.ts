// Webhooks: CloudEvents on push, delete and pull. (Implementation below the types.)
export interface WebhookConfig {
  url: string;
  secret?: string;
  events?: Array<'push' | 'delete' | 'pull'>;
  repositories?: string[];
  timeout?: string;
  retries?: number;
  allowPrivateNetworks?: boolean;
}

import { createHmac, randomUUID } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP } from 'node:net';
import picomatch from 'picomatch';
import { parseDuration } from './config.js';
import type { Logger } from './log.js';

export type EventKind = 'push' | 'delete' | 'pull';

export interface RegistryEvent {
  kind: EventKind;
  repository: string;
  /** The tag, when the request named one. */
  tag?: string;
  digest?: string;
  mediaType?: string;
  size?: number;
  /** Who did it (token subject), when auth is on. */
  actor?: string;
}

const TYPES: Record<EventKind, string> = { push: 'dev.berth.artifact.pushed', delete: 'dev.berth.artifact.deleted', pull: 'dev.berth.artifact.pulled' };
const MAX_QUEUE = 10_000;

/** Addresses a webhook may never reach unless allowPrivateNetworks: loopback, private, link-local, metadata, … */
const BLOCKED = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['fd00:ec2::', 32]] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv6');
}

export function isBlockedAddress(address: string): boolean {
  // IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address in disguise.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return isBlockedAddress(mapped[1]);
  const family = isIP(address);
  if (family === 0) return true;
  return BLOCKED.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** The CloudEvents 1.0 JSON document (structured mode) for `e`. */
export function cloudEvent(e: RegistryEvent, source: string): Record<string, unknown> {
  return {
    specversion: '1.0',
    id: randomUUID(),
    source,
    type: TYPES[e.kind],
    time: new Date().toISOString(),
    subject: e.tag ? `${e.repository}:${e.tag}` : e.digest ? `${e.repository}@${e.digest}` : e.repository,
    datacontenttype: 'application/json',
    data: e,
  };
}

/** `sha256=<hex>` HMAC of the exact body bytes; receivers recompute it with the shared secret. */
export function signature(secret: string, body: string | Buffer): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
}

interface Target {
  config: WebhookConfig;
  events: Set<EventKind>;
  repo: (name: string) => boolean;
  timeoutMs: number;
  retries: number;
}

export interface Webhooks {
  emit(e: RegistryEvent): void;
  /** Resolves when every queued delivery finished (delivered or given up). */
  idle(): Promise<void>;
  close(): void;
}

export function createWebhooks(configs: WebhookConfig[], log: Logger, opts: { source?: string; backoffMs?: number } = {}): Webhooks {
  const targets: Target[] = configs.map((c) => ({
    config: c,
    events: new Set(c.events ?? ['push', 'delete']),
    repo: c.repositories?.length ? picomatch(c.repositories, { dot: true }) : () => true,
    timeoutMs: c.timeout ? parseDuration(c.timeout) : 5_000,
    retries: c.retries ?? 5,
  }));
  const source = opts.source ?? 'berth';
  const backoff = opts.backoffMs ?? 500;
  let pending = 0;
  let closed = false;
  let waiters: Array<() => void> = [];
  const settle = () => {
    if (--pending === 0) {
      for (const w of waiters) w();
      waiters = [];
    }
  };

  const deliver = async (t: Target, body: string, id: string) => {
    for (let attempt = 0; attempt <= t.retries && !closed; attempt++) {
      if (attempt) await new Promise((r) => setTimeout(r, backoff * 2 ** (attempt - 1)).unref());
      try {
        const status = await _post(t, body);
        if (status >= 200 && status < 300) return;
        if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
          log.warn('webhook refused', { url: t.config.url, status, id });
          return;
        }
        log.debug('webhook failed, will retry', { url: t.config.url, status, attempt, id });
      } catch (e) {
        if ((e as { blocked?: boolean }).blocked) {
          log.warn('webhook not sent: destination is a private, loopback or link-local address (allowPrivateNetworks: false)', { url: t.config.url });
          return;
        }
        log.debug('webhook failed, will retry', { url: t.config.url, err: (e as Error).message, attempt, id });
      }
    }
    log.warn('webhook given up', { url: t.config.url, retries: t.retries, id });
  };

  return {
    emit(e) {
      if (closed) return;
      for (const t of targets) {
        if (!t.events.has(e.kind) || !t.repo(e.repository)) continue;
        if (pending >= MAX_QUEUE) {
          log.warn('webhook queue full, event dropped', { url: t.config.url, kind: e.kind });
          continue;
        }
        const event = cloudEvent(e, source);
        pending++;
        void deliver(t, JSON.stringify(event), event.id as string).finally(settle);
      }
    },
    idle: () => (pending === 0 ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
    close() {
      closed = true;
    },
  };
}

/** POSTs `body`; the address check runs at connect time on the resolved address (no DNS-rebinding gap). */
function _post(t: Target, body: string): Promise<number> {
  const url = new URL(t.config.url);
  const allow = t.config.allowPrivateNetworks ?? false;
  const headers: Record<string, string> = {
    'Content-Type': 'application/cloudevents+json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    'User-Agent': 'berth-webhook',
  };
  if (t.config.secret) headers['X-Berth-Signature'] = signature(t.config.secret, body);
  const lookup = (host: string, options: object, cb: (err: Error | null, address: string | LookupAddress[], family?: number) => void) => {
    dnsLookup(host, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return cb(err, '');
      const bad = addresses.find((a) => !allow && isBlockedAddress(a.address));
      if (bad) return cb(Object.assign(new Error(`webhook address ${bad.address} is not allowed`), { blocked: true }), '');
      if ((options as { all?: boolean }).all) return cb(null, addresses);
      cb(null, addresses[0].address, addresses[0].family);
    });
  };
  return new Promise((resolve, reject) => {
    // A literal IP skips DNS: check it here.
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) && !allow && isBlockedAddress(host)) {
      return reject(Object.assign(new Error(`webhook address ${host} is not allowed`), { blocked: true }));
    }
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method: 'POST', headers, lookup: lookup as never, timeout: t.timeoutMs }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error(`no answer within ${t.timeoutMs} ms`)));
    req.once('error', reject);
    req.end(body);
  });
}
