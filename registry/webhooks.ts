// Webhooks: CloudEvents on push, delete and pull. (Implementation below the types.)
import type { WebhookConfig } from '../spec/config-schema.js';
export type { WebhookConfig };

import { createHmac, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import picomatch from 'picomatch';
import { parseDuration } from '../spec/units.js';
import { ConfigError } from './config.js';
import type { Logger } from './log.js';
import { addressPolicy, isBlockedError, privateNetworksProblem, type AddressPolicy } from './net-policy.js';

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

const TYPES: Record<EventKind, string> = {
  push: 'dev.berth.artifact.pushed',
  delete: 'dev.berth.artifact.deleted',
  pull: 'dev.berth.artifact.pulled',
};
const MAX_QUEUE = 10_000;

// The address policy is shared with every other URL the server follows (net-policy.ts).
export { isBlockedAddress } from './net-policy.js';

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
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

interface Target {
  config: WebhookConfig;
  events: Set<EventKind>;
  repo: (name: string) => boolean;
  timeoutMs: number;
  retries: number;
  policy: AddressPolicy;
}

export interface Webhooks {
  emit(e: RegistryEvent): void;
  /** Resolves when every queued delivery finished (delivered or given up). */
  idle(): Promise<void>;
  close(): void;
}

export function createWebhooks(
  configs: WebhookConfig[],
  log: Logger,
  opts: { source?: string; backoffMs?: number } = {},
): Webhooks {
  for (const [i, c] of configs.entries()) {
    const problem = privateNetworksProblem(c.allowPrivateNetworks);
    if (problem) throw new ConfigError(`webhooks[${i}]: ${problem}`);
  }
  const targets: Target[] = configs.map((c) => ({
    config: c,
    events: new Set(c.events ?? ['push', 'delete']),
    repo: c.repositories?.length ? picomatch(c.repositories, { dot: true }) : () => true,
    timeoutMs: c.timeout ? parseDuration(c.timeout) : 5_000,
    retries: c.retries ?? 5,
    policy: addressPolicy(c.allowPrivateNetworks ?? false),
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
        if (isBlockedError(e)) {
          log.warn(
            'webhook not sent: destination is a private, loopback or link-local address (allowPrivateNetworks: false)',
            { url: t.config.url },
          );
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
  const headers: Record<string, string> = {
    'Content-Type': 'application/cloudevents+json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    'User-Agent': 'berth-webhook',
  };
  if (t.config.secret) headers['X-Berth-Signature'] = signature(t.config.secret, body);
  return new Promise((resolve, reject) => {
    // A literal IP skips DNS: check it here; names are checked in the lookup the socket uses.
    try {
      t.policy.checkHost(url.hostname);
    } catch (e) {
      return reject(e);
    }
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method: 'POST', headers, lookup: t.policy.lookup, timeout: t.timeoutMs }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error(`no answer within ${t.timeoutMs} ms`)));
    req.once('error', reject);
    req.end(body);
  });
}
