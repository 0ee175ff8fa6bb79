// JSON Schema of berth's server configuration (berth.yaml for `berth serve`). Unknown keys are errors, so a typo
// is reported instead of silently ignored. Every key can be overridden by BERTH_* variables (registry/config.ts).
const duration = { type: 'string', pattern: '^[0-9]+(ms|s|m|h|d)$' };
/** Glob patterns (picomatch): `team-a/**`, `v*`. */
const patterns = { type: 'array', items: { type: 'string', minLength: 1 } };

/**
 * Whether the server may connect to loopback, private, link-local and metadata addresses for this URL (redirects
 * and token realms included): false (default), true, or the only IPs/CIDRs allowed (registry/net-policy.ts).
 */
const allowPrivateNetworks = {
  anyOf: [{ type: 'boolean' }, { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } }],
};

/** A JWT issuer berth trusts (token.trust entries and oidc providers): jwksUrl or pem keys, never HS* or none. */
const issuerProps = {
  issuer: { type: 'string', minLength: 1 },
  audience: { type: 'string', minLength: 1 },
  jwksUrl: { type: 'string', pattern: '^https?://' },
  /** PEM public keys, as text or as paths to PEM files. */
  pem: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
  algorithms: {
    type: 'array',
    minItems: 1,
    items: { enum: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] },
  },
  /** May jwksUrl be on a loopback/private address. */
  allowPrivateNetworks,
} as const;
const keySource = { anyOf: [{ required: ['jwksUrl'] }, { required: ['pem'] }] } as const;
const names = { type: 'array', items: { type: 'string', minLength: 1, maxLength: 200 } };

/** auth: who may do what (registry/auth/, README "Authentication"). */
const authSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    mode: { enum: ['none', 'htpasswd', 'token'] },
    realm: { type: 'string', minLength: 1, pattern: '^[^"\\\\]+$' },
    htpasswd: {
      type: 'object',
      additionalProperties: false,
      required: ['path'],
      properties: { path: { type: 'string', minLength: 1 } },
    },
    users: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$' },
          /** bcrypt ($2a$/$2b$/$2y$); leave out to only give groups to an htpasswd user. */
          passwordHash: { type: 'string', pattern: '^\\$2[aby]\\$[0-9]{2}\\$[./A-Za-z0-9]{53}$' },
          groups: names,
        },
      },
    },
    token: {
      type: 'object',
      additionalProperties: false,
      properties: {
        realm: { type: 'string', pattern: '^(/[A-Za-z0-9._~/-]*|https?://[^"\\s]+)$' },
        service: { type: 'string', minLength: 1, pattern: '^[^"\\\\]+$' },
        issuer: { type: 'string', minLength: 1 },
        keys: { type: 'string', minLength: 1 },
        algorithm: { enum: ['ES256', 'RS256', 'EdDSA'] },
        ttl: duration,
        refreshTtl: duration,
        trust: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['issuer'],
            properties: issuerProps,
            ...keySource,
          },
        },
      },
    },
    robots: {
      type: 'object',
      additionalProperties: false,
      properties: { defaultTtl: duration, maxTtl: duration },
    },
    /** CI workload identity: an ID token from one of these issuers is accepted as the password at the token endpoint. */
    oidc: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'issuer', 'audience'],
        properties: {
          ...issuerProps,
          name: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' },
          claims: {
            type: 'object',
            additionalProperties: {
              anyOf: [{ type: 'string' }, { type: 'array', minItems: 1, items: { type: 'string' } }],
            },
          },
          subject: { type: 'string', minLength: 1 },
          groups: names,
        },
        ...keySource,
      },
    },
    /** Ordered rules; the first whose subjects and repositories match decides; default deny. */
    acl: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['repositories', 'subjects', 'actions'],
        properties: {
          repositories: { ...patterns, minItems: 1 },
          subjects: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
          actions: { type: 'array', items: { enum: ['pull', 'push', 'delete', 'catalog', '*'] } },
        },
      },
    },
    /**
     * Failed logins within `window`, then 429 + Retry-After for the failing address only (registry/auth/ratelimit.ts):
     * per account from one address, per address, and per account over all addresses (then one guess per address).
     */
    rateLimit: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxFailures: { type: 'integer', minimum: 1 },
        maxFailuresPerAddress: { type: 'integer', minimum: 1 },
        maxFailuresPerAccount: { type: 'integer', minimum: 1 },
        window: duration,
      },
    },
  },
} as const;

