// Access tokens: berth signs them (Docker token spec JWT: iss, sub, aud=service, exp, nbf, iat, jti, access) and the
// registry verifies every Bearer token — its own and those of trusted issuers — with pinned algorithms, issuer,
// audience and a 60 s clock tolerance. Verified tokens are cached by their exact string until they expire, so a
// manifest GET costs one map lookup, not a signature check.
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { SignJWT, decodeJwt, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Identity, RobotScope } from './acl.js';
import { CLOCK_TOLERANCE_S, type TrustedIssuer } from './issuers.js';
import type { KeyRing } from './keys.js';
import { REPO_ACTIONS, type Access } from './scope.js';

/** Identity details carried in berth's own tokens, so the registry can filter the catalog for the caller. */
interface IdentClaim {
  k: Identity['kind'];
  n: string;
  g?: string[];
  p?: string;
  c?: Record<string, string>;
  l?: RobotScope[];
}

export interface VerifiedToken {
  sub: string;
  /** `repository:NAME` / `registry:catalog` → granted actions. Names are compared exactly, never as patterns. */
  access: Map<string, Set<string>>;
  /** The caller, when the token is berth's own and was issued with the catalog scope. */
  identity?: Identity;
  expMs: number;
}

export class TokenError extends Error {}

export interface TokenOptions {
  issuer: string;
  service: string;
  ttlSeconds: number;
}

export async function signAccessToken(
  ring: KeyRing,
  opts: TokenOptions,
  id: Identity,
  sub: string,
  access: Access[],
  withIdentity: boolean,
): Promise<{ token: string; issuedAt: Date; expiresIn: number }> {
  const now = Math.floor(Date.now() / 1000);
  const claims: JWTPayload & { access: Access[]; ident?: IdentClaim } = { access };
  if (withIdentity) {
    claims.ident = { k: id.kind, n: id.name };
    if (id.groups.length) claims.ident.g = id.groups;
    if (id.provider) claims.ident.p = id.provider;
    if (id.claims) claims.ident.c = id.claims;
    if (id.limits) claims.ident.l = id.limits;
  }
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: ring.signing.alg, kid: ring.signing.kid, typ: 'JWT' })
    .setIssuer(opts.issuer)
    .setSubject(sub)
    .setAudience(opts.service)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + opts.ttlSeconds)
    .setJti(randomBytes(16).toString('base64url'))
    .sign(ring.signing.privateKey);
  return { token, issuedAt: new Date(now * 1000), expiresIn: opts.ttlSeconds };
}

/** Resolves berth's own keys by kid, each pinned to its own algorithm. */
function _ownKeys(ring: KeyRing): JWTVerifyGetKey {
  return (header) => {
    const k = header.kid !== undefined ? ring.verify.get(header.kid) : undefined;
    if (!k || k.alg !== header.alg) throw new TokenError('token not signed by a key of this registry');
    return k.key;
  };
}

export class AccessVerifier {
  private readonly cache = new LRUCache<string, VerifiedToken>({ max: 20_000, ttlAutopurge: false });

  constructor(
    private readonly ring: () => Promise<KeyRing>,
    private readonly opts: TokenOptions,
    private readonly trusted: () => Promise<TrustedIssuer[]>,
  ) {}

  /** Verifies a Bearer token; throws TokenError (→ 401 invalid_token) for anything not perfectly valid. */
  async verify(token: string): Promise<VerifiedToken> {
    const hit = this.cache.get(token);
    if (hit && hit.expMs > Date.now()) return hit;
    if (token.length > 16_384) throw new TokenError('token too long');
    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(token); // only to pick the issuer's keys; every claim is verified below
    } catch {
      throw new TokenError('malformed token');
    }
    let payload: JWTPayload;
    let own = false;
    try {
      if (unverified.iss === this.opts.issuer) {
        const ring = await this.ring();
        const algorithms = [...new Set([...ring.verify.values()].map((k) => k.alg))];
        payload = (
          await jwtVerify(token, _ownKeys(ring), {
            issuer: this.opts.issuer,
            audience: this.opts.service,
            algorithms,
            clockTolerance: CLOCK_TOLERANCE_S,
            requiredClaims: ['exp', 'iat', 'sub'],
          })
        ).payload;
        own = true;
      } else {
        const issuer = (await this.trusted()).find((t) => t.issuer === unverified.iss);
        if (!issuer) throw new TokenError('token from an untrusted issuer');
        payload = await issuer.verify(token);
      }
    } catch (e) {
      throw new TokenError(e instanceof TokenError ? e.message : `invalid token: ${(e as Error).message}`);
    }
    const verified = _toVerified(payload, own);
    const ttl = verified.expMs - Date.now();
    if (ttl > 0) this.cache.set(token, verified, { ttl });
    return verified;
  }
}

function _toVerified(payload: JWTPayload, own: boolean): VerifiedToken {
  if (typeof payload.sub !== 'string' || payload.sub === '' || payload.sub.length > 512)
    throw new TokenError('token without a subject');
  const access = new Map<string, Set<string>>();
  const list = (payload as { access?: unknown }).access;
  if (list !== undefined && !Array.isArray(list)) throw new TokenError('token access claim is not a list');
  for (const a of (list ?? []) as unknown[]) {
    const e = a as Partial<Access>;
    if (!e || typeof e.type !== 'string' || typeof e.name !== 'string' || !Array.isArray(e.actions)) continue;
    const actions = e.actions.filter((x): x is string => typeof x === 'string');
    // `*` (some token services send it) means every action; names stay literal — `team/*` grants nothing else.
    const set = new Set(actions.includes('*') ? [...REPO_ACTIONS, '*'] : actions);
    const key = `${e.type}:${e.name}`;
    const have = access.get(key);
    access.set(key, have ? new Set([...have, ...set]) : set);
  }
  let identity: Identity | undefined;
  const ident = (payload as { ident?: IdentClaim }).ident;
  if (own && ident && typeof ident === 'object' && typeof ident.k === 'string' && typeof ident.n === 'string') {
    identity = {
      kind: ident.k,
      name: ident.n,
      groups: ident.g ?? [],
      provider: ident.p,
      claims: ident.c,
      limits: ident.l,
    };
  }
  return { sub: payload.sub, access, identity, expMs: (payload.exp ?? 0) * 1000 };
}

export function hasAccess(token: VerifiedToken, need: Access): boolean {
  const granted = token.access.get(`${need.type}:${need.name}`);
  return !!granted && need.actions.every((a) => granted.has(a));
}
