// GET /v2/_catalog[?n=&last=]: repository names in lexical order, Link pagination.
import { pageParams, paginate, type Ctx } from '../context.js';
import { nextLink } from './tags.js';

export async function listCatalog(c: Ctx): Promise<Response> {
  const { n, last } = pageParams(c);
  let all = await c.var.options.store.manifests.catalog();
  const visible = c.get('catalogFilter');
  if (visible) all = all.filter(visible);
  const { page, more } = paginate(all, n, last);
  if (more) c.header('Link', nextLink('/v2/_catalog', n!, page[page.length - 1]));
  return c.json({ repositories: page });
}
