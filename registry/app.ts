// The registry HTTP app: parse the target, run the middleware, dispatch to one handler per resource.
import { Hono, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { OciError, isValidName } from '../spec/index.js';
import { renderError } from './errors.js';
import type { Ctx, Env, RegistryOptions, Target } from './context.js';
import { base } from './routes/base.js';
import { getBlob, deleteBlob } from './routes/blobs.js';
import { startUpload, patchUpload, putUpload, getUpload, cancelUpload } from './routes/uploads.js';
import { getManifest, putManifest, deleteManifest } from './routes/manifests.js';
import { listTags } from './routes/tags.js';
import { listCatalog } from './routes/catalog.js';
import { listReferrers } from './routes/referrers.js';

export const API_VERSION = 'registry/2.0';

/**
 * Bodies outside /v2 (token forms, revocations) are read whole into memory: capped, chunked ones included. /v2
 * bodies stream to storage, counted there (registry/body.ts; manifests have storage.maxManifestBytes).
 */
export const MAX_SMALL_BODY = 1024 * 1024;

type Handler = (c: Ctx) => Promise<Response>;

// Matched in order against the raw (undecoded) path; names may contain `/`, so each pattern anchors on the right.
const PATTERNS: Array<[RegExp, Target['route']]> = [
  [/^\/v2\/?$/, 'base'],
  [/^\/v2\/_catalog$/, 'catalog'],
  [/^\/v2\/(.+)\/tags\/list$/, 'tags'],
  [/^\/v2\/(.+)\/manifests\/([^/]*)$/, 'manifest'],
  [/^\/v2\/(.+)\/blobs\/uploads\/?$/, 'uploads'],
  [/^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, 'upload'],
  [/^\/v2\/(.+)\/blobs\/([^/]*)$/, 'blob'],
  [/^\/v2\/(.+)\/referrers\/([^/]*)$/, 'referrers'],
];

const HANDLERS: Record<Target['route'], Partial<Record<string, Handler>>> = {
  base: { GET: base, HEAD: base },
  catalog: { GET: listCatalog },
  tags: { GET: listTags },
  manifest: { GET: getManifest, HEAD: getManifest, PUT: putManifest, DELETE: deleteManifest },
  uploads: { POST: startUpload },
  upload: { GET: getUpload, PATCH: patchUpload, PUT: putUpload, DELETE: cancelUpload },
  blob: { GET: getBlob, HEAD: getBlob, DELETE: deleteBlob },
  referrers: { GET: listReferrers },
};

/** Parses `/v2/...` into a Target; throws NAME_INVALID for a bad repository name. */
export function parseTarget(path: string): Target | undefined {
  for (const [re, route] of PATTERNS) {
    const m = re.exec(path);
    if (!m) continue;
    const target: Target = { route, name: m[1], reference: m[2] };
    if (target.name !== undefined && !isValidName(target.name)) {
      throw new OciError(
        'NAME_INVALID',
        `invalid repository name "${target.name.slice(0, 300)}": lowercase [a-z0-9] components separated by . _ __ - or /, at most 255 characters`,
      );
    }
    return target;
  }
  return undefined;
}

export interface AppHooks {
  /** Runs first after the target is parsed, so it sees every outcome, auth refusals included (registry/audit.ts). */
  audit?: MiddlewareHandler<Env>;
  /** Runs after the target is parsed and before the handler (authentication and authorization). */
  auth?: MiddlewareHandler<Env>;
  /** Runs after auth: the pull-through cache (maps mirrored repositories, fills the cache, refuses pushes). */
  proxy?: MiddlewareHandler<Env>;
  /** Runs after the proxy: caps on open upload sessions (registry/sessions.ts). */
  limits?: MiddlewareHandler<Env>;
  /** Runs after the limits: repository policies (immutable tags, quotas), pull records, webhook events. */
  policy?: MiddlewareHandler<Env>;
  /** Extra routes outside /v2 (token endpoint, metrics, health). */
  extend?: (app: Hono<Env>) => void;
  /** Called with unexpected errors (they become an opaque 500). */
  onUnexpectedError?: (e: unknown, c: Ctx) => void;
}

export function createApp(options: RegistryOptions, hooks: AppHooks = {}): Hono<Env> {
  const app = new Hono<Env>();
  app.onError((err, c) => renderError(err, c, (e) => hooks.onUnexpectedError?.(e, c)));
  // Unknown endpoints are 404, as distribution's router answers (405 is only for a known endpoint's wrong method).
  app.notFound((c) =>
    renderError(new OciError('NOT_FOUND', `no such endpoint: ${c.req.method} ${c.req.path.slice(0, 300)}`), c),
  );

  app.use('*', async (c, next) => {
    c.set('options', options);
    await next();
    // After the handler (not before: a preset header would make hono rebuild a response streamed by sendStream).
    if (!c.res.headers.has('x-hono-already-sent')) c.res.headers.set('Docker-Distribution-API-Version', API_VERSION);
  });
  const small = bodyLimit({
    maxSize: MAX_SMALL_BODY,
    onError: () => {
      throw new OciError('SIZE_INVALID', `request body over the ${MAX_SMALL_BODY}-byte limit of this endpoint`, {
        detail: {
          limit: MAX_SMALL_BODY,
        },
        status: 413,
      });
    },
  });
  app.use('*', (c, next) => (c.req.path === '/v2' || c.req.path.startsWith('/v2/') ? next() : small(c, next)));
  hooks.extend?.(app);

  app.use('/v2/*', async (c, next) => {
    // The raw request path: URL parsing would resolve `a/../b` to `b` and hide the bad name from validation.
    const rawPath = c.env?.incoming?.url?.split('?')[0] ?? c.req.path;
    const target = parseTarget(rawPath);
    if (!target) return c.notFound();
    c.set('target', target);
    await next();
  });
  if (hooks.audit) app.use('/v2/*', hooks.audit);
  if (hooks.auth) app.use('/v2/*', hooks.auth);
  if (hooks.proxy) app.use('/v2/*', hooks.proxy);
  if (hooks.limits) app.use('/v2/*', hooks.limits);
  if (hooks.policy) app.use('/v2/*', hooks.policy);
  const dispatch: Handler = async (c) => {
    const target = c.var.target;
    const handler = HANDLERS[target.route][c.req.method];
    if (!handler)
      throw new OciError('UNSUPPORTED', `${c.req.method} is not allowed on ${target.route}`, { status: 405 });
    return handler(c);
  };
  app.all('/v2/*', dispatch);
  app.all('/v2', dispatch);
  return app;
}
