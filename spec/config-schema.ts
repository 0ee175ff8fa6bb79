// JSON Schema of berth's server configuration (berth.yaml for `berth serve`). Unknown keys are errors, so a typo
// is reported instead of silently ignored. Every key can be overridden by BERTH_* variables (registry/config.ts).
const duration = { type: 'string', pattern: '^[0-9]+(ms|s|m|h|d)$' };

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
        /** Public base URL, used in absolute Location headers and token realms when set. */
        publicUrl: { type: 'string' },
        shutdownTimeout: duration,
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
    auth: { type: 'object', properties: { mode: { enum: ['none', 'htpasswd', 'token'] } } },
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
