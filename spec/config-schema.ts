// berth's server configuration (berth.yaml for `berth serve`), declared once: this JSON Schema is the single source
// of the config's shape, its defaults (`default`), its documentation (`description`, printed by `berth config
// defaults`) and its TypeScript types (`Config`, derived below with json-schema-to-ts). registry/config.ts loads a
// file, BERTH_* variables and flags against it; unknown keys are errors, so a typo is reported, not ignored.
//
// To add a key: add it here with a description (and a default when it has one); its type, its BERTH_* variable,
// its line in `berth config defaults` and its validation follow. Sections that always exist carry `default: {}`.
// `writeOnly: true` marks a secret: `berth config check` prints it redacted.
import type { FromSchema } from 'json-schema-to-ts';
import { DURATION_PATTERN } from './units.js';

/** A Go-style duration string (`90s`, `1h30m`, `30d`; spec/units.ts parses it). Add `default` where there is one. */
const duration = (description: string) =>
  ({ type: 'string', pattern: DURATION_PATTERN, 'x-unit': 'duration', description }) as const;

/**
 * A byte count: an integer, or a string with a unit (`512MB`, `10GiB`) that registry/config.ts turns into the
 * integer before validating, so a loaded config always holds numbers.
 */
const size = (description: string) => ({ type: 'integer', minimum: 0, 'x-unit': 'size', description }) as const;

/** Glob patterns (picomatch): `team-a/**`, `v*`. */
const patterns = (description: string) =>
  ({ type: 'array', items: { type: 'string', minLength: 1 }, description }) as const;

const allowPrivateNetworks = {
  description:
    'may loopback, private, link-local and metadata addresses be reached (redirects and token realms included): ' +
    'false, true, or a list of the only IPs/CIDRs allowed',
  anyOf: [{ type: 'boolean' }, { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } }],
  default: false,
} as const;

/** A JWT issuer berth trusts (token.trust entries and oidc providers): jwksUrl or pem keys, never HS* or none. */
const issuerProps = {
  issuer: { type: 'string', minLength: 1, description: 'expected `iss`' },
  audience: { type: 'string', minLength: 1, description: 'expected `aud` (default: auth.token.service)' },
  jwksUrl: {
    type: 'string',
    pattern: '^https?://',
    description: 'keys from a JWKS document (cached; refetched on an unknown kid)',
  },
  pem: {
    type: 'array',
    minItems: 1,
    items: { type: 'string', minLength: 1 },
    description: 'PEM public keys, as text or as paths to PEM files',
  },
  algorithms: {
    type: 'array',
    minItems: 1,
    items: { enum: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] },
    description: 'accepted signature algorithms (never HS* or none); default RS256, ES256, EdDSA',
  },
  allowPrivateNetworks,
} as const;
const keySource = { anyOf: [{ required: ['jwksUrl'] }, { required: ['pem'] }] } as const;
const names = (description: string) =>
  ({ type: 'array', items: { type: 'string', minLength: 1, maxLength: 200 }, description }) as const;

