// The config as text for an operator, generated from spec/config-schema.ts so it cannot drift from what is loaded:
// `berth config defaults` (every key, its description and default, as YAML that loads to the defaults) and
// `berth config check` (the effective config, secrets redacted).
import { stringify } from 'yaml';
import { configSchema, type Config } from '../spec/config-schema.js';

type SchemaNode = Record<string, any>;
const WIDTH = 116;

interface Line {
  depth: number;
  text: string;
  /** Printed behind `# `: a key without a default, anything inside such a section, and descriptions. */
  off: boolean;
  /** A description (printed as `# text` even inside a commented-out section). */
  doc?: boolean;
}

/** The full default config, commented. Active lines are exactly the schema's defaults, so it loads to them. */
export function defaultsYaml(): string {
  const lines: Line[] = [];
  _emit(configSchema, 0, false, lines);
  const head = [
    '# berth configuration: every key with its default (`berth config defaults`). Keys without a default are',
    '# commented out. Any key can be set by a BERTH_* variable instead: http.addr is BERTH_HTTP_ADDR,',
    '# storage.s3.forcePathStyle is BERTH_STORAGE_S3_FORCE_PATH_STYLE (lists and sections take JSON).',
    '# Durations: 90s, 10m, 1h30m, 30d. Sizes: 512MB, 10GiB, or a number of bytes.',
    '',
  ];
  return `${head.join('\n')}${lines.map(_render).join('\n')}\n`;
}

function _render(l: Line): string {
  const pad = '  '.repeat(l.depth);
  return l.off && !l.doc ? `${pad}# ${l.text}` : `${pad}${l.text}`;
}

function _emit(schema: SchemaNode, depth: number, off: boolean, out: Line[]): void {
  for (const [key, s] of Object.entries<SchemaNode>(schema.properties ?? {})) {
    for (const c of _comment(s, WIDTH - 2 * depth)) out.push({ depth, text: c, off: true, doc: true });
    const has = s.default !== undefined;
    if (s.type === 'object' && s.properties) {
      out.push({ depth, text: `${key}:`, off: off || !has });
      _emit(s, depth + 1, off || !has, out);
    } else if (s.type === 'array' && s.items?.type === 'object') {
      out.push({ depth, text: `${key}:`, off: true });
      const item: Line[] = [];
      _emit(s.items, depth + 2, true, item);
      // The first key carries the list's `- `; its description sits above it at the same indentation.
      const first = item.findIndex((l) => !l.doc);
      for (let i = 0; i <= first; i++) item[i] = { ...item[i], depth: depth + 1 };
      if (first >= 0) item[first] = { ...item[first], text: `- ${item[first].text}` };
      out.push(...item);
    } else {
      const value = has ? _scalar(s.default) : _placeholder(s);
      out.push({ depth, text: `${key}:${value ? ` ${value}` : ''}`, off: off || !has });
    }
  }
}

function _comment(s: SchemaNode, width: number): string[] {
  const parts: string[] = [];
  if (s.description) parts.push(s.description);
  const allowed = s.enum ?? s.items?.enum;
  if (allowed) parts.push(`one of: ${allowed.join(', ')}`);
  if (s['x-unit'] === 'duration') parts.push('a duration');
  if (s['x-unit'] === 'size') parts.push('bytes, or a size such as 10GiB');
  if (!parts.length) return [];
  return _wrap(parts.join('; '), width).map((l) => `# ${l}`);
}

function _wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + word.length + 1 > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

// Flow style, so a list default (webhooks[].events) stays on its key's line, commented out or not.
const _scalar = (v: unknown) => stringify(v, { collectionStyle: 'flow', flowCollectionPadding: false }).trim();

function _placeholder(s: SchemaNode): string {
  if (s.enum) return String(s.enum[0]);
  if (s.type === 'boolean') return 'false';
  if (s.type === 'array' || s.anyOf) return '[]';
  return '';
}

/** The effective config as YAML with every secret (`writeOnly` in the schema) replaced by `<redacted>`. */
export function effectiveYaml(config: Config): string {
  return stringify(_redact(config, configSchema));
}

function _redact(value: any, schema: SchemaNode | undefined): any {
  if (value === undefined || value === null) return value;
  if (schema?.writeOnly) return '<redacted>';
  if (Array.isArray(value)) return value.map((v) => _redact(v, schema?.items));
  if (typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, _redact(v, schema?.properties?.[k])]));
  return value;
}
