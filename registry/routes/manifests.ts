// GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>  (end-3, end-7, end-9)
import { OciError, isDigest, isValidTag } from '../../spec/index.js';
import { readLimited, requireDeletes, type Ctx } from '../context.js';

function checkReference(reference: string | undefined): string {
  const ref = reference ?? '';
  if (isDigest(ref) || isValidTag(ref)) return ref;
  if (ref.includes(':')) throw new OciError('DIGEST_INVALID', `invalid digest "${ref.slice(0, 200)}"`);
  throw new OciError('TAG_INVALID', `invalid tag "${ref.slice(0, 200)}": allowed [A-Za-z0-9_][A-Za-z0-9._-]{0,127}`);
}

export async function getManifest(c: Ctx): Promise<Response> {
  const reference = checkReference(c.var.target.reference);
  // Whatever the Accept header says, the stored type is served (clients convert, the registry never does).
  const m = await c.var.options.store.manifests.get(c.var.target.name!, reference);
  const headers = {
    'Content-Type': m.mediaType,
    'Docker-Content-Digest': m.digest,
    'Content-Length': String(m.bytes.length),
    ETag: `"${m.digest}"`,
  };
  if (c.req.method === 'HEAD') return c.body(null, 200, headers);
  return c.body(
    new Uint8Array(m.bytes.buffer, m.bytes.byteOffset, m.bytes.length) as Uint8Array<ArrayBuffer>,
    200,
    headers,
  );
}

export async function putManifest(c: Ctx): Promise<Response> {
  const { store, maxManifestBytes } = c.var.options;
  const name = c.var.target.name!;
  const reference = checkReference(c.var.target.reference);
  const body = await readLimited(c, maxManifestBytes);
  const tags = isDigest(reference) ? (c.req.queries('tag') ?? []) : [];
  const result = await store.manifests.put(name, reference, body, c.req.header('content-type'), tags);
  const headers: Record<string, string> = {
    Location: `/v2/${name}/manifests/${result.digest}`,
    'Docker-Content-Digest': result.digest,
    'Content-Length': '0',
  };
  if (result.subject) headers['OCI-Subject'] = result.subject;
  if (tags.length) headers['OCI-Tag'] = tags.join(', ');
  return c.body(null, 201, headers);
}

export async function deleteManifest(c: Ctx): Promise<Response> {
  requireDeletes(c);
  const reference = checkReference(c.var.target.reference);
  await c.var.options.store.manifests.delete(c.var.target.name!, reference);
  return c.body(null, 202, { 'Content-Length': '0' });
}