/** auth: who may do what (registry/auth/, README "Authentication"). */
const authSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description: 'who may do what (README "Authentication")',
  properties: {
    mode: {
      enum: ['none', 'htpasswd', 'token'],
      default: 'none',
      description:
        'none: anyone may push and delete; htpasswd: Basic auth; token: Docker token auth (berth issues JWTs)',
    },
    realm: {
      type: 'string',
      minLength: 1,
      pattern: '^[^"\\\\]+$',
      default: 'berth',
      description: 'Basic-auth realm clients show in htpasswd mode',
    },
    htpasswd: {
      type: 'object',
      additionalProperties: false,
      required: ['path'],
      description: 'an Apache htpasswd file (bcrypt entries only)',
      properties: { path: { type: 'string', minLength: 1, description: 'the htpasswd file' } },
    },
    users: {
      type: 'array',
      description: 'users with bcrypt hashes (`berth passwd NAME` prints one), or groups for htpasswd users',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$' },
          passwordHash: {
            type: 'string',
            pattern: '^\\$2[aby]\\$[0-9]{2}\\$[./A-Za-z0-9]{53}$',
            writeOnly: true,
            description: 'bcrypt ($2a$/$2b$/$2y$); leave out to only give groups to an htpasswd user',
          },
          groups: names('groups for ACL subjects `group:NAME`'),
        },
      },
    },
    token: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'token mode: berth is its own Docker token service',
      properties: {
        realm: {
          type: 'string',
          pattern: '^(/[A-Za-z0-9._~/-]*|https?://[^"\\s]+)$',
          default: '/token',
          description: 'token endpoint: a path served by berth, or the absolute URL of an external token service',
        },
        service: {
          type: 'string',
          minLength: 1,
          pattern: '^[^"\\\\]+$',
          default: 'berth',
          description: '`service` in challenges and `aud` of issued tokens',
        },
        issuer: { type: 'string', minLength: 1, default: 'berth', description: '`iss` of issued tokens' },
        keys: {
          type: 'string',
          minLength: 1,
          description:
            'directory of PEM keys: signing.pem signs, every other *.pem verifies (rotation); default: in storage',
        },
        algorithm: { enum: ['ES256', 'RS256', 'EdDSA'], default: 'ES256', description: 'signing algorithm' },
        ttl: { ...duration('access-token lifetime (at least 60s)'), default: '5m' },
        refreshTtl: { ...duration('refresh-token lifetime (docker login keeps one)'), default: '30d' },
        trust: {
          type: 'array',
          description: 'other issuers whose access tokens berth accepts',
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
      description: 'robot tokens for CI (`berth token create`)',
      properties: {
        defaultTtl: { ...duration('lifetime when --expires is not given'), default: '90d' },
        maxTtl: duration('the longest lifetime allowed'),
      },
    },
    oidc: {
      type: 'array',
      description: 'CI workload identity: an ID token from one of these issuers is accepted as the password',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'issuer', 'audience'],
        properties: {
          ...issuerProps,
          name: {
            type: 'string',
            pattern: '^[a-z0-9][a-z0-9._-]{0,63}$',
            description: 'names the provider in ACL subjects (`oidc:NAME`)',
          },
          claims: {
            type: 'object',
            description: 'every listed claim must match (a glob, or a list of globs), e.g. `repository_owner: myorg`',
            additionalProperties: {
              anyOf: [{ type: 'string' }, { type: 'array', minItems: 1, items: { type: 'string' } }],
            },
          },
          subject: {
            type: 'string',
            minLength: 1,
            description: 'the identity name, from claims: default `${sub}`, e.g. `${repository}@${ref}`',
          },
          groups: names('groups every identity of this provider belongs to'),
        },
        ...keySource,
      },
    },
    acl: {
      type: 'array',
      description: 'ordered rules; the first whose subjects and repositories match decides; default deny',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['repositories', 'subjects', 'actions'],
        properties: {
          repositories: { ...patterns('repository globs'), minItems: 1 },
          subjects: {
            type: 'array',
            minItems: 1,
            items: { type: 'string', minLength: 1 },
            description: 'anonymous, user:NAME, group:NAME, robot:NAME, oidc:NAME, or *',
          },
          actions: { type: 'array', items: { enum: ['pull', 'push', 'delete', 'catalog', '*'] } },
        },
      },
    },
    rateLimit: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'failed logins within `window`, then 429 + Retry-After for the failing address only: per account from one ' +
        'address, per address, and per account over all addresses (then one guess per address)',
      properties: {
        maxFailures: { type: 'integer', minimum: 1, default: 5 },
        maxFailuresPerAddress: { type: 'integer', minimum: 1, default: 30 },
        maxFailuresPerAccount: { type: 'integer', minimum: 1, default: 100 },
        window: { ...duration('the window failures are counted in'), default: '5m' },
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
      default: {},
      description: 'the listener',
      properties: {
        addr: {
          type: 'string',
          pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[^:\\s\\[\\]/]*):[0-9]{1,5}$',
          default: ':5000',
          description: 'listen address: HOST:PORT, :PORT (all interfaces) or [IPv6]:PORT',
        },
        publicUrl: {
          type: 'string',
          pattern: '^https?://[^"\\s/?#]+(/[^"\\s?#]*)?$',
          description: 'the URL clients use, e.g. https://registry.example.com (the token realm is built on it)',
        },
        shutdownTimeout: { ...duration('how long requests in flight may finish after SIGTERM'), default: '30s' },
        bodyIdleTimeout: {
          ...duration('a request body that sends no byte for this long is abandoned (408); 0: never'),
          default: '60s',
        },
        requestTimeout: {
          ...duration('the whole request (headers and body) must arrive within this; 0: no limit'),
          default: '0s',
        },
        workers: {
          type: 'integer',
          minimum: 1,
          maximum: 1024,
          description:
            'processes serving the port (node:cluster); default: the available cores; 1 runs the registry in one ' +
            'process without a primary (registry/cluster.ts)',
        },
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['certificate', 'key'],
          description:
            'HTTPS (and HTTP/2 by ALPN) from PEM files, re-read when they change (a rotated pair is served to new ' +
            'connections without a restart)',
          properties: {
            certificate: { type: 'string', minLength: 1, description: 'PEM certificate chain file' },
            key: { type: 'string', minLength: 1, description: 'PEM private key file' },
            clientCAs: {
              type: 'string',
              minLength: 1,
              description: 'PEM file of CAs that sign client certificates (mTLS: required when set)',
            },
            minVersion: { enum: ['TLSv1.2', 'TLSv1.3'], description: 'lowest TLS version accepted' },
          },
        },
        headersTimeout: {
          ...duration("a request's headers must arrive within this, HTTP/2 and HTTPS included (registry/server.ts)"),
          default: '60s',
        },
        trustedProxies: {
          type: 'array',
          items: { type: 'string', minLength: 1 },
          description:
            'peers (CIDRs or addresses) whose X-Forwarded-Proto/Host/For and RFC 7239 Forwarded headers are believed ' +
            '(token realm, client address of logs, login throttling, audit); from anyone else they are ignored',
        },
        debug: {
          type: 'object',
          additionalProperties: false,
          required: ['addr'],
          description:
            'a second, plain-HTTP listener for /metrics, /healthz and /readyz; /metrics then leaves the registry port',
          properties: { addr: { type: 'string', minLength: 1, description: 'listen address, HOST:PORT or :PORT' } },
        },
      },
    },
    storage: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'where images are kept: storage.filesystem (the default) or storage.s3',
      properties: {
        filesystem: {
          type: 'object',
          additionalProperties: false,
          description: 'a directory (used when storage.s3 is not set)',
          properties: {
            root: { type: 'string', minLength: 1, default: './data', description: 'the storage directory' },
            fsync: { type: 'boolean', default: true, description: 'fsync before publishing (off only for test data)' },
          },
        },
        s3: {
          type: 'object',
          additionalProperties: false,
          required: ['bucket'],
          description: 'an S3-compatible bucket (AWS, MinIO, SeaweedFS, …)',
          properties: {
            bucket: { type: 'string', minLength: 1 },
            endpoint: { type: 'string', description: 'e.g. http://minio:9000 (default: AWS)' },
            region: { type: 'string' },
            prefix: { type: 'string', description: 'key prefix inside the bucket' },
            forcePathStyle: { type: 'boolean', description: 'path-style URLs (MinIO, SeaweedFS)' },
            accessKeyId: { type: 'string', description: 'default: the AWS SDK credential chain' },
            secretAccessKey: { type: 'string', writeOnly: true },
            blobGet: {
              enum: ['redirect', 'proxy'],
              description: 'redirect: clients download blobs from presigned URLs; proxy: through berth',
            },
            tagCacheTtl: duration('how long a tag may be served from memory (default: not cached)'),
          },
        },
        delete: { type: 'boolean', default: true, description: 'allow DELETE of manifests, tags and blobs' },
        maxManifestBytes: {
          ...size('largest manifest accepted (413 above); 4 MiB manifests must work'),
          minimum: 1024,
          default: 5 * 1024 * 1024,
        },
        uploadPurge: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'abandoned upload sessions are removed',
          properties: {
            enabled: { type: 'boolean', default: true },
            age: { ...duration('an upload untouched this long is abandoned'), default: '24h' },
            interval: { ...duration('how often to look'), default: '1h' },
          },
        },
        uploadSessions: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description:
            'open upload sessions allowed (far above what pushes need, far below a client opening thousands); 0: no cap',
          properties: {
            maxPerRepository: { type: 'integer', minimum: 0, default: 1000 },
            maxPerCaller: {
              type: 'integer',
              minimum: 0,
              default: 5000,
              description: 'per subject; anonymous callers together',
            },
          },
        },
      },
    },
    api: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxPageSize: {
          type: 'integer',
          minimum: 1,
          default: 10_000,
          description: 'the largest `n` of tag and catalog lists',
        },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'logs go to stderr',
      properties: {
        level: { enum: ['debug', 'info', 'warn', 'error', 'silent'], default: 'info' },
        requests: { type: 'boolean', default: true, description: 'one line per request' },
        format: {
          enum: ['auto', 'json', 'pretty'],
          default: 'auto',
          description: 'auto: readable lines on a terminal, JSON lines otherwise',
        },
      },
    },
    auth: authSchema,
    gc: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'online garbage collection; `berth gc` runs it once',
      properties: {
        enabled: {
          type: 'boolean',
          default: false,
          description: 'run on a schedule inside `berth serve` (one replica at a time, by lease)',
        },
        interval: { ...duration('how often'), default: '24h' },
        grace: {
          ...duration('anything written this long before a run starts is spared (pushes in flight, clock skew)'),
          default: '1h',
        },
        deleteUntagged: { type: 'boolean', default: false, description: 'also remove manifests no tag keeps' },
        concurrency: { type: 'integer', minimum: 1, maximum: 1024, default: 32, description: 'storage calls at once' },
      },
    },
    retention: {
      type: 'object',
      additionalProperties: false,
      description: 'tag retention, applied on a schedule in `berth serve` and by `berth gc`; GC reclaims the bytes',
      properties: {
        interval: { ...duration('how often policies are applied'), default: '1h' },
        policies: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['repositories'],
            properties: {
              repositories: patterns('repositories the policy applies to'),
              tags: patterns('tags the policy looks at (default: all); others are left alone'),
              keepLast: { type: 'integer', minimum: 0, description: 'keep the newest N matching tags (by push time)' },
              maxAge: duration('delete matching tags pushed longer ago than this…'),
              keepPulledWithin: duration('…unless pulled within this window (recorded at most once a minute)'),
            },
          },
        },
      },
    },
    immutableTags: {
      type: 'array',
      description: "tags that can't be overwritten or deleted once pushed (DENIED)",
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['repositories'],
        properties: { repositories: patterns('repository globs'), tags: patterns('tag globs (default: all)') },
      },
    },
    signatures: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'signature policy: pulls of images in matching repositories need a signature by a trusted key or certificate ' +
        '(README "Signature policy")',
      properties: {
        cacheTtl: {
          ...duration('how long a verification result is reused for a digest (an unverified one: at most 10s)'),
          default: '5m',
        },
        policies: {
          type: 'array',
          description: 'the first policy whose repositories match a repository applies to it',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'repositories', 'mode'],
            anyOf: [{ required: ['keys'] }, { required: ['certificates'] }],
            properties: {
              name: {
                type: 'string',
                pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$',
                description: 'named in refusals, logs, metrics and audit events',
              },
              repositories: patterns('repository globs, e.g. prod/**'),
              mode: {
                enum: ['audit', 'enforce'],
                description:
                  'audit: log, count and audit unsigned pulls; enforce: refuse them with 403 DENIED (pulls by digest ' +
                  'stay open to principals with push, so signing tools work)',
              },
              keys: {
                type: 'array',
                minItems: 1,
                items: { type: 'string', minLength: 1 },
                description: 'trusted cosign public keys: PEM files, or PEM text (cosign simple signing and bundles)',
              },
              certificates: {
                type: 'array',
                minItems: 1,
                items: { type: 'string', minLength: 1 },
                description: 'trusted notation roots (or self-signed signing certificates): PEM files, or PEM text',
              },
              formats: {
                type: 'array',
                minItems: 1,
                items: { enum: ['cosign', 'cosign-bundle', 'notation'] },
                description: 'signature formats accepted (default: every format the keys and certificates can check)',
              },
            },
          },
        },
      },
    },
    quotas: {
      type: 'array',
      description: 'storage quotas per namespace (the repository name up to its first `/`, or a given prefix)',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['namespace', 'maxBytes'],
        properties: {
          namespace: {
            type: 'string',
            minLength: 1,
            description: 'a namespace such as `team-a` (covers `team-a/**`), or `*` for each top-level namespace',
          },
          maxBytes: size('e.g. 10GiB'),
        },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { enabled: { type: 'boolean', default: true, description: 'Prometheus metrics at /metrics' } },
    },
    ui: {
      type: 'object',
      additionalProperties: false,
      description: 'the web UI at /ui/ and its JSON API under /v2/_berth/api/v1/ (registry/ui)',
      properties: {
        enabled: { type: 'boolean', default: true, description: 'serve the web UI' },
        listingTtl: {
          ...duration(
            "how long the UI reuses a repository's tag and summary listings: pushes and deletes through this server " +
              "(any worker) show at once, other replicas' within this (0s: list on every request)",
          ),
          default: '5s',
        },
      },
    },
    webhooks: {
      type: 'array',
      description: 'CloudEvents (push, delete, pull) POSTed to receivers, signed with HMAC-SHA256 when a secret is set',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['url'],
        properties: {
          url: { type: 'string', pattern: '^https?://' },
          secret: { type: 'string', writeOnly: true, description: 'HMAC-SHA256 key for the signature header' },
          events: { type: 'array', items: { enum: ['push', 'delete', 'pull'] }, default: ['push', 'delete'] },
          repositories: patterns('repository globs (default: all)'),
          timeout: { ...duration('per delivery'), default: '5s' },
          retries: { type: 'integer', minimum: 0, maximum: 20, default: 5 },
          allowPrivateNetworks,
        },
      },
    },
    sync: {
      type: 'array',
      description:
        'scheduled sync (registry/mirror, README "Mirrors"): copy matching images from an upstream into this registry, byte for byte',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'repositories'],
        properties: {
          name: {
            type: 'string',
            pattern: '^[a-z0-9][a-z0-9_-]{0,62}$',
            description: 'names the rule in status, metrics and `berth sync --rule`',
          },
          upstream: {
            type: 'string',
            minLength: 1,
            description:
              'a proxy.upstreams name: its url, credentials and prefix (synced images land where the cache serves them)',
          },
          url: {
            type: 'string',
            pattern: '^https?://[^/?#]+/?$',
            description: 'or any registry: `https://host[:port]` (plain http is for loopback and trusted networks)',
          },
          username: { type: 'string' },
          password: { type: 'string', writeOnly: true },
          prefix: {
            type: 'string',
            pattern: '^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$',
            description: "local repository prefix (default: the proxy upstream's prefix, else none)",
          },
          repositories: {
            type: 'array',
            minItems: 1,
            items: { type: 'string', minLength: 1 },
            description: 'upstream repositories; globs (`team/*`, `**`) are matched against its catalog',
          },
          tags: {
            type: 'object',
            additionalProperties: false,
            description: 'which tags, applied in order: include/exclude globs, regex, semver range, newest N',
            properties: {
              include: patterns('tag globs (default: all)'),
              exclude: patterns('tag globs to leave out'),
              regex: { type: 'string', minLength: 1, description: 'a regular expression a tag must match' },
              semver: { type: 'string', minLength: 1, description: 'a semver range (`>=1.2 <2`, `^1.4`, `~2.1`)' },
              newest: { type: 'integer', minimum: 1, description: 'keep the newest N of what is left' },
              newestBy: {
                enum: ['semver', 'created'],
                default: 'semver',
                description: "newest by version, or by the image's created time",
              },
            },
          },
          platforms: {
            type: 'array',
            items: { type: 'string', pattern: '^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$' },
            description:
              'one platform copies that image only; several require an index that has them all (default: all)',
          },
          referrers: { type: 'boolean', default: true, description: 'also copy signatures, SBOMs, attestations' },
          schedule: duration('run every this long while `berth serve` runs (default: only `berth sync`)'),
          concurrency: { type: 'integer', minimum: 1, maximum: 64, default: 4, description: 'blobs in flight' },
          bandwidth: size('bytes per second this rule may download (0: no cap)'),
          allowPrivateNetworks,
        },
      },
    },
    replication: {
      type: 'array',
      description:
        'push replication (registry/mirror, README "Mirrors"): pushes (and optionally deletes) of matching repositories are queued in storage and copied to another registry, referrers included',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'url'],
        properties: {
          name: {
            type: 'string',
            pattern: '^[a-z0-9][a-z0-9_-]{0,62}$',
            description: 'names the rule (its queue in storage, metrics)',
          },
          url: { type: 'string', pattern: '^https?://[^/?#]+/?$', description: 'the target registry' },
          username: { type: 'string' },
          password: { type: 'string', writeOnly: true },
          repositories: patterns('local repository globs to replicate (default: all)'),
          prefix: {
            type: 'string',
            pattern: '^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$',
            description: 'repository prefix on the target (default: none, same names)',
          },
          deletes: { type: 'boolean', default: false, description: 'also replicate manifest deletes' },
          referrers: { type: 'boolean', default: true, description: 'carry signatures, SBOMs, attestations along' },
          concurrency: { type: 'integer', minimum: 1, maximum: 64, default: 4, description: 'blobs in flight' },
          backoff: { ...duration('first wait after a failed attempt (doubles each time)'), default: '1s' },
          maxBackoff: { ...duration('longest wait between attempts'), default: '5m' },
          giveUpAfter: { ...duration('drop an item still failing this long after it was queued'), default: '24h' },
          allowPrivateNetworks,
        },
      },
    },
    audit: {
      type: 'object',
      additionalProperties: false,
      description: 'audit events as JSON lines (registry/audit.ts; README "Audit log"), separate from request logs',
      properties: {
        enabled: { type: 'boolean', default: false, description: 'write audit events' },
        output: {
          type: 'string',
          minLength: 1,
          default: 'stdout',
          description: 'stdout, stderr, or a file path (appended; relative to the config file)',
        },
      },
    },
    proxy: {
      type: 'object',
      additionalProperties: false,
      description: 'pull-through cache of other registries',
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
              prefix: {
                type: 'string',
                minLength: 1,
                description: 'local path prefix (`/v2/<prefix>/library/alpine/…`) and storage namespace; default: name',
              },
              host: {
                type: 'string',
                minLength: 1,
                description: "the host containerd names in `?ns=` (default: the url's host)",
              },
              default: {
                type: 'boolean',
                default: false,
                description: "serves un-prefixed requests (docker's registry-mirrors sends `library/…`) matching allow",
              },
              username: { type: 'string' },
              password: { type: 'string', writeOnly: true },
              tagTtl: { ...duration('how long a cached tag is served before it is checked again'), default: '0s' },
              timeout: { ...duration('upstream timeout before stale content is served'), default: '10s' },
              allow: {
                type: 'array',
                items: { type: 'string', minLength: 1 },
                description: 'remote repository globs this mirror may fetch (default: all)',
              },
              allowPush: { type: 'boolean', default: false, description: 'accept pushes into the mirrored namespace' },
              credentialsToRealm: {
                type: 'array',
                items: { type: 'string', minLength: 1 },
                description: "token realm hosts besides the upstream's own that may receive its credentials",
              },
              allowPrivateNetworks,
            },
          },
        },
        eviction: {
          type: 'object',
          additionalProperties: false,
          description: 'cached content is evicted',
          properties: {
            maxAge: duration('when not pulled for this long'),
            maxBytes: size('least recently pulled first, until mirrored blobs take at most this'),
            interval: duration('how often (default: only when GC runs)'),
          },
        },
      },
    },
  },
} as const;

