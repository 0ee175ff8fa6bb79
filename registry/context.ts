// Shared per-request types and helpers for the route handlers.
import { Readable } from 'node:stream';
import type { Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { OciError } from '../spec/index.js';
import type { Store } from '../storage/index.js';
import { guardBody, type BodyLimit } from './body.js';
import { resolveClient, type Client, type TrustedProxies } from './forwarded.js';

/** What a /v2 request addresses; parsed once, before auth, from the right of the path (names contain `/`). */
export interface Target {
  route: 'base' | 'catalog' | 'tags' | 'manifest' | 'uploads' | 'upload' | 'blob' | 'referrers';
  name?: string;
  /** Tag or digest (manifest), digest (blob, referrers) or session id (upload). */
  reference?: string;
}

export interface RegistryOptions {
  store: Store;
  /** Allow DELETE of manifests, tags and blobs (405 UNSUPPORTED otherwise). */
  deleteEnabled: boolean;
  /** Manifests larger than this are refused with 413. */
  maxManifestBytes: number;
  /** Cap on `n` for tag, catalog and referrer listings. */
  maxPageSize: number;
  /** `http.trustedProxies`: whose X-Forwarded-* / Forwarded headers are believed (registry/forwarded.ts). */
  trustedProxies?: TrustedProxies;
}

/** The client behind this request: its address, and the scheme and host it used when a trusted proxy says so. */
export function clientOf(c: Ctx): Client {
  const incoming = c.env?.incoming;
  return incoming ? resolveClient(incoming, c.var.options?.trustedProxies) : { forwarded: false };
}

export type Env = {
  Bindings: Partial<HttpBindings>;
  /** bodyLimit: a cap on the bytes bodyStream() lets through (set by the policy middleware for quotas). */
  Variables: {
    target: Target;
    subject?: string;
    options: RegistryOptions;
    bodyLimit?: BodyLimit;
    /** Set false by auth when the caller may not pull the mount's source repository: the mount becomes an upload. */
    mountAllowed?: boolean;
    /**
     * Set by auth: whether the caller may push to the target repository (the signature policy lets pushers read
     * by digest, so signing tools work). Unset without auth, where everyone may push.
     */
    pushAllowed?: () => boolean;
    /** Set by auth on catalog requests: which repository names the caller may see. */
    catalogFilter?: (name: string) => boolean;
  };
};
export type Ctx = Context<Env>;

/**
 * The request body as a Node stream, from the socket when running on node (no web-stream detour), guarded
 * (registry/body.ts): real bytes counted against `bodyLimit`, and a failing consumer never resets the connection.
 */
export function bodyStream(c: Ctx): Readable {
  const incoming = c.env?.incoming;
  const limit = c.get('bodyLimit');
  if (incoming && !incoming.readableDidRead) return guardBody(incoming as unknown as Readable, limit);
  const web = c.req.raw.body;
  return guardBody(web ? Readable.fromWeb(web as import('node:stream/web').ReadableStream) : Readable.from([]), limit);
}

/** Whether the request carries a body (Content-Length > 0 or chunked). */
export function hasBody(c: Ctx): boolean {
  const len = c.req.header('content-length');
  if (len !== undefined) return Number(len) > 0;
  if (c.req.header('transfer-encoding') !== undefined) return true;
  // Not on a node socket (app.request in tests, other runtimes): the web request knows.
  return !c.env?.incoming && c.req.raw.body !== null;
}

/** Reads at most `max` bytes; throws 413 MANIFEST_TOO_BIG beyond. */
export async function readLimited(c: Ctx, max: number): Promise<Buffer> {
  const declared = Number(c.req.header('content-length') ?? NaN);
  const tooBig = () =>
    new OciError('MANIFEST_TOO_BIG', `manifest exceeds the ${max}-byte limit`, { detail: { limit: max } });
  if (declared > max) {
    c.env?.incoming?.resume();
    throw tooBig();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of bodyStream(c)) {
    total += chunk.length;
    if (total > max) throw tooBig();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}

export function requireDeletes(c: Ctx): void {
  if (!c.var.options.deleteEnabled)
    throw new OciError('UNSUPPORTED', 'deletes are disabled on this registry (storage.delete: false)');
}

/**
 * Parses pagination parameters (`n`, `last`). `n` must be a non-negative integer; it is capped at maxPageSize.
 * spec: distribution-spec "Listing Tags" — exactly n results unless fewer remain, Link header for the next page.
 */
export function pageParams(c: Ctx): { n?: number; last?: string } {
  const raw = c.req.query('n');
  let n: number | undefined;
  if (raw !== undefined) {
    if (!/^\d{1,10}$/.test(raw))
      throw new OciError(
        'PAGINATION_NUMBER_INVALID',
        `invalid n "${raw.slice(0, 40)}": expected a non-negative integer`,
      );
    n = Math.min(Number(raw), c.var.options.maxPageSize);
  }
  return { n, last: c.req.query('last') };
}

/** Applies `last`/`n` to a sorted list; returns the page and whether more remain. */
export function paginate(
  items: string[],
  n: number | undefined,
  last: string | undefined,
): { page: string[]; more: boolean } {
  let start = 0;
  if (last !== undefined) {
    start = items.findIndex((x) => x > last);
    if (start < 0) start = items.length;
  }
  if (n === undefined) return { page: items.slice(start), more: false };
  const page = items.slice(start, start + n);
  return { page, more: n > 0 && start + n < items.length };
}
