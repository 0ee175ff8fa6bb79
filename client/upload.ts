// Blob uploads (distribution-spec "Pushing blobs"): a cross-repository mount when asked, else a monolithic PUT for
// small blobs, one streamed PATCH for large ones (or `chunkSize` PATCHes), then the closing PUT with the digest.
// After a retryable failure the upload continues from the offset the registry reports for the session (end-13,
// GET <location> → Range), or starts over when it cannot. Repository.pushBlob (remote.ts) is the entry point.
// spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-blobs
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Digest } from '../spec/digest.js';
import type { Descriptor } from '../spec/manifest.js';
import { repoScope } from './auth.js';
import { isResumable, type Registry, RegistryError } from './registry.js';
import { countBytes } from './verify.js';

/** Opens a blob's bytes starting at `offset` (so an interrupted upload can resume). */
export type BlobSource = (offset: number) => Readable | Promise<Readable>;

export type PushResult = 'exists' | 'mounted' | 'uploaded';

/** An open upload session: where to send the next bytes, and how many the registry holds. */
interface _Session {
  url: string;
  offset: number;
}

/** The repository an upload goes to. */
export interface UploadTarget {
  registry: Registry;
  name: string;
  /** Send the blob in PATCHes of this many bytes (default: one streamed PATCH, or one PUT when small). */
  chunkSize?: number;
}

// Blobs up to this size go in one PUT; larger ones stream through one PATCH (or `chunkSize` PATCHes).
const MONOLITHIC_MAX = 16 << 20;
const UPLOAD_ATTEMPTS = 3;

/**
 * Uploads a blob the repository does not have yet (the caller checked): mount, or upload from `source`. The
 * registry verifies the digest.
 */
export async function uploadBlob(
  t: UploadTarget,
  desc: Pick<Descriptor, 'digest' | 'size'>,
  source: BlobSource,
  scopes: string[],
  opts: { mountFrom?: string; onBytes?: (n: number) => void } = {},
): Promise<'mounted' | 'uploaded'> {
  let session: _Session | undefined;
  if (opts.mountFrom && opts.mountFrom !== t.name) {
    // spec: end-11 — 201 when mounted, 202 + an upload session when the registry can't mount.
    const q = new URLSearchParams({ mount: desc.digest, from: opts.mountFrom });
    const res = await t.registry.request({
      method: 'POST',
      url: `/v2/${t.name}/blobs/uploads/?${q}`,
      scopes: [...scopes, repoScope(opts.mountFrom, ['pull'])],
      ok: [201, 202],
    });
    await res.dump();
    if (res.status === 201) return 'mounted';
    const location = res.header('location');
    if (location) session = { url: new URL(location, `${await t.registry.baseUrl()}/`).toString(), offset: 0 };
  }
  // Progress is told about bytes sent; a resume rewinds it to the registry's offset so totals stay true.
  let reported = 0;
  const onBytes = (n: number) => {
    reported += n;
    opts.onBytes?.(n);
  };
  const state: { session?: _Session } = { session };
  for (let attempt = 1; ; attempt++) {
    try {
      await _upload(t, desc, source, state, scopes, opts.onBytes && onBytes);
      return 'uploaded';
    } catch (e) {
      if (e instanceof RegistryError && e.code === 'DIGEST_INVALID') {
        // Copies do not hash on the way (the registry does): name the source as the culprit, like VerifyStream would.
        throw new RegistryError(
          `${t.registry.host} rejected blob ${desc.digest}: the bytes read from the source do not match that digest; the source is corrupt or was changed — retry, or check the source`,
          e.status,
          e.code,
        );
      }
      // 416: the registry disagrees about where a resumed session stands — start over.
      const misplaced = e instanceof RegistryError && e.status === 416 && !!state.session?.offset;
      if (attempt >= UPLOAD_ATTEMPTS || !(misplaced || isResumable(e))) throw e;
      await sleep(200 * 2 ** attempt);
      state.session =
        state.session && !misplaced ? await _uploadStatus(t, state.session.url, desc.size, scopes) : undefined;
      const offset = state.session?.offset ?? 0;
      if (offset !== reported) onBytes(offset - reported);
    }
  }
}

