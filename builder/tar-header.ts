// The tar header blocks of one member: POSIX ustar, plus a PAX extended header when a name does not fit.
// spec: POSIX.1-2017 pax, "ustar Interchange Format" and "pax Extended Header"
// https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06
//
// berth owns these ~100 lines so that reproducible layer bytes never depend on another package's private file. They
// write byte for byte what tar-stream 3.x's pack() wrote for berth's members (layers built before keep their
// digests; tar-header.test.ts pins the bytes and compares them with tar-stream's), including its choices where POSIX
// leaves room:
// - ustar unless a name or link name is not ASCII, or does not fit (name ≤ 100 bytes after moving leading
//   directories into the 155-byte prefix; link name ≤ 100); then a PAX header (type 'x', named "PaxHeader") carries
//   `path` and `linkpath`, and the member's own header follows, named "PaxHeader" too.
// - numeric fields are zero-padded octal ending in a space (mode, uid, gid: 6 digits; size, mtime: 11); a size past
//   11 octal digits (8 GiB) is written base-256, as GNU tar and Go do; the checksum is 6 digits, a space, a NUL.
// - mode 0 is written as 0755 for a directory and 0644 otherwise (tar-stream's default for a missing mode; kept so
//   digests stay, although a spec's "0000" then does not reach the tar).
import type { Member } from './plan.js';

const BLOCK = 512;
const TYPEFLAG = { file: '0', symlink: '2', directory: '5', pax: 'x' } as const;
const USTAR_MAGIC = Buffer.from('ustar\x0000', 'latin1'); // magic "ustar\0" then version "00"

interface Fields {
  name: string;
  linkname?: string;
  type: keyof typeof TYPEFLAG;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  uname?: string;
  gname?: string;
}

/** The header block(s) that precede a member's data in the layer tar: 512 bytes, or 3+ blocks with a PAX header. */
export function encodeMember(m: Member, epoch: number): Buffer {
  const f: Fields = {
    // The conventional trailing '/' on directory names, as GNU tar and Go's archive/tar write it.
    name: m.type === 'directory' ? `${m.path}/` : m.path,
    linkname: m.linkname,
    type: m.type,
    mode: m.mode || (m.type === 'directory' ? 0o755 : 0o644),
    uid: m.uid,
    gid: m.gid,
    size: m.type === 'file' ? m.size : 0,
    mtime: epoch,
    uname: m.uname,
    gname: m.gname,
  };
  const plain = _ustar(f);
  if (plain) return plain;
  const pax = encodePaxRecords(f.name, f.linkname);
  const paxHeader: Fields = { ...f, name: 'PaxHeader', linkname: f.linkname && 'PaxHeader' };
  const out = Buffer.alloc(BLOCK + _padded(pax.length) + BLOCK);
  _ustar({ ...paxHeader, type: 'pax', size: pax.length })!.copy(out, 0);
  pax.copy(out, BLOCK);
  _ustar(paxHeader)!.copy(out, BLOCK + _padded(pax.length));
  return out;
}

/** PAX records `"%d %s=%s\n"` for path and linkpath, where %d counts the whole record, its own digits included. */
export function encodePaxRecords(path: string, linkpath?: string): Buffer {
  let s = '';
  if (path) s += _record(` path=${path}\n`);
  if (linkpath) s += _record(` linkpath=${linkpath}\n`);
  return Buffer.from(s);
}

function _record(rest: string): string {
  const len = Buffer.byteLength(rest);
  let digits = String(len).length;
  if (len + digits >= 10 ** digits) digits++;
  return `${len + digits}${rest}`;
}

/** One ustar header block, or undefined when the names need PAX. */
function _ustar(f: Fields): Buffer | undefined {
  let name = f.name;
  if (Buffer.byteLength(name) !== name.length) return undefined; // not ASCII
  let prefix = '';
  while (name.length > 100) {
    const slash = name.indexOf('/');
    if (slash === -1) return undefined;
    prefix += (prefix ? '/' : '') + name.slice(0, slash);
    name = name.slice(slash + 1);
  }
  if (prefix.length > 155) return undefined;
  if (f.linkname && Buffer.byteLength(f.linkname) > 100) return undefined;
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 'latin1');
  b.write(_octal(f.mode & 0o7777, 6), 100, 'latin1');
  b.write(_octal(f.uid, 6), 108, 'latin1');
  b.write(_octal(f.gid, 6), 116, 'latin1');
  _size(f.size, b, 124);
  // Whole seconds in 11 octal digits: every epoch the spec allows (≤ 8589934591) fits. tar-stream cut the value to
  // a 32-bit int, which wrote a corrupt field for epochs from 2038 on; below that the bytes are the same.
  b.write(_octal(Math.floor(f.mtime), 11), 136, 'latin1');
  b.write(TYPEFLAG[f.type], 156, 'latin1');
  if (f.linkname) b.write(f.linkname, 157); // UTF-8 when it fits (POSIX leaves the character set open)
  USTAR_MAGIC.copy(b, 257);
  if (f.uname) b.write(f.uname, 265);
  if (f.gname) b.write(f.gname, 297);
  b.write(_octal(0, 6), 329, 'latin1'); // devmajor
  b.write(_octal(0, 6), 337, 'latin1'); // devminor
  if (prefix) b.write(prefix, 345, 'latin1');
  // The checksum: every byte of the block summed with the checksum field itself taken as 8 spaces.
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += b[i];
  for (let i = 156; i < BLOCK; i++) sum += b[i];
  b.write(_octal(sum, 6), 148, 'latin1');
  return b;
}

/** `n` octal digits, zero-padded, then a space; all sevens when it does not fit. */
function _octal(v: number, n: number): string {
  const s = v.toString(8);
  return s.length > n ? `${'7'.repeat(n)} ` : `${'0'.repeat(n - s.length)}${s} `;
}

function _size(v: number, b: Buffer, at: number): void {
  if (v.toString(8).length <= 11) {
    b.write(_octal(v, 11), at, 'latin1');
    return;
  }
  // Base-256: a 0x80 marker, then the value big-endian in the remaining 11 bytes (GNU tar, Go archive/tar).
  b[at] = 0x80;
  for (let i = 11; i > 0; i--) {
    b[at + i] = v % 256;
    v = Math.floor(v / 256);
  }
}

function _padded(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}
