// Auth state kept in the registry's storage, so every replica (and `berth token` on the same root) sees it: signing
// keys, robot tokens and refresh tokens, one small file each in a flat directory per kind (layout: paths.ts). What
// the files mean is registry/auth's business (state.ts, keys.ts); this store only reads, writes, lists and removes
// them, so registry/ never touches the driver (issue 15).
//   read(kind, file) / write(kind, file, data) / remove(kind, file) → whether it was there / list(kind)
//   describe(kind, file)   where a file lives, for messages ("storage:auth/keys/signing.pem")
import type { Driver } from './driver.js';
import { paths, type AuthKind } from './paths.js';

export type { AuthKind } from './paths.js';

export class AuthStore {
  constructor(private readonly driver: Driver) {}

  async read(kind: AuthKind, file: string): Promise<Buffer | undefined> {
    return this.driver.get(paths.authFile(kind, file));
  }

  async write(kind: AuthKind, file: string, data: string | Buffer): Promise<void> {
    return this.driver.put(paths.authFile(kind, file), data);
  }

  /** Removes the file; true when it existed. */
  async remove(kind: AuthKind, file: string): Promise<boolean> {
    const path = paths.authFile(kind, file);
    const had = (await this.driver.stat(path)) !== undefined;
    await this.driver.delete(path);
    return had;
  }

  /** File names of `kind` (unsorted, as the driver lists them). */
  async list(kind: AuthKind): Promise<string[]> {
    return this.driver.list(paths.auth(kind));
  }

  describe(kind: AuthKind, file: string): string {
    return `storage:${paths.authFile(kind, file)}`;
  }
}
