// Strict JSON for content-addressed documents: a digest must name exactly one meaning, so bytes that different
// parsers read differently are refused instead of stored. JSON.parse alone accepts all of these:
// - invalid UTF-8 (decoded to U+FFFD here, rejected by serde, replaced by Go): RFC 8259 §8.1 requires UTF-8;
// - a byte order mark (Go's encoding/json refuses it, RFC 8259 §8.1 says "MUST NOT add");
// - duplicate object keys (last one wins in JS and Go, first one in others): RFC 8259 §4 "names SHOULD be unique";
// - lone surrogate escapes such as "\ud800" (not a Unicode string; Go substitutes U+FFFD): RFC 8259 §8.2;
// - integers beyond 2^53 (JS rounds them; Go's int64 does not), e.g. a descriptor `size`.

export class JsonError extends Error {}

const LONE_SURROGATE = /\p{Surrogate}/u;
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Parses `bytes` as JSON with exactly one meaning; throws JsonError naming the offending place (a JSON pointer). */
export function parseStrictJson(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new JsonError(`not valid UTF-8 (first bad byte near offset ${_firstInvalidUtf8(bytes)})`);
  }
  if (text.charCodeAt(0) === 0xfeff) throw new JsonError('starts with a byte order mark; JSON must not have one');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new JsonError('not valid JSON');
  }
  _scan(text);
  return doc;
}

interface Frame {
  /** Keys seen so far; undefined for an array. */
  keys?: Set<string>;
  pointer: string;
  key: string;
  index: number;
}

/** Walks text that JSON.parse accepted, looking only at tokens; throws on the first ambiguity. */
function _scan(text: string): void {
  const stack: Frame[] = [];
  let expectKey = false;
  const here = (): string => {
    const top = stack[stack.length - 1];
    if (!top) return '';
    return `${top.pointer}/${top.keys ? _escapePointer(top.key) : top.index}`;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      while (text.charCodeAt(j) !== 0x22) {
        if (text.charCodeAt(j) === 0x5c /* \ */) {
          escaped = true;
          j++;
        }
        j++;
      }
      const value = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
      const top = stack[stack.length - 1];
      const isKey = top?.keys !== undefined && expectKey;
      if (isKey) top.key = value;
      if (escaped && LONE_SURROGATE.test(value)) {
        throw new JsonError(
          `${isKey ? 'key' : 'string'} at "${here() || '/'}" has a lone surrogate escape (not Unicode text)`,
        );
      }
      if (isKey) {
        if (top.keys!.has(value)) throw new JsonError(`duplicate key "${here()}" (a key may appear once per object)`);
        top.keys!.add(value);
        expectKey = false;
      }
      i = j;
    } else if (ch === 0x7b /* { */ || ch === 0x5b /* [ */) {
      stack.push({ keys: ch === 0x7b ? new Set() : undefined, pointer: here(), key: '', index: 0 });
      expectKey = ch === 0x7b;
    } else if (ch === 0x7d /* } */ || ch === 0x5d /* ] */) {
      stack.pop();
    } else if (ch === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top.keys) expectKey = true;
      else top.index++;
    } else if (ch === 0x2d /* - */ || (ch >= 0x30 && ch <= 0x39)) {
      let j = i + 1;
      while (j < text.length && /[0-9.eE+-]/.test(text[j])) j++;
      const token = text.slice(i, j);
      if (/^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token))) {
        throw new JsonError(
          `number ${token.slice(0, 40)} at "${here() || '/'}" is beyond 2^53 and would not be read exactly`,
        );
      }
      i = j - 1;
    }
  }
}

/** RFC 6901: `~` → `~0`, `/` → `~1`. */
function _escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function _firstInvalidUtf8(bytes: Uint8Array): number {
  // Binary search for the longest valid prefix: decoding a prefix cut inside a character also fails, so step back.
  let lo = 0;
  let hi = bytes.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid - 1;
    }
  }
  return lo;
}
