// Shared helpers of the auth tests: an in-process registry on the memory driver with a given `auth` config, token
// fetching, bcrypt users, and a small OCI image to push.
import bcrypt from 'bcryptjs';
import { createRegistry, createLogger, loadConfig } from '../../registry/index.js';
import { MemoryDriver } from '../../storage/memory.js';
import { digestOf } from '../../spec/index.js';

export const PASSWORDS: Record<string, string> = {
  alice: 'alice-pw',
  bob: 'bob-pw',
  carol: 'carol-pw',
  admin: 'admin-pw',
};
const _hashes = new Map<string, string>();
export function hash(pw: string): string {
  let h = _hashes.get(pw);
  if (!h) _hashes.set(pw, (h = bcrypt.hashSync(pw, 4)));
  return h;
}

export function user(name: string, groups: string[] = []) {
  return { name, passwordHash: hash(PASSWORDS[name] ?? `${name}-pw`), groups };
}

export function makeRegistry(auth: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const config = loadConfig({
    env: {},
    flags: { auth, log: { level: 'silent', requests: false }, metrics: { enabled: false }, ...extra },
  });
  const driver = new MemoryDriver();
  const registry = createRegistry(
    config,
    driver,
    createLogger('silent', false, () => {}),
  );
  return { registry, driver, app: registry.app, core: registry.auth!.core };
}

export type App = ReturnType<typeof makeRegistry>['app'];

export function basic(name: string, password = PASSWORDS[name] ?? `${name}-pw`): string {
  return `Basic ${Buffer.from(`${name}:${password}`).toString('base64')}`;
}

/** GET /token with Basic credentials (or anonymously); returns the parsed body and status. */
export async function getToken(
  app: App,
  creds: string | undefined,
  scopes: string[],
  extra = '',
): Promise<{ status: number; body: any }> {
  const q = scopes.map((s) => `scope=${encodeURIComponent(s)}`).join('&');
  const res = await app.request(`http://reg.test/token?service=berth&${q}${extra}`, {
    headers: creds ? { Authorization: creds } : {},
  });
  return { status: res.status, body: await res.json() };
}

export async function bearer(app: App, creds: string | undefined, scopes: string[]): Promise<string> {
  const { status, body } = await getToken(app, creds, scopes);
  if (status !== 200) throw new Error(`token: ${status} ${JSON.stringify(body)}`);
  return `Bearer ${body.token}`;
}

/** Pushes a one-layer image `name:tag` with the given Authorization; returns the status of each step. */
export async function pushImage(
  app: App,
  auth: string | undefined,
  name: string,
  tag = 'v1',
  layer = Buffer.from(`layer of ${name}`),
) {
  const headers = (h: Record<string, string> = {}) => (auth ? { ...h, Authorization: auth } : h);
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  const statuses: number[] = [];
  for (const blob of [layer, config]) {
    const res = await app.request(`http://reg.test/v2/${name}/blobs/uploads/?digest=${digestOf(blob)}`, {
      method: 'POST',
      body: blob,
      headers: headers(),
    });
    statuses.push(res.status);
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(layer), size: layer.length }],
    }),
  );
  const res = await app.request(`http://reg.test/v2/${name}/manifests/${tag}`, {
    method: 'PUT',
    body: manifest,
    headers: headers({ 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }),
  });
  statuses.push(res.status);
  return { statuses, layerDigest: digestOf(layer), manifestDigest: digestOf(manifest) };
}
