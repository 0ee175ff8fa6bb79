// Loads berth.yaml: YAML → JSON Schema (spec/build-spec.ts) → a LoadedSpec that can point back at the source.
// Every error names file, line and field, e.g. "berth.yaml:12 layers[1].files[0].src: no file matches 'dist/**'",
// so the builder's later checks (missing files, escapes) report in the same shape via `spec.at(path)`.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { ErrorObject } from 'ajv';
import { buildSpecSchema, type BuildSpec } from '../spec/build-spec.js';
import { validator } from '../spec/schemas.js';
import type { Platform } from '../spec/manifest.js';
import { formatPlatform, parsePlatform, selectPlatforms } from '../spec/platform.js';

export type FieldPath = (string | number)[];

/** A user error in the spec or the context, already carrying "file:line field: " in its message. */
export class BuildSpecError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
    readonly field?: string,
  ) {
    super(message);
  }
}

/**
 * A build option (not the spec) is at fault, or is the fix: `option` is its name in BuildOptions/PipelineOptions,
 * so a caller can say it in its own words (the CLI names the flag).
 */
export class BuildOptionError extends Error {
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(message);
  }
}

export interface LoadedSpec {
  spec: BuildSpec;
  /** The file name used in messages (as given, e.g. "berth.yaml"). */
  file: string;
  /** Builds an error located at a field: `spec.error(['layers',1,'files',0,'src'], "no file matches 'dist/**'")`. */
  error(path: FieldPath, message: string): BuildSpecError;
}

/** `layers[1].files[0].src` */
export function formatField(path: FieldPath): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

function _nodeAt(doc: Document, path: FieldPath): { node?: Node; depth: number } {
  // Walk as deep as the document goes: for a missing field we point at its parent.
  let node: unknown = doc.contents;
  let depth = 0;
  for (const p of path) {
    let next: unknown;
    if (isMap(node)) next = node.get(p as string, true);
    else if (isSeq(node)) next = node.get(p as number, true);
    if (next === undefined || next === null) break;
    node = next;
    depth++;
  }
  return { node: node as Node | undefined, depth };
}

function _keyLine(doc: Document, lines: LineCounter, path: FieldPath): number | undefined {
  // Prefer the key's line (`src: …`) over the value's, which for block scalars starts on the next line.
  const parent = _nodeAt(doc, path.slice(0, -1));
  const last = path[path.length - 1];
  if (parent.depth === path.length - 1 && isMap(parent.node) && typeof last === 'string') {
    const pair = parent.node.items.find((it: any) => (it.key?.value ?? it.key) === last) as any;
    if (pair?.key?.range) return lines.linePos(pair.key.range[0]).line;
  }
  const { node } = _nodeAt(doc, path);
  return node?.range ? lines.linePos(node.range[0]).line : undefined;
}

/** Parses `text` (the contents of `file`) and validates it. Pure apart from the environment-free checks. */
export function parseSpec(text: string, file = 'berth.yaml'): LoadedSpec {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const name = basename(file) === file ? file : file;
  if (doc.errors.length) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line;
    throw new BuildSpecError(
      `${name}${line ? `:${line}` : ''}: invalid YAML: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`,
      name,
      line,
    );
  }
  const error = (path: FieldPath, message: string): BuildSpecError => {
    const line = _keyLine(doc, lines, path);
    const field = formatField(path);
    return new BuildSpecError(`${name}${line ? `:${line}` : ''} ${field || '(top)'}: ${message}`, name, line, field);
  };
  const data = doc.toJS({ maxAliasCount: 100 });
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    throw new BuildSpecError(`${name}: expected a mapping with apiVersion: berth/v1 and kind: Image`, name);
  }
  const validate = validator(buildSpecSchema);
  if (!validate(data)) {
    const { path, message } = _describe(validate.errors ?? [], data);
    throw error(path, message);
  }
  const spec = data as BuildSpec;
  for (const [i, p] of (spec.platforms ?? []).entries()) {
    try {
      parsePlatform(p);
    } catch (e) {
      throw error(['platforms', i], (e as Error).message);
    }
  }
  _checkDuplicateLayers(spec, error);
  return { spec, file: name, error };
}

