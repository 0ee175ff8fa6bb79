// The web UI (issue 19): pages under /ui/ and their JSON API under /v2/_berth/api/v1/, both reading the stores
// through registry/ui/data.ts with the viewer's rights (registry/ui/viewer.ts: the same AuthCore and ACL as /v2).
//
//   GET  /                                          → /ui/
//   GET  /ui/                                       repositories (?q= &ns= &page=)
//   GET  /ui/repo/<name>                            tags (?q= &sort=pushed|name &page=)
//   GET  /ui/image/<name>:<tag> | <name>@<digest>   an image or index: platforms, layers, config, referrers tree
//   GET  /ui/sbom/<name>@<digest>                   an SPDX SBOM as a searchable table (?q= &kind=packages|files)
//   GET  /ui/mirrors                                the pull-through cache
//   GET  /ui/login, POST /ui/login, POST /ui/logout the session cookie (viewer.ts)
//   GET  /ui/delete?repo=&ref= → POST /ui/delete    confirmation page, then the delete (CSRF token required)
//   GET  /ui/assets/<file>?v=<hash>                 ui.css, ui.js (immutable)
//
// JSON API (README "Web UI"): GET me, repositories, repositories/<name>/tags, repositories/<name>/images/<ref>,
// repositories/<name>/sbom/<digest>, mirrors; DELETE repositories/<name>/tags/<tag> and …/manifests/<digest>.
// A delete is not done here: it is sent through the app's own /v2 DELETE route (in process), acting as the viewer
// (auth ACT_AS) or with the caller's Bearer token, so the ACL, mirrors' read-only rule, immutable tags, webhooks
// and `storage.delete` apply exactly as for `docker`/`crane`/`berth delete`.
import type { Hono } from 'hono';
import { deleteCookie, setCookie } from 'hono/cookie';
import { OciError, isDigest, isValidName, isValidTag, type ErrorCode } from '../../spec/index.js';
import type { Store } from '../../storage/index.js';
import { ACT_AS, LoginError, type Auth } from '../auth/index.js';
import type { Ctx, Env } from '../context.js';
import { ERRORS } from '../errors.js';
import type { Policies, QuotaRule } from '../policy.js';
import type { Proxy } from '../proxy/index.js';
import type { SignaturePolicy } from '../signatures.js';
import type { SyncJob } from '../mirror/sync.js';
import type { Replication } from '../mirror/replication.js';
import { loadAssets } from './assets.js';
import { UiData, type PageQuery } from './data.js';
import {
  confirmDeletePage,
  imagePage,
  layout,
  loginPage,
  messagePage,
  mirrorsPage,
  repoUrl,
  repositoriesPage,
  sbomPage,
  tagsPage,
  type Chrome,
  type MirrorsData,
} from './pages.js';
import { Sessions, SESSION_TTL_S, checkCsrf, cookieOptions, type Viewer } from './viewer.js';

export interface UiOptions {
  store: Store;
  auth?: Auth;
  proxy?: Proxy;
  /** Scheduled sync: its status at GET …/api/v1/sync. */
  sync?: SyncJob;
  /** Push replication: its queues at GET …/api/v1/replication. */
  replication?: Replication;
  policies?: Policies;
  quotas?: QuotaRule[];
  /** The signature policy: the image view shows its verdict (registry/signatures.ts). */
  signatures?: Pick<SignaturePolicy, 'verdict'>;
  deleteEnabled: boolean;
  /** http.publicUrl: the host shown in pull commands (else the request's Host). */
  publicUrl?: string;
}

export const API_PREFIX = '/v2/_berth/api/v1';

// Pages load only their own script and stylesheet; nothing inline, no framing, no referrer leaks.
const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'same-origin',
  'X-Frame-Options': 'DENY',
};

type Html = ReturnType<typeof layout>;

