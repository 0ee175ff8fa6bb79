// Canonical JSON: object keys sorted, no insignificant whitespace — so the same value always has the same digest.
// Strings are escaped like JSON.stringify; numbers must be integers (image-spec uses only int64 values).

export function canonicalJson(value: unknown): string {
  // Fast path: JSON.stringify does the escaping and the walk natively; the replacer hands it each object with
  // sorted keys (undefined members are dropped and undefined array items become null, as JSON.stringify does).
  // An integer-like key ("10") cannot be placed by insertion order — JS objects list those first, numerically —
  // so such a document takes the slow, explicit path.
  try {
    const out = JSON.stringify(value, _sorted);
    if (out === undefined) throw new TypeError(`canonical JSON cannot encode ${typeof value}`);
    return out;
  } catch (e) {
    if (e !== _INDEX_KEY) throw e;
    return _explicit(value);
  }
}

const _INDEX_KEY = Symbol('integer-like key');

function _explicit(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('canonical JSON cannot encode a non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => _explicit(v === undefined ? null : v)).join(',')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${_explicit(obj[k])}`).join(',')}}`;
  }
  throw new TypeError(`canonical JSON cannot encode ${typeof value}`);
}

function _sorted(_key: string, v: unknown): unknown {
  if (typeof v === 'number' && !Number.isFinite(v))
    throw new TypeError('canonical JSON cannot encode a non-finite number');
  if (typeof v === 'bigint' || typeof v === 'function' || typeof v === 'symbol')
    throw new TypeError(`canonical JSON cannot encode ${typeof v}`);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
  const obj = v as Record<string, unknown>;
  const keys = Object.keys(obj);
  // Already in order (documents built with sorted keys, e.g. an SBOM's 20,000 file entries): no copy needed.
  // Order is checked on the actual key list, so integer-like keys listed first are caught here too when misplaced.
  let inOrder = true;
  for (let i = 1; i < keys.length && inOrder; i++) inOrder = keys[i - 1] < keys[i];
  if (inOrder) return v;
  keys.sort();
  if (keys.some((k) => /^(0|[1-9][0-9]*)$/.test(k))) throw _INDEX_KEY;
  const sorted: Record<string, unknown> = {};
  for (const k of keys) sorted[k] = obj[k];
  return sorted;
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}
