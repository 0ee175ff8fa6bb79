// Server configuration: YAML file → BERTH_* environment overrides → command-line flags, validated against
// spec/config-schema.ts, which also supplies the defaults and the types. Errors are for an operator: they name where
// the value came from (file:line:col, the variable or the flag), the key path, and the fix (did-you-mean for unknown
// keys, the allowed values of an enum, the form of a duration or size).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, resolve } from 'node:path';
import { trustedProxies } from './forwarded.js';
import { closest, distance } from 'fastest-levenshtein';
import { LineCounter, parseDocument, isMap, isScalar, type Document, type Node } from 'yaml';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { configSchema, type Config } from '../spec/config-schema.js';
import { DURATION_FORM, SIZE_FORM, parseSize } from '../spec/units.js';

export type {
  Config,
  ConfigInput,
  TlsConfig,
  AuthConfig,
  ProxyConfig,
  UpstreamConfig,
  RetentionConfig,
  RetentionPolicy,
  ImmutableRule,
  QuotaRule,
  WebhookConfig,
} from '../spec/config-schema.js';

export class ConfigError extends Error {}

/**
 * BERTH_* variables that belong to the tool and its test harness, not to the config file; every other BERTH_*
 * variable must name a config key (a typo is an error, never silently ignored).
 */
export const NON_CONFIG_ENV = new Set([
  'BERTH_DEBUG',
  'BERTH_TOOLS',
  'BERTH_BENCH_BIN',
  'BERTH_SOAK_MS',
  'BERTH_STORM_MS',
  'BERTH_BIN',
  'BERTH_ZSTD_MODULE',
  'BERTH_SCREENSHOTS',
  'BERTH_BENCH_UI',
  'BERTH_CLUSTER_SLOT',
  'BERTH_CLUSTER_WORKERS',
]);

type Path = Array<string | number>;
type SchemaNode = Record<string, any>;

/** The schema's defaults alone: what `berth serve` runs with when nothing is configured. */
export function configDefaults(): Config {
  return loadConfig({ env: {} });
}

/** `storage.s3.forcePathStyle` → `BERTH_STORAGE_S3_FORCE_PATH_STYLE`. */
export function envName(keys: readonly string[]): string {
  return `BERTH_${keys.map((k) => k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;
}

/** Every key a BERTH_* variable can set (objects and arrays take JSON), for did-you-mean. */
function _envNames(schema: SchemaNode = configSchema, keys: string[] = []): string[] {
  const out = keys.length ? [envName(keys)] : [];
  for (const [k, s] of Object.entries<SchemaNode>(schema.properties ?? {})) out.push(..._envNames(s, [...keys, k]));
  return out;
}

interface EnvLayer {
  values: Record<string, any>;
  /** `http.addr` → `BERTH_HTTP_ADDR` */
  names: Map<string, string>;
}

function _envLayer(env: NodeJS.ProcessEnv): EnvLayer {
  const values: Record<string, any> = {};
  const names = new Map<string, string>();
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('BERTH_') || raw === undefined || NON_CONFIG_ENV.has(name)) continue;
    const words = name.slice('BERTH_'.length).toLowerCase().split('_');
    const path = _resolve(configSchema, words);
    if (!path) {
      const guess = closest(name, _envNames());
      const hint = distance(name, guess) <= Math.max(3, name.length / 4) ? `did you mean ${guess}? ` : '';
      throw new ConfigError(
        `${name}: no config key has this name; ${hint}(BERTH_* variables set config keys, e.g. BERTH_HTTP_ADDR sets http.addr; see \`berth config defaults\`)`,
      );
    }
    let node = values;
    for (const k of path.keys.slice(0, -1)) node = node[k] ??= {};
    node[path.keys[path.keys.length - 1]] = _coerce(raw, path.schema, name);
    names.set(path.keys.join('.'), name);
  }
  return { values, names };
}

/**
 * Maps `BERTH_STORAGE_S3_FORCE_PATH_STYLE=true` onto `storage.s3.forcePathStyle` by walking the schema: at each level
 * the longest run of `_`-separated words that names a property (case- and underscore-insensitively) is taken.
 */
export function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  return _envLayer(env).values;
}

