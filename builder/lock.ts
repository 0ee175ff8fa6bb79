// berth.lock: pins `base:` to the digest it resolved to, and `packages.debian` to the exact .debs (name, version,
// architecture, sha256, size, url) per architecture, so later builds (and other machines) use the same base and
// packages even after the tag moves or the archive publishes updates. Written on request (pipeline.ts `lock: 'write'`), honoured afterwards, rewritten from
// a fresh resolve by `lock: 'update'` (the CLI's --lock and --update-lock).
// A lock for a different base reference, or for other Debian sources/include/exclude (its `inputs` hash), is
// ignored for that part (the spec changed), never silently applied.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { canonicalJson } from '../spec/canonical-json.js';
import { isDigest, type Digest } from '../spec/digest.js';
import type { DebianLock, LockedDeb } from './debian.js';
import { BuildOptionError } from './spec.js';

export interface BuildLock {
  version: 1;
  base?: { ref: string; digest: Digest };
  debian?: DebianLock;
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
  if (
    doc?.version !== 1 ||
    (doc.base && (typeof doc.base.ref !== 'string' || !isDigest(doc.base.digest))) ||
    (doc.debian !== undefined && !_isDebianLock(doc.debian))
  ) {
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

function _isDebianLock(d: any): d is DebianLock {
  if (typeof d?.inputs !== 'string' || !d.architectures || typeof d.architectures !== 'object') return false;
  return Object.values(d.architectures).every(
    (list) =>
      Array.isArray(list) &&
      list.every(
        (p: any) =>
          typeof p?.name === 'string' &&
          typeof p.version === 'string' &&
          typeof p.architecture === 'string' &&
          /^[0-9a-f]{64}$/.test(p.sha256) &&
          Number.isSafeInteger(p.size) &&
          Number.isSafeInteger(p.source) &&
          typeof p.filename === 'string' &&
          !p.filename.startsWith('/') &&
          !p.filename.split('/').includes('..'),
      ),
  );
}

/** What changed between two locks' package sets, one line each: `+ name version (arch)`, `- …`, `~ name a → b`. */
export function debianChanges(before: DebianLock | undefined, after: DebianLock | undefined): string[] {
  const out: string[] = [];
  const archs = new Set([...Object.keys(before?.architectures ?? {}), ...Object.keys(after?.architectures ?? {})]);
  for (const arch of [...archs].sort()) {
    const a = new Map((before?.architectures[arch] ?? []).map((p: LockedDeb) => [p.name, p]));
    const b = new Map((after?.architectures[arch] ?? []).map((p: LockedDeb) => [p.name, p]));
    for (const name of [...new Set([...a.keys(), ...b.keys()])].sort()) {
      const x = a.get(name);
      const y = b.get(name);
      if (!x) out.push(`+ ${name} ${y!.version} (${arch})`);
      else if (!y) out.push(`- ${name} ${x.version} (${arch})`);
      else if (x.version !== y.version || x.sha256 !== y.sha256)
        out.push(`~ ${name} ${x.version} → ${y.version} (${arch})`);
    }
  }
  return out;
}
