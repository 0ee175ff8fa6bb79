// Caps on open upload sessions, per repository and per caller (config storage.uploadSessions): a client that opens
// sessions by the thousand gets 429 TOOMANYREQUESTS + Retry-After instead of filling the storage with them.
//
// The count comes from storage (the flat `uploads/` listing, store.uploads.list), so it survives `kill -9`, restarts
// and replicas: nothing is kept that could drift. Between listings (at most one per REFRESH_MS, and only when a
// session is about to start) this process adds the sessions it started and drops the ones it saw end; requests in
// flight hold a reservation, so parallel POSTs can't all slip under the cap.
import type { MiddlewareHandler } from 'hono';
import { OciError } from '../spec/index.js';
import type { Store, UploadInfo } from '../storage/index.js';
import type { Env } from './context.js';

export interface SessionCaps {
  /** Open sessions one repository may have; 0: no cap. */
  maxPerRepository: number;
  /** Open sessions one caller (token or user subject; every anonymous caller together) may have; 0: no cap. */
  maxPerCaller: number;
}

const REFRESH_MS = 10_000;
/** Sessions end when pushes finish or uploadPurge removes them: a minute is a fair wait. */
const RETRY_AFTER_S = 60;
const ANONYMOUS = 'anonymous';

export function sessionLimits(caps: SessionCaps, store: Store): MiddlewareHandler<Env> {
  let index = new Map<string, UploadInfo>();
  let listedAt = 0;
  let listing: Promise<void> | undefined;
  /** Sessions being started by requests in flight (reserved before the handler runs). */
  const pending: UploadInfo[] = [];

  const refresh = async () => {
    if (Date.now() - listedAt < REFRESH_MS) return;
    listing ??= (async () => {
      try {
        index = new Map((await store.uploads.list(index)).map((i) => [i.id, i]));
        listedAt = Date.now();
      } finally {
        listing = undefined;
      }
    })();
    await listing;
  };

  const count = (pred: (o: UploadInfo) => boolean) =>
    pending.filter(pred).length + [...index.values()].filter(pred).length;

  return async (c, next) => {
    const { route, name, reference } = c.var.target;
    const method = c.req.method;
    if (!name || (route !== 'uploads' && route !== 'upload')) return next();
    if (route === 'upload') {
      await next();
      // Completed or cancelled (else the next listing finds out).
      if (reference && ((method === 'PUT' && c.res.status === 201) || (method === 'DELETE' && c.res.status === 204)))
        index.delete(reference);
      return;
    }
    // A single-POST upload (?digest=) never opens a session; a mount may fall back to one.
    if (method !== 'POST' || c.req.query('digest') !== undefined) return next();
    const mine: UploadInfo = { id: '', repository: name, subject: c.var.subject, startedAt: '' };
    const caller = mine.subject ?? ANONYMOUS;
    await refresh();
    const tooMany = (what: string, limit: number, key: string) =>
      new OciError(
        'TOOMANYREQUESTS',
        `${what} has ${limit} open upload sessions, the most allowed (${key}); finish or cancel some (DELETE the session) before starting more, or wait for abandoned ones to expire (storage.uploadPurge)`,
        { detail: { limit }, headers: { 'Retry-After': String(RETRY_AFTER_S) } },
      );
    // Counted and reserved with no await in between: parallel POSTs see each other.
    if (caps.maxPerRepository > 0 && count((o) => o.repository === mine.repository) >= caps.maxPerRepository) {
      throw tooMany(`repository ${name}`, caps.maxPerRepository, 'storage.uploadSessions.maxPerRepository');
    }
    if (caps.maxPerCaller > 0 && count((o) => (o.subject ?? ANONYMOUS) === caller) >= caps.maxPerCaller) {
      throw tooMany(
        caller === ANONYMOUS ? 'anonymous pushing' : `caller ${caller}`,
        caps.maxPerCaller,
        'storage.uploadSessions.maxPerCaller',
      );
    }
    pending.push(mine);
    try {
      await next();
    } finally {
      pending.splice(pending.indexOf(mine), 1);
    }
    const id = c.res.status === 202 ? c.res.headers.get('docker-upload-uuid') : null;
    if (id) index.set(id, { ...mine, id });
  };
}
