// Webhooks: CloudEvents on push, delete and pull. (Implementation below the types.)
import type { LoadedWebhookConfig, WebhookConfig } from '../spec/config-schema.js';
export type { LoadedWebhookConfig, WebhookConfig };

import { createHmac, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import picomatch from 'picomatch';
import { type Dispatcher, request } from 'undici';
import { backoffDelay, RETRY_STATUS } from '../spec/retry.js';
import { parseDuration } from '../spec/units.js';
import { ConfigError } from './config.js';
import type { Logger } from './log.js';
import { addressPolicy, guardedAgent, isBlockedError, privateNetworksProblem } from './net-policy.js';

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
  config: LoadedWebhookConfig;
  events: Set<EventKind>;
  repo: (name: string) => boolean;
  timeoutMs: number;
  retries: number;
  /** undici, as client/ uses; every connection checked against the address policy (net-policy.ts). */
  dispatcher: Dispatcher;
}

export interface Webhooks {
  emit(e: RegistryEvent): void;
  /** Resolves when every queued delivery finished (delivered or given up). */
  idle(): Promise<void>;
  close(): void;
}

export function createWebhooks(
  configs: LoadedWebhookConfig[],
  log: Logger,
  opts: { source?: string; backoffMs?: number } = {},
): Webhooks {
  for (const [i, c] of configs.entries()) {
    const problem = privateNetworksProblem(c.allowPrivateNetworks);
    if (problem) throw new ConfigError(`webhooks[${i}]: ${problem}`);
  }
  const targets: Target[] = configs.map((c) => ({
    config: c,
    events: new Set(c.events),
    repo: c.repositories?.length ? picomatch(c.repositories, { dot: true }) : () => true,
    timeoutMs: parseDuration(c.timeout),
    retries: c.retries,
    dispatcher: guardedAgent(addressPolicy(c.allowPrivateNetworks), { connections: 4 }),
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

  // Retries follow the one policy of spec/retry.ts (the registry client's too): exponential backoff with jitter,
  // Retry-After honoured up to a minute. A receiver's 2xx is delivered; its other 4xx (bad URL, refused) is final.
  const deliver = async (t: Target, body: string, id: string) => {
    let retryAfter: string | undefined;
    for (let attempt = 0; attempt <= t.retries && !closed; attempt++) {
      if (attempt) {
        await sleep(backoffDelay(attempt - 1, { baseMs: backoff, retryAfter, maxRetryAfterMs: 60_000 }), undefined, {
          ref: false,
        });
      }
      try {
        const res = await _post(t, body);
        retryAfter = res.retryAfter;
        if (res.status >= 200 && res.status < 300) return;
        if (res.status >= 400 && res.status < 500 && !RETRY_STATUS.has(res.status)) {
          log.warn('webhook refused', { url: t.config.url, status: res.status, id });
          return;
        }
        log.debug('webhook failed, will retry', { url: t.config.url, status: res.status, attempt, id });
      } catch (e) {
        retryAfter = undefined;
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
      for (const t of targets) void t.dispatcher.close().catch(() => {});
    },
  };
}

/**
 * POSTs `body` through the target's guarded dispatcher: the address check runs at connect time on the resolved
 * address and again on the connected socket (no DNS-rebinding gap). Redirects are not followed.
 */
async function _post(t: Target, body: string): Promise<{ status: number; retryAfter?: string }> {
  const headers: Record<string, string> = {
    'content-type': 'application/cloudevents+json; charset=utf-8',
    'user-agent': 'berth-webhook',
  };
  if (t.config.secret) headers['x-berth-signature'] = signature(t.config.secret, body);
  const res = await request(t.config.url, {
    method: 'POST',
    headers,
    body,
    dispatcher: t.dispatcher,
    signal: AbortSignal.timeout(t.timeoutMs),
    headersTimeout: t.timeoutMs,
    bodyTimeout: t.timeoutMs,
  });
  await res.body.dump({ limit: 64 * 1024 }).catch(() => {});
  const ra = res.headers['retry-after'];
  return { status: res.statusCode, retryAfter: Array.isArray(ra) ? ra[0] : ra };
}
