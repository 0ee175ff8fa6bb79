// Server configuration: YAML file → BERTH_* environment overrides → defaults, validated by spec/config-schema.ts.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { configSchema } from '../spec/config-schema.js';
import { validator, describeErrors } from '../spec/schemas.js';
import type { ProxyConfig } from './proxy/config.js';
import type { RetentionConfig, ImmutableRule, QuotaRule } from './policy.js';
import type { WebhookConfig } from './webhooks.js';
import type { AuthConfig } from './auth/config.js';

export interface Config {
  http: {
    addr: string;
    publicUrl?: string;
    shutdownTimeout: string;
    bodyIdleTimeout: string;
    requestTimeout: string;
    tls?: TlsConfig;
  };
  storage: {
    filesystem?: { root: string; fsync?: boolean };
    s3?: {
      bucket: string;
      endpoint?: string;
      region?: string;
      prefix?: string;
      forcePathStyle?: boolean;
      accessKeyId?: string;
      secretAccessKey?: string;
      blobGet?: 'redirect' | 'proxy';
      tagCacheTtl?: string;
    };
    delete: boolean;
    maxManifestBytes: number;
    uploadPurge: { age: string; interval: string; enabled: boolean };
    uploadSessions: { maxPerRepository: number; maxPerCaller: number };
  };
  api: { maxPageSize: number };
  log: { level: 'debug' | 'info' | 'warn' | 'error' | 'silent'; requests: boolean };
  auth: AuthConfig;
  proxy?: ProxyConfig;
  gc: { enabled: boolean; interval: string; grace: string; deleteUntagged: boolean; concurrency: number };
  retention?: RetentionConfig;
  immutableTags?: ImmutableRule[];
  quotas?: QuotaRule[];
  metrics: { enabled: boolean };
  ui: { enabled: boolean };
  webhooks?: WebhookConfig[];
}

/** `http.tls`: PEM files, re-read when they change (registry/tls.ts). */
export interface TlsConfig {
  certificate: string;
  key: string;
  clientCAs?: string;
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
}

export class ConfigError extends Error {}

export const DEFAULTS = {
  http: { addr: ':5000', shutdownTimeout: '30s', bodyIdleTimeout: '60s', requestTimeout: '0s' },
  storage: {
    delete: true,
    maxManifestBytes: 4 * 1024 * 1024 + 1024 * 1024, // 4 MiB manifests must work; refuse above 5 MiB
    uploadPurge: { age: '24h', interval: '1h', enabled: true },
    // Far above what pushes need (docker opens 3–5 per push at a time), far below a client opening thousands.
    uploadSessions: { maxPerRepository: 1000, maxPerCaller: 5000 },
  },
  api: { maxPageSize: 10_000 },
  log: { level: 'info', requests: true },
  auth: { mode: 'none' },
  gc: { enabled: false, interval: '24h', grace: '1h', deleteUntagged: false, concurrency: 32 },
  metrics: { enabled: true },
  ui: { enabled: true },
} as const;

export function parseDuration(value: string): number {
  const m = /^([0-9]+)(ms|s|m|h|d)$/.exec(value);
  if (!m) throw new ConfigError(`invalid duration "${value}": use e.g. 500ms, 30s, 10m, 24h, 7d`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms']!;
  return Number(m[1]) * unit;
}

/** Deep merge where `over` wins; arrays are replaced, not merged. */
function merge(base: any, over: any): any {
  if (over === undefined) return base;
  if (
    typeof base !== 'object' ||
    base === null ||
    Array.isArray(base) ||
    typeof over !== 'object' ||
    Array.isArray(over)
  )
    return over;
  const out: any = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v);
  return out;
}

/**
 * Maps `BERTH_STORAGE_S3_FORCE_PATH_STYLE=true` onto `storage.s3.forcePathStyle` by walking the schema: at each level
 * the longest run of `_`-separated words that names a property (case- and underscore-insensitively) is taken.
 */
export function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, any> = {};
  for (const [key, raw] of Object.entries(env)) {
    if (!key.startsWith('BERTH_') || raw === undefined) continue;
    const words = key.slice('BERTH_'.length).toLowerCase().split('_');
    const path = _resolve(configSchema as any, words);
    if (!path) continue; // not a config key (e.g. BERTH_DEBUG)
    let node = out;
    for (const k of path.keys.slice(0, -1)) node = node[k] ??= {};
    node[path.keys[path.keys.length - 1]] = _coerce(raw, path.schema, key);
  }
  return out;
}

function _resolve(schema: any, words: string[]): { keys: string[]; schema: any } | undefined {
  if (words.length === 0) return { keys: [], schema };
  const props = schema?.properties;
  if (!props) return undefined;
  for (let n = words.length; n >= 1; n--) {
    const candidate = words.slice(0, n).join('');
    const key = Object.keys(props).find((k) => k.toLowerCase().replaceAll('_', '') === candidate);
    if (!key) continue;
    const rest = _resolve(props[key], words.slice(n));
    if (rest) return { keys: [key, ...rest.keys], schema: rest.schema };
  }
  return undefined;
}

function _coerce(raw: string, schema: any, name: string): unknown {
  const type = schema?.type;
  if (type === 'boolean') {
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new ConfigError(`${name}: expected true or false, got "${raw}"`);
  }
  if (type === 'integer') {
    if (!/^-?\d+$/.test(raw)) throw new ConfigError(`${name}: expected an integer, got "${raw}"`);
    return Number(raw);
  }
  if (type === 'object' || type === 'array') {
    try {
      return JSON.parse(raw);
    } catch {
      throw new ConfigError(`${name}: expected JSON for an ${type}`);
    }
  }
  return raw;
}

/** Loads and validates the configuration. `flags` (from the command line) win over env, which wins over the file. */
export function loadConfig(
  opts: { file?: string; env?: NodeJS.ProcessEnv; flags?: Record<string, unknown> } = {},
): Config {
  let fromFile: unknown = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (e) {
      throw new ConfigError(
        `cannot read config file ${opts.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    try {
      fromFile = parseYaml(text) ?? {};
    } catch (e) {
      throw new ConfigError(`${opts.file}: invalid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  const layered = merge(merge(fromFile, envOverrides(opts.env ?? process.env)), opts.flags ?? {});
  const validate = validator(configSchema);
  if (!validate(layered)) {
    const where = opts.file ? `${opts.file}: ` : 'config: ';
    const e = validate.errors?.[0];
    const hint =
      e?.keyword === 'additionalProperties'
        ? ` "${(e.params as { additionalProperty: string }).additionalProperty}" (check the spelling; see README "Configuration")`
        : '';
    throw new ConfigError(`${where}${describeErrors(validate.errors).replace(/^\//, '').replaceAll('/', '.')}${hint}`);
  }
  const config = merge(DEFAULTS, layered) as Config;
  if (!config.storage.filesystem && !config.storage.s3) config.storage.filesystem = { root: './data' };
  if (config.storage.filesystem && config.storage.s3) {
    throw new ConfigError('config: storage: choose one of storage.filesystem or storage.s3, not both');
  }
  for (const d of [
    config.http.shutdownTimeout,
    config.http.bodyIdleTimeout,
    config.http.requestTimeout,
    config.storage.uploadPurge.age,
    config.storage.uploadPurge.interval,
    config.gc.interval,
    config.gc.grace,
  ])
    parseDuration(d);
  return config;
}
