// GET /v2/<name>/referrers/<digest>[?artifactType=&n=&last=]  (end-12): always an image index, possibly empty,
// paginated with a Link header when more than n (default: the page cap) remain.
import { OCI_INDEX } from '../../spec/index.js';
import { pageParams, paginate, type Ctx } from '../context.js';
import { parseDigestParam } from './blobs.js';

export async function listReferrers(c: Ctx): Promise<Response> {
  const name = c.var.target.name!;
  const digest = parseDigestParam(c.var.target.reference);
  const artifactType = c.req.query('artifactType') || undefined;
  const { n = c.var.options.maxPageSize, last } = pageParams(c);
  const all = await c.var.options.store.manifests.referrers(name, digest, artifactType);
  const { page, more } = paginate(
    all.map((d) => d.digest),
    n,
    last,
  );
  const chosen = new Set(page);
  const headers: Record<string, string> = { 'Content-Type': OCI_INDEX };
  if (artifactType) headers['OCI-Filters-Applied'] = 'artifactType';
  if (more) {
    const filter = artifactType ? `&artifactType=${encodeURIComponent(artifactType)}` : '';
    headers.Link = `</v2/${name}/referrers/${digest}?n=${n}&last=${page[page.length - 1]}${filter}>; rel="next"`;
  }
  const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: all.filter((d) => chosen.has(d.digest)) };
  return c.body(JSON.stringify(index), 200, headers);
}
