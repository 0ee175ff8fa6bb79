// The `auth` section of berth.yaml (schema: spec/config-schema.ts `authSchema`; documented in README "Authentication").
import type { AclRule } from './acl.js';
import type { PrivateNetworks } from '../net-policy.js';

export type SigningAlgorithm = 'ES256' | 'RS256' | 'EdDSA';

/** A JWT issuer berth trusts besides itself: access tokens (token.trust) or CI ID tokens (oidc). */
export interface IssuerConfig {
  issuer: string;
  /** Expected `aud`; default: token.service. */
  audience?: string;
  /** Keys from a JWKS document (fetched and cached; refetched on an unknown kid). */
  jwksUrl?: string;
  /** PEM public keys (text) or paths to PEM files. */
  pem?: string[];
  /** Accepted signature algorithms (never HS* or none); default RS256, ES256, EdDSA. */
  algorithms?: string[];
  /** Whether jwksUrl may be on a loopback/private address: true, or only these CIDRs (registry/net-policy.ts). */
  allowPrivateNetworks?: PrivateNetworks;
}

export interface OidcProviderConfig extends IssuerConfig {
  /** Names the provider in ACL subjects (`oidc:NAME`). */
  name: string;
  /** Every listed claim must match (a glob, or one of a list of globs), e.g. `repository_owner: myorg`. */
  claims?: Record<string, string | string[]>;
  /** The identity's name, from claims: default `${sub}`, e.g. `${repository}@${ref}`. */
  subject?: string;
  /** Groups every identity of this provider belongs to. */
  groups?: string[];
}

export interface AuthConfig {
  mode: 'none' | 'htpasswd' | 'token';
  /** Basic-auth realm shown by clients in htpasswd mode (default "berth"). */
  realm?: string;
  htpasswd?: { path: string };
  /** Users with bcrypt hashes, or group memberships for htpasswd users (no passwordHash). */
  users?: Array<{ name: string; passwordHash?: string; groups?: string[] }>;
  token?: {
    /** Token endpoint: a path served by berth (default /token) or an absolute URL of an external token service. */
    realm?: string;
    /** `service` in challenges and `aud` of issued tokens (default "berth"). */
    service?: string;
    /** `iss` of issued tokens (default "berth"). */
    issuer?: string;
    /** Directory of PEM keys: signing.pem signs, every other *.pem verifies (rotation). Default: in storage. */
    keys?: string;
    algorithm?: SigningAlgorithm;
    /** Access-token lifetime (default 5m, at least 60s). */
    ttl?: string;
    /** Refresh-token lifetime (default 30d). */
    refreshTtl?: string;
    trust?: IssuerConfig[];
  };
  robots?: { defaultTtl?: string; maxTtl?: string };
  oidc?: OidcProviderConfig[];
  acl?: AclRule[];
  rateLimit?: { maxFailures?: number; maxFailuresPerAddress?: number; maxFailuresPerAccount?: number; window?: string };
}
