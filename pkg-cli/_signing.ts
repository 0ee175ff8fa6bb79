// Shared by `berth sign` and `berth verify`: signature formats, reading key files, resolving IMAGE to a digest.
import { readFileSync } from 'node:fs';
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { Repository } from '../client/remote.js';
import type { Descriptor } from '../spec/manifest.js';
import { formatReference, type Reference } from '../spec/reference.js';
import {
  loadCertificates,
  loadPrivateKey,
  loadPublicKey,
  SigningError,
  type SignatureFormat,
} from '../signing/index.js';
import { CLIError, EXIT, flag, UsageError } from './command.js';

export const FORMAT_HELP = `Formats: cosign (simple signing under the sha256-<hex>.sig tag; cosign v2's default), cosign-bundle
(a sigstore bundle v0.3 as an OCI 1.1 referrer; cosign v3's default), notation (a Notary Project JWS envelope
referrer with the certificate chain).`;

export const formatFlag = flag.list({
  arg: 'FORMAT',
  split: true,
  help: 'cosign, cosign-bundle or notation (or several, comma-separated)',
});

export function formats(values: string[]): SignatureFormat[] {
  const known = ['cosign', 'cosign-bundle', 'notation'];
  for (const v of values)
    if (!known.includes(v)) throw new UsageError(`--format "${v}": expected one of ${known.join(', ')}`);
  return [...new Set(values)] as SignatureFormat[];
}

function _read(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new CLIError(
      `${what} ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
      EXIT.notFound,
    );
  }
}

/** Maps signing/'s SigningError (bad key, wrong password…) to a one-line CLI error. */
export function cliSigning<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SigningError) throw new CLIError(e.message);
    throw e;
  }
}

export function privateKeyFile(path: string): KeyObject {
  return cliSigning(() => loadPrivateKey(_read(path, '--key'), process.env.COSIGN_PASSWORD, path));
}

export function publicKeyFile(path: string): KeyObject {
  return cliSigning(() => loadPublicKey(_read(path, '--key'), path));
}

export function certificateFile(path: string): X509Certificate[] {
  return cliSigning(() => loadCertificates(_read(path, '--cert'), path));
}

/** The manifest IMAGE names (HEAD, else GET), so a signature always names a digest. */
export async function resolveSubject(repo: Repository, r: Reference): Promise<Descriptor> {
  const id = r.digest ?? r.tag ?? 'latest';
  const head = await repo.headManifest(id);
  if (head && (!r.digest || head.digest === r.digest)) return head;
  const m = await repo.getManifest(id);
  return { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
}

/** `host/name`: the repository as cosign names it in the payload's docker-reference. */
export function repositoryName(r: Reference): string {
  return formatReference({ ...r, tag: undefined, digest: undefined });
}