function _resolve(schema: SchemaNode, words: string[]): { keys: string[]; schema: SchemaNode } | undefined {
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

function _coerce(raw: string, schema: SchemaNode, name: string): unknown {
  const type = schema?.type;
  if (type === 'boolean') {
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new ConfigError(`${name}: expected true or false, got "${raw}"`);
  }
  if (type === 'integer' && schema['x-unit'] !== 'size') {
    if (!/^-?\d+$/.test(raw)) throw new ConfigError(`${name}: expected an integer, got "${raw}"`);
    return Number(raw);
  }
  if (type === 'integer') return /^\d+$/.test(raw) ? Number(raw) : raw; // a size: `10GiB` is parsed with the rest
  if (type === 'object' || type === 'array' || schema?.anyOf) {
    if (schema?.anyOf && (raw === 'true' || raw === 'false')) return raw === 'true';
    try {
      return JSON.parse(raw);
    } catch {
      throw new ConfigError(`${name}: expected JSON for ${type === 'array' ? 'a list' : 'an object'}, got "${raw}"`);
    }
  }
  return raw;
}

/** Deep merge where `over` wins; arrays are replaced, not merged. */
function _merge(base: any, over: any): any {
  if (over === undefined) return base;
  if (!_isObject(base) || !_isObject(over)) return over;
  const out: any = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = _merge(base[k], v);
  return out;
}

const _isObject = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Sizes written with units (`10GiB`) become byte counts before validation; what doesn't parse is left to ajv. */
function _normalizeSizes(value: any, schema: SchemaNode | undefined): any {
  if (!schema) return value;
  if (schema['x-unit'] === 'size' && typeof value === 'string') {
    try {
      return parseSize(value);
    } catch {
      return value;
    }
  }
  if (Array.isArray(value)) return value.map((v) => _normalizeSizes(v, schema.items));
  if (_isObject(value) && schema.properties)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, _normalizeSizes(v, schema.properties[k])]));
  return value;
}

let _validate: ValidateFunction | undefined;
function _validator(): ValidateFunction {
  if (!_validate) {
    // A private ajv: it fills in the schema's defaults (useDefaults) and reports the failing subschema (verbose),
    // which the error messages need. Loaded on first use, like spec/schemas.ts does (ajv costs ~40 ms to import).
    const { Ajv } = createRequire(import.meta.url)('ajv') as typeof import('ajv');
    _validate = new Ajv({ useDefaults: true, verbose: true, allErrors: false, strict: false }).compile(configSchema);
  }
  return _validate;
}

interface Sources {
  file?: string;
  doc?: Document;
  lines?: LineCounter;
  env: EnvLayer;
  flags: Record<string, unknown>;
  flagNames: Record<string, string>;
}

/** Loads and validates the configuration. `flags` (from the command line) win over env, which wins over the file. */
export function loadConfig(
  opts: {
    file?: string;
    env?: NodeJS.ProcessEnv;
    flags?: Record<string, unknown>;
    /** Config key path → the flag that set it (`http.addr` → `--addr`), for error messages. */
    flagNames?: Record<string, string>;
  } = {},
): Config {
  const src: Sources = {
    file: opts.file,
    env: _envLayer(opts.env ?? process.env),
    flags: opts.flags ?? {},
    flagNames: opts.flagNames ?? {},
  };
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
    src.lines = new LineCounter();
    src.doc = parseDocument(text, { lineCounter: src.lines, prettyErrors: true, uniqueKeys: true });
    const bad = src.doc.errors[0];
    if (bad) {
      const pos = bad.linePos?.[0] ?? { line: 1, col: 1 };
      const line = text.split('\n')[pos.line - 1] ?? '';
      throw new ConfigError(
        `${opts.file}:${pos.line}:${pos.col}: invalid YAML: ${bad.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}\n` +
          `  ${pos.line} | ${line}\n  ${' '.repeat(String(pos.line).length)} | ${' '.repeat(Math.max(0, pos.col - 1))}^`,
      );
    }
    fromFile = src.doc.toJS() ?? {};
    if (!_isObject(fromFile))
      throw new ConfigError(`${opts.file}:1:1: the config must be a mapping of sections (http:, storage:, auth:, …)`);
    _resolveFilePaths(fromFile, dirname(resolve(opts.file)));
  }
  const layered = _normalizeSizes(_merge(_merge(fromFile, src.env.values), src.flags), configSchema);
  layered.storage ??= {};
  if (layered.storage.filesystem && layered.storage.s3) {
    const at = _origin(src, ['storage', 's3']);
    throw new ConfigError(`${at}storage: choose one of storage.filesystem or storage.s3, not both`);
  }
  // Filesystem storage under ./data unless S3 is configured (the schema can't say "default unless the other").
  if (!layered.storage.s3) layered.storage.filesystem ??= {};
  const validate = _validator();
  if (!validate(layered)) throw new ConfigError(_explain(validate.errors![0], src));
  try {
    trustedProxies((layered as Config).http.trustedProxies);
  } catch (e) {
    throw new ConfigError(`${_origin(src, ['http', 'trustedProxies'])}http.trustedProxies: ${(e as Error).message}`);
  }
  return layered as Config;
}

/**
 * Relative file paths written in the config file are relative to that file, wherever berth is started from (a
 * Kubernetes mount or a systemd unit's WorkingDirectory would otherwise change what they mean): http.tls files and
 * audit.output. Values from BERTH_* variables and flags stay relative to the working directory.
 */
function _resolveFilePaths(fromFile: any, dir: string): void {
  const tls = fromFile?.http?.tls;
  if (tls && typeof tls === 'object')
    for (const k of ['certificate', 'key', 'clientCAs'])
      if (typeof tls[k] === 'string' && tls[k] && !isAbsolute(tls[k])) tls[k] = resolve(dir, tls[k]);
  const out = fromFile?.audit?.output;
  if (typeof out === 'string' && out && out !== 'stdout' && out !== 'stderr' && !isAbsolute(out))
    fromFile.audit.output = resolve(dir, out);
}

