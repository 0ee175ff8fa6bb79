// Verifying JWTs from issuers berth trusts (external token services, CI OIDC providers). Keys come only from the
// configured JWKS URL or PEM keys — never from the token's own `jwk`/`x5c`/`jku` headers (CVE-2025-24976): jose's
// jwtVerify is always given our key (or our key set), algorithms are pinned, and iss/aud/exp/nbf are checked.
import { readFileSync } from 'node:fs';
import {
  createRemoteJWKSet,
  customFetch,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
  type KeyObject,
} from 'jose';
import { KeyError, verifyKeyFromPem, type VerifyKey } from './keys.js';
import type { IssuerConfig } from './config.js';
import { addressPolicy, guardedFetch, privateNetworksProblem } from '../net-policy.js';

export const CLOCK_TOLERANCE_S = 60;
const DEFAULT_ALGS = ['RS256', 'ES256', 'EdDSA'];

export interface TrustedIssuer {
  issuer: string;
  audience: string;
  verify(token: string): Promise<JWTPayload>;
}

/** Builds a verifier for one configured issuer. PEM keys are read now (errors at start-up name the file). */
export async function trustedIssuer(cfg: IssuerConfig, defaultAudience: string, where: string): Promise<TrustedIssuer> {
  const algorithms = cfg.algorithms ?? DEFAULT_ALGS;
  if (algorithms.some((a) => !/^(RS|PS|ES)(256|384|512)$|^EdDSA$/.test(a)))
    throw new KeyError(`${where}: only asymmetric algorithms may be trusted`);
  const audience = cfg.audience ?? defaultAudience;
  const options = {
    issuer: cfg.issuer,
    audience,
    algorithms,
    clockTolerance: CLOCK_TOLERANCE_S,
    requiredClaims: ['exp'],
  };
  const getKeys: JWTVerifyGetKey[] = [];
  if (cfg.jwksUrl) {
    const url = new URL(cfg.jwksUrl);
    const problem = privateNetworksProblem(cfg.allowPrivateNetworks);
    if (problem) throw new KeyError(`${where}: ${problem}`);
    // The server's address policy (net-policy.ts), checked on the connection itself; a literal internal address
    // without allowPrivateNetworks could never work, so it fails at start-up.
    const policy = addressPolicy(cfg.allowPrivateNetworks ?? false);
    try {
      policy.checkHost(url.hostname);
    } catch {
      throw new KeyError(
        `${where}: jwksUrl ${url.host} is a loopback or private address; set allowPrivateNetworks: true (or list its network) to trust it`,
      );
    }
    // Cached; an unknown kid refetches (at most every 30 s), so the issuer can rotate without a restart. jose never
    // follows redirects for it.
    getKeys.push(
      createRemoteJWKSet(url, {
        cooldownDuration: 30_000,
        cacheMaxAge: 10 * 60_000,
        timeoutDuration: 5_000,
        [customFetch]: guardedFetch(policy),
      }),
    );
  }
  const pemKeys: VerifyKey[] = [];
  for (const [i, entry] of (cfg.pem ?? []).entries()) {
    const text = entry.includes('-----BEGIN') ? entry : _readPem(entry, `${where}.pem[${i}]`);
    pemKeys.push(await verifyKeyFromPem(text, `${where}.pem[${i}]`));
  }
  if (pemKeys.length) getKeys.push(pemResolver(pemKeys));
  return {
    issuer: cfg.issuer,
    audience,
    async verify(token) {
      let last: unknown;
      for (const getKey of getKeys) {
        try {
          return (await jwtVerify(token, getKey, options)).payload;
        } catch (e) {
          last = e;
        }
      }
      throw last ?? new Error('no keys configured');
    },
  };
}

/** Picks a PEM key by kid (JWK thumbprint), else the only key whose algorithm matches the header. */
export function pemResolver(keys: VerifyKey[]): JWTVerifyGetKey {
  return (header) => {
    const byKid = header.kid !== undefined ? keys.find((k) => k.kid === header.kid) : undefined;
    const candidates = byKid ? [byKid] : keys.filter((k) => _algFits(k.alg, header.alg));
    const key = candidates.find((k) => _algFits(k.alg, header.alg));
    if (!key) throw new KeyError('no trusted key for this token');
    return key.key as unknown as KeyObject;
  };
}

function _algFits(keyAlg: string, headerAlg: string | undefined): boolean {
  if (headerAlg === undefined) return false;
  if (keyAlg === 'RS256') return /^(RS|PS)(256|384|512)$/.test(headerAlg);
  return keyAlg === headerAlg;
}

function _readPem(path: string, where: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new KeyError(
      `${where}: cannot read PEM file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}