export async function loadSpec(file: string): Promise<LoadedSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new BuildSpecError(
      `cannot read build spec ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  return parseSpec(text, file);
}

function _checkDuplicateLayers(spec: BuildSpec, error: LoadedSpec['error']): void {
  const seen = new Set<string>();
  for (const [i, l] of (spec.layers ?? []).entries()) {
    if (seen.has(l.name)) throw error(['layers', i, 'name'], `duplicate layer name "${l.name}"`);
    seen.add(l.name);
  }
}

function _pointer(instancePath: string): FieldPath {
  if (!instancePath) return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** Picks the most useful ajv error and turns it into a field path + sentence. */
function _describe(errors: ErrorObject[], data: unknown): { path: FieldPath; message: string } {
  // `if/then` wrappers add noise: prefer the deepest concrete error.
  const concrete = errors.filter((e) => e.keyword !== 'if' && e.keyword !== 'allOf');
  const anyOf = errors.find((x) => x.keyword === 'anyOf' && x.instancePath.includes('/files/'));
  const e = anyOf ?? concrete.sort((a, b) => b.instancePath.length - a.instancePath.length)[0] ?? errors[0];
  const path = _pointer(e.instancePath);
  const last = String(path[path.length - 1]);
  switch (e.keyword) {
    case 'additionalProperties':
      return {
        path: [...path, e.params.additionalProperty],
        message: `unknown field "${e.params.additionalProperty}"${_hint(path)}`,
      };
    case 'required':
      return { path, message: `missing required field "${e.params.missingProperty}"` };
    case 'const':
      return { path, message: `must be ${JSON.stringify(e.params.allowedValue)}` };
    case 'enum':
      return {
        path,
        message: `must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      };
    case 'anyOf':
      if (path.includes('files'))
        return { path, message: 'an entry needs one of src, inline, symlink, directory or tar' };
      return { path, message: `has the wrong type or format (${_typeOf(_get(data, path))})` };
    case 'pattern':
      if (/mode$/i.test(String(path[path.length - 1]))) {
        return { path, message: `must be an octal string like "0644" (quote it: YAML reads a bare 0644 as decimal)` };
      }
      if (['dest', 'directory', 'workdir'].includes(last) || path.includes('volumes')) {
        return { path, message: `must be an absolute path in the image, not ${JSON.stringify(_get(data, path))}` };
      }
      return { path, message: `${JSON.stringify(_get(data, path))} has the wrong format` };
    case 'type':
      if (/mode$/i.test(String(path[path.length - 1]))) {
        return { path, message: `must be an octal string like "0644" (quote it: YAML reads a bare 0644 as decimal)` };
      }
      return { path, message: `must be ${e.params.type}, not ${_typeOf(_get(data, path))}` };
    default:
      return { path, message: e.message ?? 'invalid' };
  }
}

function _hint(path: FieldPath): string {
  return path.includes('files') ? ' (an entry is one of: src/dest, inline/dest, symlink/dest, directory, tar)' : '';
}

function _get(data: unknown, path: FieldPath): unknown {
  let v: any = data;
  for (const p of path) v = v?.[p];
  return v;
}

function _typeOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v;
}

/** The platforms a build makes: the spec's (default linux/amd64), or those of `only` — each must be among them. */
export function specPlatforms(loaded: LoadedSpec, only?: Platform[]): Platform[] {
  const { all, picked, missing } = selectPlatforms(loaded.spec.platforms, only);
  if (missing)
    throw new BuildOptionError(
      'platforms',
      `${formatPlatform(missing)} is not in the platforms of ${loaded.file} (${all.map(formatPlatform).join(', ')})`,
    );
  return picked;
}