export function uiRoutes(app: Hono<Env>, opts: UiOptions): void {
  const assets = loadAssets();
  const sessions = new Sessions(opts.auth?.core, opts.publicUrl);
  const data = new UiData(opts.store, {
    proxy: opts.proxy,
    policies: opts.policies,
    quotas: opts.quotas,
    signatures: opts.signatures,
  });
  const canLogin = !!opts.auth;

  app.use('/ui/*', async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v);
  });
  app.use(`${API_PREFIX}/*`, async (c, next) => {
    await next();
    c.res.headers.set('Cache-Control', 'no-store');
    c.res.headers.set('X-Content-Type-Options', 'nosniff');
  });

  app.get('/', (c) => c.redirect('/ui/', 302));
  app.get('/ui', (c) => c.redirect('/ui/', 301));
  app.get('/ui/assets/:file', (c) => {
    const a = assets.get(c.req.param('file'));
    if (!a) return c.text('not found', 404);
    const cache = c.req.query('v') === a.hash ? 'public, max-age=31536000, immutable' : 'no-cache';
    return c.body(a.body, 200, { 'Content-Type': a.type, 'Cache-Control': cache, ETag: `"${a.hash}"` });
  });

  const host = (c: Ctx) => (opts.publicUrl ? new URL(opts.publicUrl).host : new URL(c.req.url).host);
  const chrome = (viewer: Viewer, title: string, nav: Chrome['nav']): Chrome => ({
    title,
    nav,
    user: viewer.via === 'anonymous' ? undefined : viewer.name,
    canLogin,
    csrf: viewer.csrf,
    assets,
    mirrors: !!opts.proxy,
  });
  /** A page: the viewer, the body, and errors as pages (anonymous 401 → the login form, coming back after). */
  const page =
    (title: string, nav: Chrome['nav'], render: (c: Ctx, v: Viewer) => Promise<Html | Response>) => async (c: Ctx) => {
      let viewer: Viewer = { via: 'anonymous', may: () => false };
      c.header('Cache-Control', 'no-store');
      try {
        viewer = await sessions.viewer(c);
        const body = await render(c, viewer);
        if (body instanceof Response) return body;
        return c.html(layout(chrome(viewer, title, nav), body));
      } catch (e) {
        if (!(e instanceof OciError)) throw e;
        const status = e.status ?? ERRORS[e.code]?.status ?? 400;
        if (status === 401 && viewer.via === 'anonymous' && canLogin)
          return c.redirect(`/ui/login?next=${encodeURIComponent(c.req.path + _search(c))}`, 303);
        const text = status === 404 ? 'Not found' : status === 403 ? 'Not allowed' : 'Error';
        return c.html(
          layout(chrome(viewer, text, nav), messagePage(text, e.message, { href: '/ui/', text: 'Repositories' })),
          status as 400,
        );
      }
    };

  app.get(
    '/ui/',
    page('Repositories', 'repositories', async (c, v) => {
      const q = { ..._pageQuery(c), namespace: c.req.query('ns') || undefined };
      return repositoriesPage(await data.repositories(v, q), { q: q.q, ns: q.namespace });
    }),
  );
  app.get(
    '/ui/repo/*',
    page('Repository', 'repositories', async (c, v) => {
      const name = _name(c.req.path.slice('/ui/repo/'.length));
      const q = _pageQuery(c);
      const tags = await data.tags(v, name, { ...q, sort: _sort(c) });
      return tagsPage(tags, q, { host: host(c), canDelete: _canDelete(v, name) });
    }),
  );
  app.get(
    '/ui/image/*',
    page('Image', 'repositories', async (c, v) => {
      const { name, ref } = _reference(c.req.path.slice('/ui/image/'.length));
      return imagePage(await data.image(v, name, ref), { host: host(c), canDelete: _canDelete(v, name) });
    }),
  );
  app.get(
    '/ui/sbom/*',
    page('SBOM', 'repositories', async (c, v) => {
      const { name, ref } = _reference(c.req.path.slice('/ui/sbom/'.length));
      const q = _pageQuery(c);
      return sbomPage(await data.sbom(v, name, ref, { ...q, kind: _kind(c) }), q);
    }),
  );
  app.get(
    '/ui/mirrors',
    page('Mirrors', 'mirrors', async (c, v) => mirrorsPage((await data.mirrors(v, _pageQuery(c))) as MirrorsData)),
  );

  const _canDelete = (v: Viewer, name: string) =>
    opts.deleteEnabled && v.may(name, 'delete') && !opts.proxy?.upstreams.some((u) => name.startsWith(`${u.prefix}/`));

  app.get(
    '/ui/login',
    page('Sign in', 'login', async (c) => loginPage({ next: _next(c.req.query('next')) })),
  );
  app.post(
    '/ui/login',
    page('Sign in', 'login', async (c, v) => {
      if (!canLogin) throw new OciError('UNSUPPORTED', 'auth.mode is none: there is nothing to sign in to');
      checkCsrf(c, v, undefined, opts.publicUrl);
      const form = await c.req.parseBody();
      const next = _next(_field(form.next));
      try {
        const { token } = await sessions.login(c, _field(form.username) ?? '', _field(form.password) ?? '');
        setCookie(c, sessions.cookieName(c), token, cookieOptions(c, SESSION_TTL_S, opts.publicUrl));
        return c.redirect(next, 303);
      } catch (e) {
        if (!(e instanceof LoginError)) throw e;
        c.status(e.status);
        if (e.retryAfter) c.header('Retry-After', String(e.retryAfter));
        return loginPage({ error: e.message, next });
      }
    }),
  );
  app.post(
    '/ui/logout',
    page('Sign out', 'none', async (c, v) => {
      const form = await c.req.parseBody();
      checkCsrf(c, v, _field(form.csrf), opts.publicUrl);
      deleteCookie(c, sessions.cookieName(c), cookieOptions(c, 0, opts.publicUrl));
      return c.redirect('/ui/', 303);
    }),
  );

  app.get(
    '/ui/delete',
    page('Delete', 'repositories', async (c, v) => {
      const name = _name(c.req.query('repo') ?? '');
      const ref = _ref(c.req.query('ref') ?? '');
      await data.requireRepository(v, name);
      if (!_canDelete(v, name))
        throw new OciError(
          'DENIED',
          `you may not delete in ${name}${opts.deleteEnabled ? '' : ' (storage.delete is off)'}`,
        );
      const digest = await opts.store.manifests.resolve(name, ref);
      return confirmDeletePage({ repo: name, ref, csrf: v.csrf ?? '', digest, isDigest: isDigest(ref) });
    }),
  );
  app.post(
    '/ui/delete',
    page('Delete', 'repositories', async (c, v) => {
      const form = await c.req.parseBody();
      checkCsrf(c, v, _field(form.csrf), opts.publicUrl);
      const name = _name(_field(form.repo) ?? '');
      const ref = _ref(_field(form.ref) ?? '');
      await remove(c, v, name, ref);
      return c.redirect(repoUrl(name), 303);
    }),
  );

  /** Deletes through the app's own /v2 route, as the viewer (see the header). */
  const remove = async (c: Ctx, v: Viewer, name: string, ref: string): Promise<void> => {
    await data.requireRepository(v, name);
    const headers = new Headers();
    let env: Record<symbol, unknown> = {};
    if (v.via === 'bearer') headers.set('authorization', c.req.header('authorization')!);
    else if (v.identity) env = { [ACT_AS]: v.identity };
    const res = await app.fetch(
      new Request(new URL(`/v2/${name}/manifests/${ref}`, c.req.url), { method: 'DELETE', headers }),
      env,
    );
    if (res.status === 202) return;
    const body = (await res.json().catch(() => ({}))) as { errors?: Array<{ code?: string; message?: string }> };
    const err = body.errors?.[0];
    const code = (err?.code && err.code in ERRORS ? err.code : 'DENIED') as ErrorCode;
    // In token mode an ACT_AS refusal is DENIED; a Bearer token without the right is UNAUTHORIZED (insufficient_scope).
    throw new OciError(code, err?.message ?? `delete refused (${res.status})`, {
      status: res.status === 401 ? 403 : res.status,
    });
  };

  // ---- JSON API ---------------------------------------------------------------------------------------------
  const API: Array<[string, RegExp, (c: Ctx, v: Viewer, m: RegExpExecArray) => Promise<unknown>]> = [
    [
      'GET',
      /^\/me$/,
      async (_c, v) => ({ name: v.name ?? null, via: v.via, mode: opts.auth?.core.config.mode ?? 'none' }),
    ],
    [
      'GET',
      /^\/repositories$/,
      async (c, v) => data.repositories(v, { ..._pageQuery(c), namespace: c.req.query('ns') || undefined }),
    ],
    [
      'GET',
      /^\/repositories\/(.+)\/tags$/,
      async (c, v, m) => data.tags(v, _name(m[1]), { ..._pageQuery(c), sort: _sort(c), order: _order(c) }),
    ],
    ['GET', /^\/repositories\/(.+)\/images\/([^/]+)$/, async (_c, v, m) => data.image(v, _name(m[1]), _ref(m[2]))],
    [
      'GET',
      /^\/repositories\/(.+)\/sbom\/([^/]+)$/,
      async (c, v, m) => data.sbom(v, _name(m[1]), m[2], { ..._pageQuery(c), kind: _kind(c) }),
    ],
    ['GET', /^\/mirrors$/, async (c, v) => data.mirrors(v, _pageQuery(c))],
    ['GET', /^\/sync$/, async (_c, v) => _syncStatus(opts.sync, v)],
    ['GET', /^\/replication$/, async (_c, v) => _replicationStatus(opts.store, opts.replication, v)],
    ['DELETE', /^\/repositories\/(.+)\/tags\/([^/]+)$/, async (c, v, m) => _apiDelete(c, v, m[1], m[2], 'tag')],
    ['DELETE', /^\/repositories\/(.+)\/manifests\/([^/]+)$/, async (c, v, m) => _apiDelete(c, v, m[1], m[2], 'digest')],
  ];
  const _apiDelete = async (c: Ctx, v: Viewer, rawName: string, rawRef: string, kind: 'tag' | 'digest') => {
    const name = _name(rawName);
    const ref = _ref(rawRef);
    if (kind === 'tag' ? isDigest(ref) : !isDigest(ref))
      throw new OciError(kind === 'tag' ? 'TAG_INVALID' : 'DIGEST_INVALID', `expected a ${kind}, got "${ref}"`);
    checkCsrf(c, v, c.req.header('x-berth-csrf'), opts.publicUrl);
    await remove(c, v, name, ref);
    return { deleted: `${name}${kind === 'tag' ? ':' : '@'}${ref}` };
  };
  app.all(`${API_PREFIX}/*`, async (c) => {
    const rest = c.req.path.slice(API_PREFIX.length);
    for (const [method, re, handler] of API) {
      const m = re.exec(rest);
      if (!m || method !== c.req.method) continue;
      const viewer = await sessions.viewer(c);
      return c.json(await handler(c, viewer, m));
    }
    throw new OciError('UNSUPPORTED', `no such UI API endpoint: ${c.req.method} ${c.req.path.slice(0, 200)}`, {
      status: 404,
    });
  });
}

