// The UI's pages, rendered on the server with hono's `html` template (every interpolated string is escaped; only
// fragments built here are raw). Plain links and GET forms, so each page works without JavaScript and with the
// keyboard; ui.js only makes filters live. Each list sits in #results, which ui.js swaps when a filter changes.
import { html } from 'hono/html';
import type { Asset } from './assets.js';
import type { ImageView, Page, ReferrerNode, RepositoryRow, SbomView, TagRow, QuotaRow } from './data.js';

type Html = ReturnType<typeof html>;

export interface Chrome {
  title: string;
  nav: 'repositories' | 'mirrors' | 'login' | 'none';
  user?: string;
  /** Login is possible (auth.mode htpasswd or token). */
  canLogin: boolean;
  csrf?: string;
  assets: Map<string, Asset>;
  mirrors: boolean;
}

export const repoUrl = (name: string) => `/ui/repo/${name}`;
export const imageUrl = (name: string, ref: string) =>
  ref.includes(':') ? `/ui/image/${name}@${ref}` : `/ui/image/${name}:${ref}`;
export const sbomUrl = (name: string, digest: string) => `/ui/sbom/${name}@${digest}`;

export function layout(chrome: Chrome, body: Html): Html {
  const asset = (name: string) => `/ui/assets/${name}?v=${chrome.assets.get(name)?.hash ?? ''}`;
  const current = (n: Chrome['nav']) => (chrome.nav === n ? 'page' : undefined);
  let who: Html;
  if (chrome.user && chrome.canLogin)
    who = html`<span>Signed in as <strong>${chrome.user}</strong></span>
      <form method="post" action="/ui/logout"><input type="hidden" name="csrf" value="${chrome.csrf ?? ''}" /><button type="submit" class="small">Sign out</button></form>`;
  else if (chrome.canLogin) who = html`<span>anonymous</span> <a href="/ui/login" class="button small">Sign in</a>`;
  else who = html`<span title="auth.mode none">open registry</span>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<title>${chrome.title} · berth</title>
<link rel="icon" href="data:," />
<link rel="stylesheet" href="${asset('ui.css')}" />
<script src="${asset('ui.js')}"></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/ui/">berth</a>
  <nav aria-label="Main">
    <a href="/ui/" aria-current="${current('repositories')}">Repositories</a>
    ${chrome.mirrors ? html`<a href="/ui/mirrors" aria-current="${current('mirrors')}">Mirrors</a>` : ''}
  </nav>
  <div class="who">${who}</div>
  <button type="button" id="theme-toggle" class="small" aria-label="Toggle dark theme">◐ Theme</button>
</header>
<main id="main">${body}</main>
</body>
</html>`;
}

