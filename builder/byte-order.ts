// Byte order of UTF-8 strings: how a build sorts paths and names, the same everywhere, independent of locale.

/**
 * Sorts `items` in place by the UTF-8 bytes of `key(item)`. JS compares strings by UTF-16 code unit, which is that
 * order unless a string has a surrogate pair (a code point above U+FFFF sorts below U+E000–U+FFFF in UTF-16): only
 * then are the keys compared as bytes.
 */
export function sortByUtf8<T>(items: T[], key: (item: T) => string): T[] {
  if (items.some((i) => /[\ud800-\udfff]/.test(key(i)))) {
    const keyed = items.map((item) => ({ item, bytes: Buffer.from(key(item)) }));
    keyed.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    keyed.forEach((k, i) => (items[i] = k.item));
    return items;
  }
  return items.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}