export const configSchema = {
  $id: 'berth-config',
  type: 'object',
  additionalProperties: false,
  properties: {
    http: {
      type: 'object',
      additionalProperties: false,
      properties: {
        addr: { type: 'string', description: 'listen address, HOST:PORT or :PORT' },
        /** The URL clients use: the token realm's base (never the Host header; registry/auth/middleware.ts). */
        publicUrl: { type: 'string', pattern: '^https?://[^"\\s/?#]+(/[^"\\s?#]*)?$' },
        shutdownTimeout: duration,
        /** A request body that gets no byte for this long is abandoned (408); 0s: never. */
        bodyIdleTimeout: duration,
        /** The whole request (headers and body) must arrive within this; 0s (default): no limit. */
        requestTimeout: duration,
        /**
         * HTTPS (and HTTP/2 for clients that offer it by ALPN) from PEM files; the files are watched and a rotated
         * pair is served to new connections without a restart (registry/tls.ts). clientCAs: require client
         * certificates signed by one of these CAs (mTLS).
         */
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['certificate', 'key'],
          properties: {
            certificate: { type: 'string', minLength: 1, description: 'PEM certificate chain file' },
            key: { type: 'string', minLength: 1, description: 'PEM private key file' },
            clientCAs: { type: 'string', minLength: 1, description: 'PEM file of CAs that sign client certificates' },
            minVersion: { enum: ['TLSv1.2', 'TLSv1.3'] },
          },
        },
      },
    },
    storage: {
      type: 'object',
      additionalProperties: false,
      properties: {
        filesystem: {
          type: 'object',
          additionalProperties: false,
          required: ['root'],
          properties: { root: { type: 'string', minLength: 1 }, fsync: { type: 'boolean' } },
        },
        s3: {
          type: 'object',
          additionalProperties: false,
          required: ['bucket'],
          properties: {
            bucket: { type: 'string', minLength: 1 },
            endpoint: { type: 'string' },
            region: { type: 'string' },
            prefix: { type: 'string' },
            forcePathStyle: { type: 'boolean' },
            accessKeyId: { type: 'string' },
            secretAccessKey: { type: 'string' },
            blobGet: { enum: ['redirect', 'proxy'] },
            tagCacheTtl: duration,
          },
        },
        delete: { type: 'boolean' },
        maxManifestBytes: { type: 'integer', minimum: 1024 },
        uploadPurge: {
          type: 'object',
          additionalProperties: false,
          properties: { age: duration, interval: duration, enabled: { type: 'boolean' } },
        },
        /** Open upload sessions allowed per repository and per caller (subject; anonymous callers together); 0: no cap. */
        uploadSessions: {
          type: 'object',
          additionalProperties: false,
          properties: {
            maxPerRepository: { type: 'integer', minimum: 0 },
            maxPerCaller: { type: 'integer', minimum: 0 },
          },
        },
      },
    },
    api: {
      type: 'object',
      additionalProperties: false,
      properties: { maxPageSize: { type: 'integer', minimum: 1 } },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      properties: {
        level: { enum: ['debug', 'info', 'warn', 'error', 'silent'] },
        requests: { type: 'boolean' },
      },
    },
    auth: authSchema,
    /** Online garbage collection (storage/gc.ts); `berth gc` runs it once. */
    gc: {
      type: 'object',
      additionalProperties: false,
      properties: {
        /** Run on a schedule inside `berth serve` (one replica at a time, by lease). */
        enabled: { type: 'boolean' },
        interval: duration,
        /** Anything written within this window before a run starts is spared (covers pushes in flight, clock skew). */
        grace: duration,
        deleteUntagged: { type: 'boolean' },
        concurrency: { type: 'integer', minimum: 1, maximum: 1024 },
      },
    },
    /** Tag retention, applied on a schedule in `berth serve` and by `berth gc`; GC then reclaims the bytes. */
    retention: {
      type: 'object',
      additionalProperties: false,
      properties: {
        interval: duration,
        policies: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['repositories'],
            properties: {
              repositories: patterns,
              /** Tags the policy looks at (default: all); others are left alone. */
              tags: patterns,
              /** Keep the newest N matching tags (by push time). */
              keepLast: { type: 'integer', minimum: 0 },
              /** Delete matching tags pushed longer ago than this… */
              maxAge: duration,
              /** …unless pulled within this window (pulls are recorded at most once a minute per tag). */
              keepPulledWithin: duration,
            },
          },
        },
      },
    },
    /** Tags that can't be overwritten or deleted once pushed (DENIED). */
    immutableTags: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['repositories'],
        properties: { repositories: patterns, tags: patterns },
      },
    },
    /** Storage quotas per namespace (the repository name up to its first `/`, or a given prefix). */
    quotas: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['namespace', 'maxBytes'],
        properties: {
          /** A namespace such as `team-a` (covers `team-a/**`), or `*` for every top-level namespace separately. */
          namespace: { type: 'string', minLength: 1 },
          maxBytes: { type: 'integer', minimum: 0 },
        },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      properties: { enabled: { type: 'boolean' } },
    },
    /** The web UI at /ui/ and its JSON API under /v2/_berth/ui/ (registry/ui); on by default. */
    ui: {
      type: 'object',
      additionalProperties: false,
      properties: { enabled: { type: 'boolean' } },
    },
    /** CloudEvents (push, delete, pull) POSTed to receivers, signed with HMAC-SHA256 when a secret is set. */
    webhooks: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['url'],
        properties: {
          url: { type: 'string', pattern: '^https?://' },
          secret: { type: 'string' },
          events: { type: 'array', items: { enum: ['push', 'delete', 'pull'] } },
          repositories: patterns,
          timeout: duration,
          retries: { type: 'integer', minimum: 0, maximum: 20 },
          /** Allow loopback, private, link-local and metadata addresses (off: such receivers are refused). */
          allowPrivateNetworks,
        },
      },
    },
    proxy: {
      type: 'object',
      additionalProperties: false,
      properties: {
        upstreams: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'url'],
            properties: {
              name: { type: 'string', minLength: 1 },
              url: { type: 'string', pattern: '^https?://[^/?#]+/?$' },
              /** Local path prefix (`/v2/<prefix>/library/alpine/…`) and storage namespace; default: name. */
              prefix: { type: 'string', minLength: 1 },
              /** The host containerd names in `?ns=` (default: the url's host). */
              host: { type: 'string', minLength: 1 },
              /** Serves un-prefixed requests (docker's registry-mirrors sends `library/…`) matching `allow`. */
              default: { type: 'boolean' },
              username: { type: 'string' },
              password: { type: 'string' },
              tagTtl: duration,
              timeout: duration,
              allow: { type: 'array', items: { type: 'string', minLength: 1 } },
              allowPush: { type: 'boolean' },
              credentialsToRealm: { type: 'array', items: { type: 'string', minLength: 1 } },
              /** The upstream, its redirects and token realms may be on internal addresses (default: refused). */
              allowPrivateNetworks,
            },
          },
        },
        eviction: {
          type: 'object',
          additionalProperties: false,
          properties: { maxAge: duration, maxBytes: { type: 'integer', minimum: 0 }, interval: duration },
        },
      },
    },
  },
} as const;