export function bytes(n: number | undefined): string {
  if (n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function ago(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function time(iso: string | undefined): Html {
  return iso ? html`<time datetime="${iso}" title="${iso}">${ago(iso)}</time>` : html`—`;
}

function short(digest: string): string {
  const i = digest.indexOf(':');
  return `${digest.slice(0, i + 1)}${digest.slice(i + 1, i + 13)}`;
}

function pager(p: Page<unknown>, link: (page: number) => string, noun: string): Html {
  return html`<nav class="pager" aria-label="Pages">
    ${p.page > 1 ? html`<a class="button small" href="${link(p.page - 1)}" rel="prev">← Previous</a>` : ''}
    <span class="muted">${p.total} ${noun} · page ${p.page} of ${p.pages}</span>
    ${p.page < p.pages ? html`<a class="button small" href="${link(p.page + 1)}" rel="next">Next →</a>` : ''}
  </nav>`;
}

function qs(params: Record<string, string | number | undefined>): string {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') s.set(k, String(v));
  const out = s.toString();
  return out ? `?${out}` : '';
}

export function repositoriesPage(
  data: Page<RepositoryRow> & { namespaces: Array<{ name: string; repositories: number }>; quotas: QuotaRow[] },
  q: { q?: string; ns?: string },
): Html {
  const link = (page: number) => `/ui/${qs({ q: q.q, ns: q.ns, page })}`;
  let lastNs: string | undefined;
  const rows = data.items.map((r) => {
    const group =
      r.namespace !== lastNs
        ? html`<tr class="ns-group"><td colspan="5">${r.namespace ? `${r.namespace}/` : 'top level'}</td></tr>`
        : '';
    lastNs = r.namespace;
    return html`${group}<tr>
      <td><a href="${repoUrl(r.name)}">${r.name}</a>${r.mirrorOf ? html` <span class="chip">mirror of ${r.mirrorOf}</span>` : ''}</td>
      <td class="num">${r.tags}</td>
      <td>${time(r.lastPush)}</td>
      <td class="num">${bytes(r.size)}</td>
      <td class="num hide-sm">${r.manifests}</td>
    </tr>`;
  });
  const quotas = data.quotas.length
    ? html`<h2>Quotas</h2><div class="grid">${data.quotas.map(
        (x) => html`<div class="card"><strong>${x.namespace}/</strong>
          <div><meter min="0" max="${x.maxBytes}" value="${x.used}"></meter> ${bytes(x.used)} of ${bytes(x.maxBytes)}</div></div>`,
      )}</div>`
    : '';
  return html`<h1>Repositories</h1>
  <form class="bar" method="get" action="/ui/" data-live role="search">
    <label for="q" class="muted">Filter</label>
    <input type="search" id="q" name="q" value="${q.q ?? ''}" placeholder="name contains…  (press /)" data-filter autocomplete="off" />
    <select name="ns" aria-label="Namespace">
      <option value="">all namespaces</option>
      ${data.namespaces.map(
        (n) =>
          html`<option value="${n.name}" ${n.name === q.ns ? 'selected' : ''}>${n.name || 'top level'} (${n.repositories})</option>`,
      )}
    </select>
    <input type="hidden" name="page" value="" />
    <noscript><button type="submit">Apply</button></noscript>
  </form>
  <div id="results">
    ${pager(data, link, 'repositories')}
    <div class="table-wrap"><table>
      <thead><tr><th scope="col">Repository</th><th scope="col" class="num">Tags</th><th scope="col">Last push</th><th scope="col" class="num">Size</th><th scope="col" class="num hide-sm">Manifests</th></tr></thead>
      <tbody>${rows.length ? rows : html`<tr><td colspan="5" class="muted">No repositories${q.q ? ' match this filter' : ' you may pull'}.</td></tr>`}</tbody>
    </table></div>
    ${data.pages > 1 ? pager(data, link, 'repositories') : ''}
  </div>
  ${quotas}`;
}

export function tagsPage(
  data: Page<TagRow> & { name: string; sort: string; order: string },
  q: { q?: string },
  opts: { host: string; canDelete: boolean },
): Html {
  const name = data.name;
  const link = (page: number) => `${repoUrl(name)}${qs({ q: q.q, sort: data.sort, order: data.order, page })}`;
  const rows = data.items.map(
    (t) => html`<tr>
      <td><a href="${imageUrl(name, t.tag)}"><strong>${t.tag}</strong></a></td>
      <td><a class="digest" href="${imageUrl(name, t.digest)}" title="${t.digest}">${short(t.digest)}</a></td>
      <td>${time(t.pushed)}</td>
      <td class="num">${bytes(t.size)}</td>
      <td class="hide-sm">${t.platforms.map((p) => html`<span class="chip">${p}</span>`)}${t.artifactType ? html`<span class="chip">${t.artifactType}</span>` : ''}</td>
      <td class="hide-sm"><button type="button" class="small" data-copy="docker pull ${opts.host}/${name}:${t.tag}" aria-label="Copy docker pull command for ${t.tag}">Copy</button></td>
      ${opts.canDelete ? html`<td><a class="button small danger" href="/ui/delete${qs({ repo: name, ref: t.tag })}" aria-label="Delete tag ${t.tag}">Delete</a></td>` : ''}
    </tr>`,
  );
  return html`<div class="crumbs"><a href="/ui/">Repositories</a> /</div>
  <h1>${name}</h1>
  <div class="copy"><code>docker pull ${opts.host}/${name}:TAG</code><code>berth pull ${opts.host}/${name}:TAG</code></div>
  <form class="bar" method="get" action="${repoUrl(name)}" data-live role="search">
    <label for="q" class="muted">Filter tags</label>
    <input type="search" id="q" name="q" value="${q.q ?? ''}" placeholder="tag contains…  (press /)" data-filter autocomplete="off" />
    <select name="sort" aria-label="Sort by">
      <option value="pushed" ${data.sort === 'pushed' ? 'selected' : ''}>newest push first</option>
      <option value="name" ${data.sort === 'name' ? 'selected' : ''}>name</option>
    </select>
    <input type="hidden" name="page" value="" />
    <noscript><button type="submit">Apply</button></noscript>
  </form>
  <div id="results">
    ${pager(data, link, 'tags')}
    <div class="table-wrap"><table>
      <thead><tr><th scope="col">Tag</th><th scope="col">Digest</th><th scope="col">Pushed</th><th scope="col" class="num">Size</th><th scope="col" class="hide-sm">Platforms</th><th scope="col" class="hide-sm">Pull</th>${opts.canDelete ? html`<th scope="col">Actions</th>` : ''}</tr></thead>
      <tbody>${rows.length ? rows : html`<tr><td colspan="7" class="muted">No tags${q.q ? ' match this filter' : ''}.</td></tr>`}</tbody>
    </table></div>
    ${data.pages > 1 ? pager(data, link, 'tags') : ''}
  </div>`;
}

function referrerTree(name: string, nodes: ReferrerNode[]): Html {
  if (!nodes.length) return html``;
  return html`<ul class="tree">${nodes.map(
    (r) => html`<li>
      <span class="chip ${r.kind}">${r.kind}</span>
      <a class="digest" href="${imageUrl(name, r.digest)}">${short(r.digest)}</a>
      <span class="muted">${r.artifactType ?? r.mediaType}</span>
      ${r.on ? html`<span class="muted">on ${r.on.platform ?? short(r.on.digest)}</span>` : ''}
      ${r.kind === 'sbom' ? html`<a class="button small" href="${sbomUrl(name, r.digest)}">Open SBOM</a>` : ''}
      ${referrerTree(name, r.referrers)}
    </li>`,
  )}</ul>`;
}

const FORMAT_NAMES: Record<string, string> = {
  cosign: 'cosign (.sig tag)',
  'cosign-bundle': 'sigstore bundle (referrer)',
  notation: 'notation (referrer)',
};

/** The signature slot: the policy's verdict, or the signatures found when no trusted key is configured. */
function signatureStatus(s: ImageView['signatures']): Html {
  const found = s.found.length
    ? html`<ul class="plain">${s.found.map(
        (f) =>
          html`<li>${FORMAT_NAMES[f.format] ?? f.format} <span class="digest" title="${f.manifest}">${short(f.manifest)}</span></li>`,
      )}</ul>`
    : '';
  const policy = s.policy
    ? html` <span class="muted">(policy ${s.policy.name}, ${s.policy.mode}${s.viaIndex ? ', through its signed index' : ''})</span>`
    : '';
  const error = s.error ? html`<div class="muted">${s.error}</div>` : '';
  switch (s.status) {
    case 'verified':
      return html`<span class="chip ok">verified</span>${policy} ${found} ${error}`;
    case 'invalid':
      return html`<span class="chip bad">not verified</span>${policy} <div class="muted">${s.reason ?? ''}</div> ${found} ${error}`;
    case 'not-verified':
      return html`<span class="chip">${s.count} signature${s.count === 1 ? '' : 's'}</span> <span class="muted">not verified (no trusted key configured)</span> ${found} ${error}`;
    default:
      return html`<span class="chip ${s.policy ? 'bad' : ''}">unsigned</span>${policy} ${error}`;
  }
}

function kv(record: Record<string, string> | undefined): Html {
  const entries = Object.entries(record ?? {});
  if (!entries.length) return html`<p class="muted">none</p>`;
  return html`<div class="table-wrap"><table><tbody>${entries.map(
    ([k, v]) => html`<tr><th scope="row" class="mono">${k}</th><td class="mono">${v}</td></tr>`,
  )}</tbody></table></div>`;
}

export function imagePage(v: ImageView, opts: { host: string; canDelete: boolean }): Html {
  const ref = v.reference.includes(':') ? `@${v.reference}` : `:${v.reference}`;
  const children = v.children
    ? html`<h2>Platforms</h2><div class="table-wrap"><table>
      <thead><tr><th scope="col">Platform</th><th scope="col">Digest</th><th scope="col" class="num">Size</th><th scope="col" class="hide-sm">Media type</th></tr></thead>
      <tbody>${v.children.map(
        (c) => html`<tr><td>${c.platform ?? c.artifactType ?? '—'}</td>
          <td><a class="digest" href="${imageUrl(v.name, c.digest)}">${short(c.digest)}</a></td>
          <td class="num">${bytes(c.size)}</td><td class="mono hide-sm">${c.mediaType}</td></tr>`,
      )}</tbody></table></div>`
    : '';
  const layers = v.layers
    ? html`<h2>Layers</h2><div class="table-wrap"><table>
      <thead><tr><th scope="col">#</th><th scope="col">Digest</th><th scope="col" class="num">Size</th><th scope="col">Media type</th></tr></thead>
      <tbody>${v.layers.map(
        (l, i) => html`<tr><td class="num">${i + 1}</td><td class="digest" title="${l.digest}">${short(l.digest)}</td>
          <td class="num">${bytes(l.size)}</td><td class="mono">${l.mediaType}</td></tr>`,
      )}</tbody></table></div>`
    : '';
  const history = v.history?.length
    ? html`<h2>History</h2><div class="table-wrap"><table><thead><tr><th scope="col">Created</th><th scope="col">Step</th></tr></thead><tbody>${v.history.map(
        (h) =>
          html`<tr><td>${h.created ?? ''}</td><td class="mono">${h.created_by ?? h.comment ?? ''}${h.empty_layer ? html` <span class="muted">(no layer)</span>` : ''}</td></tr>`,
      )}</tbody></table></div>`
    : '';
  return html`<div class="crumbs"><a href="/ui/">Repositories</a> / <a href="${repoUrl(v.name)}">${v.name}</a> /</div>
  <h1>${v.name}${ref}</h1>
  <div class="copy">
    <code>docker pull ${opts.host}/${v.name}@${v.digest}</code>
    <button type="button" class="small" data-copy="docker pull ${opts.host}/${v.name}@${v.digest}">Copy</button>
    <code>berth pull ${opts.host}/${v.name}@${v.digest}</code>
    <button type="button" class="small" data-copy="berth pull ${opts.host}/${v.name}@${v.digest}">Copy</button>
  </div>
  <div class="grid spaced">
    <dl class="card">
      <dt>Digest</dt><dd class="mono">${v.digest}</dd>
      <dt>Media type</dt><dd class="mono">${v.mediaType}</dd>
      ${v.artifactType ? html`<dt>Artifact type</dt><dd class="mono">${v.artifactType}</dd>` : ''}
      <dt>Size</dt><dd>${bytes(v.size)}</dd>
    </dl>
    <dl class="card">
      ${v.platform ? html`<dt>Platform</dt><dd>${v.platform}</dd>` : ''}
      ${v.created ? html`<dt>Created</dt><dd>${v.created}</dd>` : ''}
      ${v.base ? html`<dt>Base image</dt><dd class="mono">${v.base.name ?? ''} ${v.base.digest ?? ''}</dd>` : ''}
      ${v.subject ? html`<dt>Subject</dt><dd><a class="digest" href="${imageUrl(v.name, v.subject)}">${v.subject}</a></dd>` : ''}
      <dt>Signature</dt><dd data-signature="${v.signatures.status}">${signatureStatus(v.signatures)}</dd>
    </dl>
  </div>
  ${opts.canDelete ? html`<p><a class="button danger" href="/ui/delete${qs({ repo: v.name, ref: v.digest })}">Delete this manifest…</a></p>` : ''}
  ${children}
  <h2>Referrers</h2>
  ${v.referrers.length ? referrerTree(v.name, v.referrers) : html`<p class="muted">No SBOMs, signatures, attestations or other artifacts refer to this manifest.</p>`}
  ${layers}
  ${v.labels ? html`<h2>Labels</h2>${kv(v.labels)}` : ''}
  <h2>Annotations</h2>${kv(v.annotations)}
  ${history}
  <h2>Manifest</h2>
  <pre tabindex="0">${JSON.stringify(v.manifest, null, 2)}</pre>
  ${v.config?.json !== undefined ? html`<details><summary>Config ${short(v.config.digest)} (${bytes(v.config.size)})</summary><pre tabindex="0">${JSON.stringify(v.config.json, null, 2)}</pre></details>` : ''}`;
}

export function sbomPage(v: SbomView, q: { q?: string }): Html {
  const link = (page: number) => `${sbomUrl(v.name, v.digest)}${qs({ q: q.q, kind: v.kind, page })}`;
  const cols =
    v.kind === 'files' ? ['name', 'checksum', 'license', 'id'] : ['name', 'version', 'license', 'purl', 'supplier'];
  return html`<div class="crumbs"><a href="/ui/">Repositories</a> / <a href="${repoUrl(v.name)}">${v.name}</a> / <a href="${imageUrl(v.name, v.digest)}">${short(v.digest)}</a> /</div>
  <h1>SBOM: ${v.document.name ?? v.digest}</h1>
  <dl class="card">
    <dt>Format</dt><dd>${v.format}</dd>
    ${v.document.created ? html`<dt>Created</dt><dd>${v.document.created}</dd>` : ''}
    ${v.document.creators ? html`<dt>Creators</dt><dd>${v.document.creators.join(', ')}</dd>` : ''}
    ${v.document.namespace ? html`<dt>Namespace</dt><dd class="mono">${v.document.namespace}</dd>` : ''}
  </dl>
  <form class="bar" method="get" action="${sbomUrl(v.name, v.digest)}" data-live role="search">
    <label for="q" class="muted">Search</label>
    <input type="search" id="q" name="q" value="${q.q ?? ''}" placeholder="name, version, license, purl…  (press /)" data-filter autocomplete="off" />
    <select name="kind" aria-label="Show">
      <option value="packages" ${v.kind === 'packages' ? 'selected' : ''}>packages (${v.packages})</option>
      <option value="files" ${v.kind === 'files' ? 'selected' : ''}>files (${v.files})</option>
    </select>
    <input type="hidden" name="page" value="" />
    <noscript><button type="submit">Apply</button></noscript>
  </form>
  <div id="results">
    ${pager(v.rows, link, v.kind)}
    <div class="table-wrap"><table>
      <thead><tr>${cols.map((c) => html`<th scope="col">${c}</th>`)}</tr></thead>
      <tbody>${
        v.rows.items.length
          ? v.rows.items.map(
              (r) =>
                html`<tr>${cols.map((c) => html`<td class="${c === 'name' ? '' : 'mono'}">${r[c] ?? ''}</td>`)}</tr>`,
            )
          : html`<tr><td colspan="${cols.length}" class="muted">Nothing matches.</td></tr>`
      }</tbody>
    </table></div>
  </div>`;
}

export interface MirrorsData {
  enabled: boolean;
  totals?: { hits: number; misses: number; inflightFills: number };
  upstreams: Array<{
    name: string;
    url: string;
    prefix: string;
    tagTtlMs: number;
    counters: Record<string, number> | null;
    repositories: Page<{
      name: string;
      remote: string;
      lastRefresh?: string;
      size: number;
      tags: Array<{ tag: string }>;
    }>;
  }>;
}

export function mirrorsPage(d: MirrorsData): Html {
  if (!d.enabled)
    return html`<h1>Mirrors</h1><p class="muted">No pull-through cache is configured (proxy.upstreams).</p>`;
  return html`<h1>Mirrors</h1>
  <p class="muted">Since this server started: ${d.totals?.hits ?? 0} cache hits, ${d.totals?.misses ?? 0} misses, ${d.totals?.inflightFills ?? 0} fills running.</p>
  ${d.upstreams.map(
    (u) => html`<h2>${u.name} <span class="muted mono">${u.url}</span></h2>
    <p>Prefix <code>${u.prefix}/</code> · tag TTL ${Math.round(u.tagTtlMs / 1000)}s ·
      hits ${u.counters?.hits ?? 0} · misses ${u.counters?.misses ?? 0} · revalidations ${u.counters?.revalidations ?? 0} ·
      stale serves ${u.counters?.staleServes ?? 0} · upstream errors ${u.counters?.upstreamErrors ?? 0} · fetched ${bytes(u.counters?.bytesFetched ?? 0)}</p>
    <div class="table-wrap"><table>
      <thead><tr><th scope="col">Cached repository</th><th scope="col">Tags</th><th scope="col">Last refresh</th><th scope="col" class="num">Size</th></tr></thead>
      <tbody>${
        u.repositories.items.length
          ? u.repositories.items.map(
              (r) => html`<tr><td><a href="${repoUrl(r.name)}">${r.remote}</a></td>
            <td>${r.tags.map((t) => html`<span class="chip">${t.tag}</span>`)}</td><td>${time(r.lastRefresh)}</td><td class="num">${bytes(r.size)}</td></tr>`,
            )
          : html`<tr><td colspan="4" class="muted">Nothing cached yet.</td></tr>`
      }</tbody>
    </table></div>`,
  )}`;
}

export function loginPage(opts: { error?: string; next: string }): Html {
  return html`<h1>Sign in</h1>
  ${opts.error ? html`<div class="notice error" role="alert">${opts.error}</div>` : ''}
  <form class="login" method="post" action="/ui/login">
    <label>User <input type="text" name="username" autocomplete="username" required autofocus /></label>
    <label>Password <input type="password" name="password" autocomplete="current-password" required /></label>
    <input type="hidden" name="next" value="${opts.next}" />
    <button type="submit" class="primary">Sign in</button>
  </form>
  <p class="muted">The same users and access rules as <code>docker login</code>. A robot token works as the password.</p>`;
}

export function confirmDeletePage(opts: {
  repo: string;
  ref: string;
  csrf: string;
  digest: string;
  isDigest: boolean;
}): Html {
  const what = opts.isDigest
    ? html`the manifest <code>${opts.repo}@${opts.ref}</code>, <strong>every tag pointing at it</strong>, and its referrer entry`
    : html`the tag <code>${opts.repo}:${opts.ref}</code> (the manifest <span class="digest">${opts.digest}</span> stays, with its other tags)`;
  return html`<div class="crumbs"><a href="/ui/">Repositories</a> / <a href="${repoUrl(opts.repo)}">${opts.repo}</a> /</div>
  <h1>Delete?</h1>
  <div class="notice error" role="alert">This deletes ${what}. Clients can no longer pull it. This cannot be undone.</div>
  <form method="post" action="/ui/delete" class="bar">
    <input type="hidden" name="repo" value="${opts.repo}" />
    <input type="hidden" name="ref" value="${opts.ref}" />
    <input type="hidden" name="csrf" value="${opts.csrf}" />
    <button type="submit" class="danger" autofocus>Delete</button>
    <a class="button" href="${opts.isDigest ? imageUrl(opts.repo, opts.ref) : repoUrl(opts.repo)}">Cancel</a>
  </form>`;
}

export function messagePage(title: string, message: string, link?: { href: string; text: string }): Html {
  return html`<h1>${title}</h1><div class="notice error" role="alert">${message}</div>${link ? html`<p><a href="${link.href}">${link.text}</a></p>` : ''}`;
}
