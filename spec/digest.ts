// Digests: `algorithm:encoded`, as in image-spec descriptor.md "Digests".
// https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests
import { createHash, type Hash } from 'node:crypto';

export type Algorithm = 'sha256' | 'sha512';
export type Digest = `${Algorithm}:${string}`;

const ENCODED: Record<Algorithm, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};
// The general grammar (for telling "malformed" from "unsupported algorithm").
const GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export class DigestError extends Error {
  constructor(
    message: string,
    readonly reason: 'malformed' | 'unsupported',
  ) {
    super(message);
  }
}

export function isAlgorithm(alg: string): alg is Algorithm {
  return alg === 'sha256' || alg === 'sha512';
}

/** Parses and validates a digest string; throws DigestError naming what is wrong. */
export function parseDigest(value: string): { algorithm: Algorithm; encoded: string; digest: Digest } {
  if (typeof value !== 'string' || !GRAMMAR.test(value)) {
    throw new DigestError(`invalid digest ${JSON.stringify(String(value).slice(0, 200))}`, 'malformed');
  }
  const i = value.indexOf(':');
  const algorithm = value.slice(0, i);
  const encoded = value.slice(i + 1);
  if (!isAlgorithm(algorithm)) throw new DigestError(`unsupported digest algorithm "${algorithm}"`, 'unsupported');
  if (!ENCODED[algorithm].test(encoded)) {
    throw new DigestError(
      `invalid ${algorithm} digest: expected ${algorithm === 'sha256' ? 64 : 128} lowercase hex characters`,
      'malformed',
    );
  }
  return { algorithm, encoded, digest: value as Digest };
}

export function isDigest(value: string): value is Digest {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

export function digestOf(data: Uint8Array | string, algorithm: Algorithm = 'sha256'): Digest {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/** Incremental digester: feed chunks, read the digest once at the end. */
export class Digester {
  readonly hash: Hash;
  size = 0;
  constructor(readonly algorithm: Algorithm = 'sha256') {
    this.hash = createHash(algorithm);
  }
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }
  digest(): Digest {
    return `${this.algorithm}:${this.hash.digest('hex')}`;
  }
}