/** Where an interrupted session stands (GET <location> → 204 + Range), or undefined to start over. */
async function _uploadStatus(
  t: UploadTarget,
  url: string,
  size: number,
  scopes: string[],
): Promise<_Session | undefined> {
  try {
    const res = await t.registry.request({ method: 'GET', url, scopes, ok: [204, 200, 404, 400, 405] });
    await res.dump();
    // distribution answers `0-0` for an empty session too: resuming at 0 is then right, and a 1-byte
    // session would answer 416 below and start over.
    const m = /^(?:bytes=)?0-(\d+)$/.exec(res.header('range')?.trim() ?? '');
    if (res.status >= 300 || !m) return undefined;
    const last = Number(m[1]);
    const offset = last === 0 ? 0 : last + 1;
    if (offset > size) return undefined;
    const location = res.header('location');
    return { url: location ? new URL(location, url).toString() : url, offset };
  } catch (e) {
    if (isResumable(e)) return undefined;
    throw e;
  }
}

async function _upload(
  t: UploadTarget,
  desc: Pick<Descriptor, 'digest' | 'size'>,
  source: BlobSource,
  state: { session?: _Session },
  scopes: string[],
  onBytes?: (n: number) => void,
): Promise<void> {
  if (!state.session) {
    const res = await t.registry.request({
      method: 'POST',
      url: `/v2/${t.name}/blobs/uploads/`,
      scopes,
      ok: [202],
    });
    await res.dump();
    const location = res.header('location');
    if (!location) throw new RegistryError(`${t.registry.host} started an upload without a Location header`, 202);
    state.session = { url: new URL(location, `${await t.registry.baseUrl()}/`).toString(), offset: 0 };
  }
  const session = state.session;
  const counted = async (offset: number, length?: number) => {
    let s = await source(offset);
    if (length !== undefined) s = _take(s, length);
    return onBytes ? countBytes(s, onBytes) : s;
  };
  const chunk = t.chunkSize;
  if (session.offset === 0 && desc.size <= MONOLITHIC_MAX && !chunk) {
    // Monolithic: PUT <location>?digest= with the whole body. The stream is opened lazily per attempt.
    let body: Readable | undefined = await counted(0);
    const res = await t.registry.request({
      method: 'PUT',
      url: _withDigest(session.url, desc.digest),
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
      body: () => {
        const b = body;
        body = undefined;
        if (!b) throw Object.assign(new Error('upload body already consumed'), { code: 'ECONNRESET' });
        return b;
      },
      scopes,
      retry: false,
      ok: [201],
    });
    await res.dump();
    return;
  }
  // Streamed (one PATCH, no Content-Range) or chunked (Content-Range a-b per chunk), then an empty PUT.
  // A resumed session always says where its PATCH starts (Content-Range), so the registry can refuse a gap.
  const step = chunk ?? desc.size;
  while (session.offset < desc.size) {
    const offset = session.offset;
    const len = Math.min(step, desc.size - offset);
    const b = await counted(offset, len < desc.size - offset ? len : undefined);
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-length': String(len),
    };
    if (chunk || offset > 0) headers['content-range'] = `${offset}-${offset + len - 1}`;
    const res = await t.registry.request({
      method: 'PATCH',
      url: session.url,
      headers,
      body: () => b,
      scopes,
      retry: false,
      ok: [202],
    });
    await res.dump();
    const next = res.header('location');
    if (next) session.url = new URL(next, session.url).toString();
    session.offset = offset + len;
  }
  const res = await t.registry.request({
    method: 'PUT',
    url: _withDigest(session.url, desc.digest),
    headers: { 'content-length': '0' },
    scopes,
    ok: [201],
  });
  await res.dump();
}

function _withDigest(location: string, digest: Digest): string {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u.toString();
}

/** The first `n` bytes of a stream (chunked uploads read slices of one source). */
function _take(src: Readable, n: number): Readable {
  let left = n;
  async function* gen() {
    for await (const c of src as AsyncIterable<Buffer>) {
      if (c.length >= left) {
        yield c.subarray(0, left);
        left = 0;
        break;
      }
      left -= c.length;
      yield c;
    }
    src.destroy();
  }
  return Readable.from(gen(), { objectMode: false });
}
