// Registry credentials, read where docker and podman keep them, in the order containers-auth.json(5) documents:
// $REGISTRY_AUTH_FILE, then ${XDG_RUNTIME_DIR}/containers/auth.json, then $DOCKER_CONFIG/config.json
// (~/.docker/config.json). In each file: `credHelpers[host]`, then `auths[host]`, then `credsStore`.
// Helpers are `docker-credential-<name>` programs speaking docker-credential-helpers' stdin/stdout protocol.
// https://github.com/docker/docker-credential-helpers#development
import { spawn } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker's `identitytoken`): exchanged with grant_type=refresh_token. */
  identityToken?: string;
}

/** Where credentials come from. The client only needs `get`; `login`/`logout` use `store`/`erase`. */
export interface CredentialStore {
  get(host: string): Promise<Credentials | undefined>;
}

// Docker Hub's credentials live under the v1 index URL for historical reasons.
const HUB_KEY = 'https://index.docker.io/v1/';
const HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/** The key docker uses in config.json for a registry host. */
export function configKey(host: string): string {
  return HUB_HOSTS.has(host) ? HUB_KEY : host;
}

function _sameHost(key: string, host: string): boolean {
  if (key === host) return true;
  // Keys may be URLs (`https://host/v1/`, `http://host`); compare their authority.
  const stripped = key.replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, '');
  if (stripped === host) return true;
  return HUB_HOSTS.has(host) && (key === HUB_KEY || HUB_HOSTS.has(stripped));
}

interface ConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [k: string]: unknown;
}

export function dockerConfigPath(env = process.env): string {
  return join(env.DOCKER_CONFIG || join(homedir(), '.docker'), 'config.json');
}

/** Candidate files, most specific first (the first that knows the host wins). */
export function authFiles(env = process.env): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(dockerConfigPath(env));
  return files;
}

async function _readConfig(path: string): Promise<ConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const doc = JSON.parse(text);
    return doc && typeof doc === 'object' ? doc : undefined;
  } catch {
    throw new Error(`${path} is not valid JSON; fix or remove it`);
  }
}

function _fromAuthEntry(e: NonNullable<ConfigFile['auths']>[string]): Credentials | undefined {
  if (!e || typeof e !== 'object') return undefined;
  if (e.identitytoken) {
    return { username: e.username ?? _decode(e.auth)?.username, identityToken: e.identitytoken };
  }
  if (e.auth) return _decode(e.auth);
  if (e.username && e.password) return { username: e.username, password: e.password };
  return undefined;
}

function _decode(auth: string | undefined): Credentials | undefined {
  if (!auth) return undefined;
  const text = Buffer.from(auth, 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i < 0) return undefined;
  return { username: text.slice(0, i), password: text.slice(i + 1) };
}

/** Runs `docker-credential-<helper> <action>` with `input` on stdin; returns stdout. */
export function runHelper(helper: string, action: 'get' | 'store' | 'erase', input: string): Promise<string> {
  if (!/^[A-Za-z0-9._-]+$/.test(helper)) return Promise.reject(new Error(`bad credential helper name "${helper}"`));
  return new Promise((resolve, reject) => {
    const child = spawn(`docker-credential-${helper}`, [action], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          e.code === 'ENOENT'
            ? `credential helper docker-credential-${helper} not found on PATH; install it or remove it from your docker config`
            : e.message,
        ),
      ),
    );
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else
        reject(
          Object.assign(new Error(`docker-credential-${helper} ${action} failed: ${(out || err).trim()}`), {
            helperOutput: out,
          }),
        );
    });
    child.stdin.end(input);
  });
}

async function _helperGet(helper: string, host: string): Promise<Credentials | undefined> {
  let out: string;
  try {
    out = await runHelper(helper, 'get', configKey(host));
  } catch (e) {
    // Helpers print "credentials not found in native keychain" and exit 1 for unknown hosts.
    if (/not found/i.test(String((e as any).helperOutput ?? (e as Error).message))) return undefined;
    throw e;
  }
  const doc = JSON.parse(out) as { Username?: string; Secret?: string };
  if (!doc.Secret) return undefined;
  // docker-credential-helpers convention: username "<token>" means the secret is an identity token.
  if (doc.Username === '<token>') return { identityToken: doc.Secret };
  return { username: doc.Username, password: doc.Secret };
}

/** The standard store: auth files + helpers, as docker and podman read them. */
export class DockerCredentialStore implements CredentialStore {
  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  async get(host: string): Promise<Credentials | undefined> {
    for (const file of authFiles(this.env)) {
      const cfg = await _readConfig(file);
      if (!cfg) continue;
      const helper = Object.entries(cfg.credHelpers ?? {}).find(([k]) => _sameHost(k, host))?.[1];
      if (helper) return _helperGet(helper, host);
      const entry = Object.entries(cfg.auths ?? {}).find(([k]) => _sameHost(k, host))?.[1];
      const creds = entry && _fromAuthEntry(entry);
      if (creds) return creds;
      if (cfg.credsStore) {
        const c = await _helperGet(cfg.credsStore, host);
        if (c) return c;
      }
    }
    return undefined;
  }

  /** The file `berth login` writes: $REGISTRY_AUTH_FILE when set, else docker's config.json (like docker login). */
  writeTarget(): string {
    return this.env.REGISTRY_AUTH_FILE || dockerConfigPath(this.env);
  }

  /** Saves credentials the way docker login does: to the host's helper / credsStore, else base64 in `auths`. */
  async store(host: string, creds: Required<Pick<Credentials, 'username' | 'password'>>): Promise<string> {
    const path = this.writeTarget();
    const cfg = (await _readConfig(path)) ?? {};
    const key = configKey(host);
    const helper = cfg.credHelpers?.[key] ?? cfg.credHelpers?.[host] ?? cfg.credsStore;
    if (helper) {
      await runHelper(
        helper,
        'store',
        JSON.stringify({ ServerURL: key, Username: creds.username, Secret: creds.password }),
      );
      cfg.auths = { ...cfg.auths, [key]: {} };
      await _writeConfig(path, cfg);
      return `docker-credential-${helper}`;
    }
    const auth = Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
    cfg.auths = { ...cfg.auths, [key]: { auth } };
    await _writeConfig(path, cfg);
    return path;
  }

  /** Forgets a host everywhere berth would find it; returns whether anything was removed. */
  async erase(host: string): Promise<boolean> {
    let removed = false;
    for (const path of authFiles(this.env)) {
      const cfg = await _readConfig(path);
      if (!cfg) continue;
      const helper = Object.entries(cfg.credHelpers ?? {}).find(([k]) => _sameHost(k, host))?.[1] ?? cfg.credsStore;
      if (helper) {
        try {
          await runHelper(helper, 'erase', configKey(host));
          removed = true;
        } catch {
          /* not stored there */
        }
      }
      const keys = Object.keys(cfg.auths ?? {}).filter((k) => _sameHost(k, host));
      if (keys.length) {
        for (const k of keys) delete cfg.auths![k];
        await _writeConfig(path, cfg);
        removed = true;
      }
    }
    return removed;
  }
}

async function _writeConfig(path: string, cfg: ConfigFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(cfg, null, '\t')}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

/** Fixed credentials (tests, `--username/--password`, the proxy's upstream config). */
export function staticCredentials(map: Record<string, Credentials>): CredentialStore {
  return { get: async (host) => map[host] };
}
