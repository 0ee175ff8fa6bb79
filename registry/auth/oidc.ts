// CI workload identity: a pipeline's OIDC ID token (GitHub Actions, GitLab, …) is accepted as the password at the
// token endpoint. The token is verified against the provider's own keys (JWKS URL or PEM), its issuer and audience;
// then every configured claim rule must match. The identity's name comes from a claim template, and its string
// claims are kept so ACL rules can map them to repositories (`ci/${claim.repository}/**`).
import picomatch from 'picomatch';
import { decodeJwt } from 'jose';
import type { Identity } from './acl.js';
import type { OidcProviderConfig } from './config.js';
import { trustedIssuer, type TrustedIssuer } from './issuers.js';

export interface OidcProvider {
  config: OidcProviderConfig;
  issuer: TrustedIssuer;
  rules: Array<[string, (v: string) => boolean]>;
}

export async function createOidcProviders(
  list: OidcProviderConfig[],
  defaultAudience: string,
): Promise<OidcProvider[]> {
  const out: OidcProvider[] = [];
  for (const [i, cfg] of list.entries()) {
    const issuer = await trustedIssuer(cfg, defaultAudience, `auth.oidc[${i}]`);
    const rules = Object.entries(cfg.claims ?? {}).map(
      ([k, v]) => [k, picomatch(Array.isArray(v) ? v : [v], { dot: true })] as [string, (v: string) => boolean],
    );
    out.push({ config: cfg, issuer, rules });
  }
  return out;
}

/** Whether a password looks like a JWT (three base64url parts, a JSON header). */
export function looksLikeJwt(s: string): boolean {
  return s.length < 16_384 && /^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(s);
}

/** The CI identity for an ID token, or undefined when no provider accepts it. */
export async function oidcIdentity(providers: OidcProvider[], token: string): Promise<Identity | undefined> {
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss; // to pick the provider; the verification below checks it again
  } catch {
    return undefined;
  }
  for (const p of providers) {
    if (p.config.issuer !== iss) continue;
    let payload;
    try {
      payload = await p.issuer.verify(token);
    } catch {
      continue;
    }
    const claims: Record<string, string> = {};
    for (const [k, v] of Object.entries(payload)) {
      if (Object.keys(claims).length >= 64) break;
      if (typeof v === 'string' && v.length <= 512) claims[k] = v;
      else if ((typeof v === 'number' || typeof v === 'boolean') && k !== 'exp' && k !== 'iat' && k !== 'nbf')
        claims[k] = String(v);
    }
    if (!p.rules.every(([k, match]) => claims[k] !== undefined && match(claims[k]))) continue;
    const name = _template(p.config.subject ?? '${sub}', claims);
    if (!name) continue;
    return { kind: 'oidc', name, provider: p.config.name, groups: p.config.groups ?? [], claims };
  }
  return undefined;
}

function _template(t: string, claims: Record<string, string>): string | undefined {
  let ok = true;
  const out = t.replace(/\$\{([A-Za-z0-9_.:-]+)\}/g, (_, k: string) => {
    const v = claims[k];
    if (v === undefined) ok = false;
    return v ?? '';
  });
  return ok && out.length > 0 && out.length <= 256 ? out : undefined;
}