/** One ajv error as `where: key.path: what is wrong; the fix`. */
function _explain(e: ErrorObject, src: Sources): string {
  const path = _path(e.instancePath);
  const key = (p: Path) => _keyPath(p) || '(top level)';
  const got = (v: unknown) => (typeof v === 'string' ? `"${v}"` : JSON.stringify(v));
  const schema = e.parentSchema as SchemaNode | undefined;
  switch (e.keyword) {
    case 'additionalProperties': {
      const name = (e.params as { additionalProperty: string }).additionalProperty;
      const allowed = Object.keys(schema?.properties ?? {});
      const guess = allowed.length ? closest(name, allowed) : undefined;
      const hint =
        guess && distance(name.toLowerCase(), guess.toLowerCase()) <= Math.max(2, name.length / 3)
          ? `did you mean "${guess}"? `
          : '';
      return `${_origin(src, [...path, name], true)}${key([...path, name])}: unknown key "${name}"; ${hint}(keys here: ${allowed.join(', ')})`;
    }
    case 'enum':
      return `${_origin(src, path)}${key(path)}: ${got(e.data)} is not allowed; use one of ${(e.schema as unknown[]).join(', ')}`;
    case 'pattern':
      if (schema?.['x-unit'] === 'duration')
        return `${_origin(src, path)}${key(path)}: ${got(e.data)} is not a duration; use ${DURATION_FORM}`;
      return `${_origin(src, path)}${key(path)}: ${got(e.data)} is not valid${schema?.description ? ` (${schema.description})` : `; it must match ${e.schema}`}`;
    case 'type':
      if (schema?.['x-unit'] === 'size')
        return `${_origin(src, path)}${key(path)}: ${got(e.data)} is not a size; use ${SIZE_FORM}`;
      return `${_origin(src, path)}${key(path)}: expected ${_article(String(e.schema))}, got ${got(e.data)}`;
    case 'required': {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      return `${_origin(src, path)}${key(path)}: missing key "${missing}"${schema?.properties?.[missing]?.description ? ` (${schema.properties[missing].description})` : ''}`;
    }
    case 'anyOf':
      if (schema?.anyOf?.some((s: SchemaNode) => s.required))
        return `${_origin(src, path)}${key(path)}: give the issuer's keys as jwksUrl or pem`;
      return `${_origin(src, path)}${key(path)}: ${got(e.data)} is not valid${schema?.description ? ` (${schema.description})` : ''}`;
    default:
      return `${_origin(src, path)}${key(path)}: ${e.message}${e.keyword === 'const' ? ` ${got(e.params.allowedValue)}` : ''}`;
  }
}

const _article = (type: string) =>
  ({ integer: 'an integer', object: 'a mapping of keys', array: 'a list', boolean: 'true or false' })[type] ??
  `a ${type}`;

/** `/storage/uploadPurge/age` → ['storage', 'uploadPurge', 'age'] (JSON Pointer unescaping; list indexes as numbers). */
function _path(pointer: string): Path {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** ['proxy', 'upstreams', 0, 'url'] → `proxy.upstreams[0].url` */
function _keyPath(path: Path): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i ? `.${p}` : p)).join('');
}

/** Where the value at `path` came from, as a message prefix: `--addr: `, `BERTH_HTTP_ADDR: ` or `file:line:col: `. */
function _origin(src: Sources, path: Path, isKey = false): string {
  for (let n = path.length; n >= 1; n--) {
    const dotted = path.slice(0, n).join('.');
    if (src.flagNames[dotted] && _has(src.flags, path.slice(0, n))) return `${src.flagNames[dotted]}: `;
  }
  for (let n = path.length; n >= 1; n--) {
    const name = src.env.names.get(path.slice(0, n).join('.'));
    if (name) return `${name}: `;
  }
  if (src.doc && src.lines) {
    // The node itself, or for a missing key the nearest enclosing node the file has.
    for (let n = path.length; n >= 0; n--) {
      const offset = _offset(src.doc, path.slice(0, n), isKey && n === path.length);
      if (offset !== undefined) {
        const { line, col } = src.lines.linePos(offset);
        return `${src.file}:${line}:${col}: `;
      }
    }
    return `${src.file}: `;
  }
  return 'config: ';
}

function _has(obj: unknown, path: Path): boolean {
  let node: any = obj;
  for (const k of path) {
    if (node === null || typeof node !== 'object' || !(k in node)) return false;
    node = node[k];
  }
  return true;
}

/** The source offset of the value (or with `key`, of the key) at `path` in the YAML document. */
function _offset(doc: Document, path: Path, key: boolean): number | undefined {
  if (path.length === 0) return doc.contents?.range?.[0];
  if (key) {
    const parent = doc.getIn(path.slice(0, -1), true);
    if (!isMap(parent)) return undefined;
    const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === path[path.length - 1]);
    return (pair?.key as Node | undefined)?.range?.[0];
  }
  const node = doc.getIn(path, true) as Node | undefined;
  return node?.range?.[0];
}
