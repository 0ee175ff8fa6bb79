// Password users: `auth.users` entries with a bcrypt hash, and an htpasswd file (bcrypt lines only; re-read when it
// changes). A successful check is remembered for a few minutes (keyed by a digest of name and password), because
// bcrypt costs tens of milliseconds and Basic-auth clients send the password with every request.
import { statSync, readFileSync } from 'node:fs';
import { createHash, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { LRUCache } from 'lru-cache';
import type { AuthConfig } from './config.js';

export interface User {
  name: string;
  groups: string[];
}

export class UserConfigError extends Error {}

const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
// A real hash of a random password: unknown users cost as much as known ones (no user enumeration by timing).
const DUMMY_HASH = '$2b$10$0ZJvDS9P2CEKDetFDdMTKeHDlfMXN9KAAzPJMqjX2pCWViwNuffHq';

export class Users {
  private readonly fromConfig = new Map<string, string>();
  private readonly groups = new Map<string, string[]>();
  private htpasswd = new Map<string, string>();
  private htpasswdVersion = '';
  private checkedAt = 0;
  private readonly good = new LRUCache<string, Buffer>({ max: 10_000, ttl: 5 * 60_000 });

  constructor(
    private readonly config: AuthConfig,
    private readonly onWarn: (msg: string) => void = () => {},
  ) {
    for (const u of config.users ?? []) {
      if (u.passwordHash !== undefined) this.fromConfig.set(u.name, u.passwordHash);
      this.groups.set(u.name, u.groups ?? []);
    }
    if (config.htpasswd) this._reload(true);
  }

  /** The user, when name and password are right; undefined otherwise (always after a full bcrypt compare). */
  async check(name: string, password: string): Promise<User | undefined> {
    if (this.config.htpasswd) this._reload(false);
    const hash = this.fromConfig.get(name) ?? this.htpasswd.get(name);
    const key = createHash('sha256')
      .update(`${name}\0${password}\0${hash ?? ''}`)
      .digest();
    const cached = this.good.get(key.toString('hex'));
    if (cached && timingSafeEqual(cached, key)) return this._user(name);
    const ok = await bcrypt.compare(password, (hash ?? DUMMY_HASH).replace(/^\$2y\$/, '$2b$'));
    if (!ok || hash === undefined) return undefined;
    this.good.set(key.toString('hex'), key);
    return this._user(name);
  }

  exists(name: string): boolean {
    if (this.config.htpasswd) this._reload(false);
    return this.fromConfig.has(name) || this.htpasswd.has(name);
  }

  private _user(name: string): User {
    return { name, groups: this.groups.get(name) ?? [] };
  }

  /** Re-reads the htpasswd file when its mtime or size changed (checked at most every 2 s). */
  private _reload(initial: boolean): void {
    const path = this.config.htpasswd!.path;
    const now = Date.now();
    if (!initial && now - this.checkedAt < 2_000) return;
    this.checkedAt = now;
    let version: string;
    try {
      const st = statSync(path);
      version = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch (e) {
      if (initial)
        throw new UserConfigError(
          `auth.htpasswd.path: cannot read ${path} (${(e as NodeJS.ErrnoException).code}); create it with \`htpasswd -B -c ${path} USER\``,
        );
      return; // keep the last good contents while the file is being replaced
    }
    if (version === this.htpasswdVersion) return;
    const next = new Map<string, string>();
    const text = readFileSync(path, 'utf8');
    for (const [i, raw] of text.split('\n').entries()) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const colon = line.indexOf(':');
      const name = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      if (colon <= 0 || !BCRYPT.test(hash)) {
        this.onWarn(`${path}:${i + 1}: skipped: only bcrypt entries are accepted (htpasswd -B)`);
        continue;
      }
      next.set(name, hash);
    }
    this.htpasswd = next;
    this.htpasswdVersion = version;
    this.good.clear();
  }
}