/** The loaded configuration: every key with a default is present. */
export type Config = FromSchema<typeof configSchema>;
/** What a file may say: keys with defaults may be left out. */
export type ConfigInput = FromSchema<typeof configSchema, { keepDefaultedPropertiesOptional: true }>;

// Section types as their consumers accept them: keys with defaults stay optional, so code and tests can build a
// section by hand; a loaded `Config` (defaults filled) is assignable to each.
type Section<K extends keyof ConfigInput> = NonNullable<ConfigInput[K]>;
export type AuthConfig = Section<'auth'>;
export type TokenConfig = NonNullable<AuthConfig['token']>;
export type IssuerConfig = NonNullable<TokenConfig['trust']>[number];
export type OidcProviderConfig = NonNullable<AuthConfig['oidc']>[number];
export type TlsConfig = NonNullable<Section<'http'>['tls']>;
export type ProxyConfig = Section<'proxy'>;
export type UpstreamConfig = NonNullable<ProxyConfig['upstreams']>[number];
export type RetentionConfig = Section<'retention'>;
export type RetentionPolicy = NonNullable<RetentionConfig['policies']>[number];
export type ImmutableRule = Section<'immutableTags'>[number];
export type QuotaRule = Section<'quotas'>[number];
export type SignaturesConfig = Section<'signatures'>;
export type SignaturePolicyConfig = NonNullable<SignaturesConfig['policies']>[number];
export type WebhookConfig = Section<'webhooks'>[number];
export type SyncRule = Section<'sync'>[number];
export type ReplicationRule = Section<'replication'>[number];

// Sections as loaded (every key with a default present): what the modules that read them take, so a default is
// written only in the schema above and never again as a `??` fallback in the code.
type Loaded<K extends keyof Config> = NonNullable<Config[K]>;
export type LoadedAuthConfig = Loaded<'auth'>;
export type LoadedTokenConfig = LoadedAuthConfig['token'];
export type LoadedProxyConfig = Loaded<'proxy'>;
export type LoadedUpstreamConfig = NonNullable<LoadedProxyConfig['upstreams']>[number];
export type LoadedWebhookConfig = Loaded<'webhooks'>[number];