/**
 * Each sync rule's last run (README "Mirrors"), for a viewer who may pull where the rule writes (its prefix, or
 * the literal part of its first repository pattern).
 */
async function _syncStatus(sync: SyncJob | undefined, v: Viewer) {
  if (!sync) return { enabled: false, rules: [] };
  const visible = new Set(
    sync.rules
      .filter((r) => {
        const first = r.rule.repositories[0].split(/[*?[\]{}!]/)[0].replace(/\/+$/, '');
        const sample = [r.prefix, first].filter(Boolean).join('/');
        return sample ? isValidName(sample) && v.may(sample, 'pull') : v.via !== 'anonymous' || v.may('x', 'pull');
      })
      .map((r) => r.name),
  );
  const rules = (await sync.status()).filter((s) => visible.has(s.rule));
  return { enabled: true, rules };
}

/** Each replication rule's queue (read from storage, so any replica answers) and this process's counters. */
async function _replicationStatus(store: Store, replication: Replication | undefined, v: Viewer) {
  if (!replication) return { enabled: false, rules: [] };
  // Targets and queues are operator information: signed-in viewers (or everyone when auth is off).
  if (v.via === 'anonymous') throw new OciError('UNAUTHORIZED', 'sign in to see replication status');
  const stats = replication.stats();
  const rules = await Promise.all(
    replication.rules.map(async (r) => ({
      rule: r.name,
      target: new URL(r.rule.url).origin,
      ...stats[r.name],
      queued: (await store.mirror.queued(r.name)).length,
    })),
  );
  return { enabled: true, rules };
}

