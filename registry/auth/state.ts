// Auth state kept in the registry's storage (so every replica, and `berth token` on the same root, sees it):
//
//   auth/keys/signing.pem              PKCS#8 private key that signs access tokens (generated on first start)
//   auth/keys/<name>.pem               further keys, verification only (rotation: move the old signing key here)
//   auth/robots/<id>.json              robot token: name, sha256 of its secret, limits, expiry
//   auth/refresh/<sha256>.json         refresh token (offline_token): owner, expiry; deleting it revokes it
//
// (storage/paths.ts draws these prefixes with the rest of the layout; storage/auth.ts reads and writes the files.)
// Secrets are never stored: only SHA-256 digests of 256-bit random values, compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuthStore } from '../../storage/index.js';
import type { RobotScope } from './acl.js';

export interface RobotRecord {
  id: string;
  name: string;
  /** hex SHA-256 of the secret part. */
  hash: string;
  scopes: RobotScope[];
  createdAt: string;
  expiresAt: string;
  description?: string;
}

export interface RefreshRecord {
  id: string;
  kind: 'user' | 'robot';
  name: string;
  robotId?: string;
  clientId?: string;
  createdAt: string;
  expiresAt: string;
}

const ROBOT_TOKEN = /^berth_robot_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const REFRESH_TOKEN = /^berth_refresh_[A-Za-z0-9_-]{43}$/;

export function sha256hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function _equalHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

export function isRobotToken(s: string): boolean {
  return s.startsWith('berth_robot_');
}

export class AuthState {
  constructor(readonly store: AuthStore) {}

  async _json<T>(kind: 'robots' | 'refresh', file: string): Promise<T | undefined> {
    const raw = await this.store.read(kind, file);
    if (!raw) return undefined;
    try {
      return JSON.parse(raw.toString('utf8')) as T;
    } catch {
      return undefined; // a damaged record authenticates nobody
    }
  }

  // Robots ------------------------------------------------------------------------------------------------------

  /** Creates a robot; returns the record and the token, which is shown once and never stored. */
  async createRobot(r: {
    name: string;
    scopes: RobotScope[];
    expiresAt: Date;
    description?: string;
  }): Promise<{ record: RobotRecord; token: string }> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const record: RobotRecord = {
      id,
      name: r.name,
      hash: sha256hex(secret),
      scopes: r.scopes,
      createdAt: new Date().toISOString(),
      expiresAt: r.expiresAt.toISOString(),
      ...(r.description ? { description: r.description } : {}),
    };
    await this.store.write('robots', `${id}.json`, JSON.stringify(record));
    return { record, token: `berth_robot_${id}_${secret}` };
  }

  /** The robot a token belongs to, when the token is genuine and unexpired. */
  async robotForToken(token: string, now = Date.now()): Promise<RobotRecord | undefined> {
    const m = ROBOT_TOKEN.exec(token);
    if (!m) return undefined;
    const record = await this.robot(m[1]);
    if (!record || !_equalHex(record.hash, sha256hex(m[2]))) return undefined;
    if (!(Date.parse(record.expiresAt) > now)) return undefined;
    return record;
  }

  async robot(id: string): Promise<RobotRecord | undefined> {
    if (!/^[0-9a-f]{16}$/.test(id)) return undefined;
    return this._json<RobotRecord>('robots', `${id}.json`);
  }

  async listRobots(): Promise<RobotRecord[]> {
    const out: RobotRecord[] = [];
    for (const f of await this.store.list('robots')) {
      if (!f.endsWith('.json')) continue;
      const r = await this._json<RobotRecord>('robots', f);
      if (r) out.push(r);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  // Refresh tokens ----------------------------------------------------------------------------------------------

  async createRefresh(r: Omit<RefreshRecord, 'id' | 'createdAt'>): Promise<string> {
    const token = `berth_refresh_${randomBytes(32).toString('base64url')}`;
    const hash = sha256hex(token);
    const record: RefreshRecord = { id: hash.slice(0, 16), createdAt: new Date().toISOString(), ...r };
    await this.store.write('refresh', `${hash}.json`, JSON.stringify(record));
    return token;
  }

  async refreshForToken(token: string, now = Date.now()): Promise<RefreshRecord | undefined> {
    if (!REFRESH_TOKEN.test(token)) return undefined;
    const record = await this._json<RefreshRecord>('refresh', `${sha256hex(token)}.json`);
    if (!record || !(Date.parse(record.expiresAt) > now)) return undefined;
    return record;
  }

  async revokeRefreshToken(token: string): Promise<boolean> {
    if (!REFRESH_TOKEN.test(token)) return false;
    return this.store.remove('refresh', `${sha256hex(token)}.json`);
  }

  async listRefresh(): Promise<RefreshRecord[]> {
    const out: RefreshRecord[] = [];
    for (const f of await this.store.list('refresh')) {
      if (!f.endsWith('.json')) continue;
      const r = await this._json<RefreshRecord>('refresh', f);
      if (r) out.push(r);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /**
   * Revokes a robot (by id or name: every robot of that name) or a refresh token (by the id `berth token list`
   * shows). Returns what was removed.
   */
  async revoke(idOrName: string): Promise<string[]> {
    const removed: string[] = [];
    for (const r of await this.listRobots()) {
      if (r.id === idOrName || r.name === idOrName) {
        await this.store.remove('robots', `${r.id}.json`);
        removed.push(`robot ${r.name} (${r.id})`);
      }
    }
    if (/^[0-9a-f]{16}$/.test(idOrName)) {
      for (const f of await this.store.list('refresh')) {
        if (f.startsWith(idOrName) && f.endsWith('.json')) {
          await this.store.remove('refresh', f);
          removed.push(`refresh token ${idOrName}`);
        }
      }
    }
    return removed;
  }

  /** Drops expired robots and refresh tokens. */
  async prune(now = Date.now()): Promise<number> {
    let n = 0;
    for (const r of await this.listRobots()) {
      if (!(Date.parse(r.expiresAt) > now)) {
        await this.store.remove('robots', `${r.id}.json`);
        n++;
      }
    }
    for (const f of await this.store.list('refresh')) {
      const r = await this._json<RefreshRecord>('refresh', f);
      if (!r || !(Date.parse(r.expiresAt) > now)) {
        await this.store.remove('refresh', f);
        n++;
      }
    }
    return n;
  }
}
