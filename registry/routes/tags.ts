// GET /v2/<name>/tags/list[?n=&last=]  (end-8): lexical order, exactly n unless fewer remain, Link for more.
import { pageParams, paginate, type Ctx } from '../context.js';

export function nextLink(path: string, n: number, last: string): string {
  return `<${path}?n=${n}&last=${encodeURIComponent(last)}>; rel="next"`;
}

export async function listTags(c: Ctx): Promise<Response> {
  const name = c.var.target.name!;
  const { n, last } = pageParams(c);
  const all = await c.var.options.store.manifests.tags(name);
  const { page, more } = paginate(all, n, last);
  if (more) c.header('Link', nextLink(`/v2/${name}/tags/list`, n!, page[page.length - 1]));
  return c.json({ name, tags: page });
}
