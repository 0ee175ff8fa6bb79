// The /v2 middleware that applies repository policies (immutable tags against deletes of their tag, manifests and
// blobs; quotas), records pulls for retention and emits webhook events for what succeeded. Runs after auth and the
// proxy; handlers stay unaware of it.
// Immutable overwrites are checked inside ManifestStore.put (store.manifests.tagPolicy), where the digest is known.
import type { MiddlewareHandler } from 'hono';
import { isDigest, type Digest } from '../spec/index.js';
import type { Env } from './context.js';
import type { Policies } from './policy.js';
import type { RegistryEvent } from './webhooks.js';

function _contentLength(v: string | undefined): number {
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : 0;
}

/**
 * `emit` may return a promise (push replication stores a queue item): push and delete events are awaited, so the
 * client's 201/202 means the event is durable.
 */
export function policyMiddleware(
  policies: Policies,
  emit?: (e: RegistryEvent) => void | Promise<void>,
): MiddlewareHandler<Env> {
  return async (c, next) => {
    const { route, name, reference } = c.var.target;
    const method = c.req.method;
    const store = c.var.options.store;
    if (!name) return next();
    let bodyLimit: Awaited<ReturnType<Policies['quotaBody']>>;

    // Deletes only where they are enabled (else the handler answers 405 UNSUPPORTED, as on every mutating route).
    if (method === 'DELETE' && reference && c.var.options.deleteEnabled) {
      // An immutable tag protects its whole image: the tag, its manifests (index children too), configs and layers.
      if (route === 'manifest') await policies.checkDelete(name, reference);
      if (route === 'blob') await policies.checkBlobDelete(name, reference);
    }
    if (
      policies.enabled.quotas &&
      (route === 'uploads' || route === 'upload') &&
      (method === 'POST' || method === 'PATCH' || method === 'PUT')
    ) {
      let bytes = _contentLength(c.req.header('content-length'));
      const mount = route === 'uploads' ? c.req.query('mount') : undefined;
      const stored = route === 'upload' && reference ? await store.uploads.size(reference).catch(() => 0) : 0;
      if (mount && isDigest(mount))
        bytes = (await store.blobs.isLinked(name, mount)) ? 0 : ((await store.blobs.dataSize(mount)) ?? 0);
      else bytes += stored;
      // Starting a session needs room for at least one byte; completing it needs room for all of them.
      await policies.checkQuota(name, Math.max(bytes, 1));
      // A declared length is only a claim (and chunked bodies have none): the body is capped as its bytes arrive.
      bodyLimit = await policies.quotaBody(name, stored);
      if (bodyLimit) c.set('bodyLimit', bodyLimit);
    }

    try {
      await next();
    } finally {
      bodyLimit?.done();
    }

    const status = c.res.status;
    if ((route === 'uploads' || route === 'upload') && status === 201 && policies.enabled.quotas) {
      const digest = c.res.headers.get('docker-content-digest');
      if (digest && isDigest(digest)) policies.noteStored(name, (await store.blobs.dataSize(digest as Digest)) ?? 0);
    }
    if (route !== 'manifest' || !reference) return;
    const tag = isDigest(reference) ? undefined : reference;
    if ((method === 'GET' || method === 'HEAD') && status === 200 && tag) policies.recordPull(name, tag);
    if (!emit) return;
    const actor = c.var.subject;
    const digest = c.res.headers.get('docker-content-digest') ?? (tag ? undefined : reference);
    if (method === 'PUT' && status === 201) {
      const tags = tag ? [tag] : (c.req.queries('tag') ?? []);
      const base = {
        kind: 'push' as const,
        repository: name,
        digest: digest ?? undefined,
        mediaType: c.req.header('content-type'),
        size: _contentLength(c.req.header('content-length')) || undefined,
        actor,
      };
      if (tags.length) for (const t of tags) await emit({ ...base, tag: t });
      else await emit(base);
    } else if (method === 'DELETE' && status === 202) {
      await emit({ kind: 'delete', repository: name, tag, digest: tag ? undefined : reference, actor });
    } else if (method === 'GET' && status === 200) {
      emit({
        kind: 'pull',
        repository: name,
        tag,
        digest: digest ?? undefined,
        mediaType: c.res.headers.get('content-type') ?? undefined,
        actor,
      });
    }
  };
}