function _search(c: Ctx): string {
  const i = c.req.url.indexOf('?');
  return i < 0 ? '' : c.req.url.slice(i);
}

function _name(raw: string): string {
  const name = raw.replace(/\/+$/, '');
  if (!isValidName(name)) throw new OciError('NAME_INVALID', `invalid repository name "${name.slice(0, 200)}"`);
  return name;
}

function _ref(raw: string): string {
  if (isDigest(raw) || isValidTag(raw)) return raw;
  throw new OciError('TAG_INVALID', `"${raw.slice(0, 200)}" is neither a tag nor a digest`);
}

/** `name:tag` or `name@digest` (names hold no `:` or `@`, so split at the first of them). */
function _reference(raw: string): { name: string; ref: string } {
  const at = raw.indexOf('@');
  if (at > 0) return { name: _name(raw.slice(0, at)), ref: _ref(raw.slice(at + 1)) };
  const colon = raw.lastIndexOf(':');
  if (colon > 0) return { name: _name(raw.slice(0, colon)), ref: _ref(raw.slice(colon + 1)) };
  throw new OciError('TAG_INVALID', `"${raw.slice(0, 200)}": expected NAME:TAG or NAME@DIGEST`);
}

function _int(c: Ctx, key: string): number | undefined {
  const raw = c.req.query(key);
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,9}$/.test(raw))
    throw new OciError('PAGINATION_NUMBER_INVALID', `${key} must be a positive integer, got "${raw.slice(0, 40)}"`);
  return Number(raw);
}

