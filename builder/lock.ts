// berth.lock: pins `base:` to the digest it resolved to, so later builds (and other machines) use the same base
// even after the tag moves. Written on request (pipeline.ts `lock: 'write'`), honoured afterwards, rewritten from
// a fresh resolve by `lock: 'update'` (the CLI's --lock and --update-lock).
// A lock for a different base reference is ignored (the spec changed), never silently applied.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { canonicalJson } from '../spec/canonical-json.js';
import { isDigest, type Digest } from '../spec/digest.js';
import { BuildOptionError } from './spec.js';

export interface BuildLock {
  version: 1;
  base?: { ref: string; digest: Digest };
}

export function lockPath(specFile: string): string {
  return join(dirname(resolve(specFile)), 'berth.lock');
}

export async function readLock(specFile: string): Promise<BuildLock | undefined> {
  let text: string;
  try {
    text = await readFile(lockPath(specFile), 'utf8');
  } catch {
    return undefined;
  }
  let doc: any;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new BuildOptionError(
      'lock',
      `${lockPath(specFile)} is not valid JSON; delete it or resolve the base afresh to rewrite it`,
    );
  }
  if (doc?.version !== 1 || (doc.base && (typeof doc.base.ref !== 'string' || !isDigest(doc.base.digest)))) {
    throw new BuildOptionError(
      'lock',
      `${lockPath(specFile)} is not a berth.lock (version 1); delete it or resolve the base afresh to rewrite it`,
    );
  }
  return doc as BuildLock;
}

/** The digest to build `base` from, if the lock pins exactly this reference. */
export function lockedBase(lock: BuildLock | undefined, base: string | undefined): Digest | undefined {
  return base && lock?.base?.ref === base ? lock.base.digest : undefined;
}

export async function writeLock(specFile: string, lock: BuildLock): Promise<void> {
  const path = lockPath(specFile);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(JSON.parse(canonicalJson(lock)), null, 2)}\n`);
  await rename(tmp, path);
}
