// The `auth` section of berth.yaml: its types come from the one declaration in spec/config-schema.ts (documented in
// README "Authentication").
export type { AuthConfig, IssuerConfig, LoadedAuthConfig, OidcProviderConfig } from '../../spec/config-schema.js';

export type SigningAlgorithm = NonNullable<import('../../spec/config-schema.js').TokenConfig['algorithm']>;