function _pageQuery(c: Ctx): PageQuery {
  const q = c.req.query('q');
  return { q: q ? q.slice(0, 200) : undefined, page: _int(c, 'page'), n: _int(c, 'n') };
}

function _sort(c: Ctx): 'pushed' | 'name' | undefined {
  const s = c.req.query('sort');
  if (s === undefined || s === '') return undefined;
  if (s !== 'pushed' && s !== 'name') throw _bad(`sort must be pushed or name, got "${s.slice(0, 40)}"`);
  return s;
}

function _order(c: Ctx): 'asc' | 'desc' | undefined {
  const s = c.req.query('order');
  if (s === undefined || s === '') return undefined;
  if (s !== 'asc' && s !== 'desc') throw _bad(`order must be asc or desc, got "${s.slice(0, 40)}"`);
  return s;
}

function _kind(c: Ctx): 'packages' | 'files' | undefined {
  const k = c.req.query('kind');
  return k === 'files' ? 'files' : k === 'packages' || !k ? undefined : 'packages';
}

function _bad(message: string): OciError {
  return new OciError('UNSUPPORTED', message, { status: 400 });
}

function _field(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Where to go after login: only a path of this UI (no `//host`, no scheme): never an open redirect. */
function _next(raw: string | undefined): string {
  return raw && /^\/ui\/[^\\]*$/.test(raw) && !raw.startsWith('//') ? raw : '/ui/';
}
