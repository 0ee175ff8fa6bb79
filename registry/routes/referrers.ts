// GET /v2/<name>/referrers/<digest>[?artifactType=]  (end-12): always an image index, possibly empty.
import { OCI_INDEX } from '../../spec/index.js';
import type { Ctx } from '../context.js';
import { parseDigestParam } from './blobs.js';

export async function listReferrers(c: Ctx): Promise<Response> {
  const digest = parseDigestParam(c.var.target.reference);
  const artifactType = c.req.query('artifactType') || undefined;
  const { index, filtered } = await c.var.options.store.manifests.referrers(c.var.target.name!, digest, artifactType);
  const headers: Record<string, string> = { 'Content-Type': OCI_INDEX };
  if (filtered) headers['OCI-Filters-Applied'] = 'artifactType';
  return c.body(JSON.stringify(index), 200, headers);
}
