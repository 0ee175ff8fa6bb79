// NaCl secretbox (XSalsa20-Poly1305), the cipher of cosign's encrypted private keys ("nacl/secretbox" in
// go-securesystemslib's `encrypted` package). Node's crypto has neither XSalsa20 nor a standalone Poly1305, and the
// keys are a few hundred bytes, so a small straightforward implementation is enough; it is checked against the
// NaCl paper's test vector and against keys written by the real cosign (signing/keys.test.ts, test/signing.test.ts).
// spec: D. J. Bernstein, "Cryptography in NaCl" (crypto_secretbox_xsalsa20poly1305); RFC 8439 §2.5 (Poly1305).
import { timingSafeEqual } from 'node:crypto';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;

const SIGMA = Uint32Array.of(0x61707865, 0x3320646e, 0x79622d32, 0x6b206574); // "expand 32-byte k"

function _rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n));
}

/** 20 rounds of Salsa20 over the 16-word state x (in place). */
function _rounds(x: Uint32Array): void {
  for (let i = 0; i < 10; i++) {
    // columns
    x[4] ^= _rotl((x[0] + x[12]) | 0, 7);
    x[8] ^= _rotl((x[4] + x[0]) | 0, 9);
    x[12] ^= _rotl((x[8] + x[4]) | 0, 13);
    x[0] ^= _rotl((x[12] + x[8]) | 0, 18);
    x[9] ^= _rotl((x[5] + x[1]) | 0, 7);
    x[13] ^= _rotl((x[9] + x[5]) | 0, 9);
    x[1] ^= _rotl((x[13] + x[9]) | 0, 13);
    x[5] ^= _rotl((x[1] + x[13]) | 0, 18);
    x[14] ^= _rotl((x[10] + x[6]) | 0, 7);
    x[2] ^= _rotl((x[14] + x[10]) | 0, 9);
    x[6] ^= _rotl((x[2] + x[14]) | 0, 13);
    x[10] ^= _rotl((x[6] + x[2]) | 0, 18);
    x[3] ^= _rotl((x[15] + x[11]) | 0, 7);
    x[7] ^= _rotl((x[3] + x[15]) | 0, 9);
    x[11] ^= _rotl((x[7] + x[3]) | 0, 13);
    x[15] ^= _rotl((x[11] + x[7]) | 0, 18);
    // rows
    x[1] ^= _rotl((x[0] + x[3]) | 0, 7);
    x[2] ^= _rotl((x[1] + x[0]) | 0, 9);
    x[3] ^= _rotl((x[2] + x[1]) | 0, 13);
    x[0] ^= _rotl((x[3] + x[2]) | 0, 18);
    x[6] ^= _rotl((x[5] + x[4]) | 0, 7);
    x[7] ^= _rotl((x[6] + x[5]) | 0, 9);
    x[4] ^= _rotl((x[7] + x[6]) | 0, 13);
    x[5] ^= _rotl((x[4] + x[7]) | 0, 18);
    x[11] ^= _rotl((x[10] + x[9]) | 0, 7);
    x[8] ^= _rotl((x[11] + x[10]) | 0, 9);
    x[9] ^= _rotl((x[8] + x[11]) | 0, 13);
    x[10] ^= _rotl((x[9] + x[8]) | 0, 18);
    x[12] ^= _rotl((x[15] + x[14]) | 0, 7);
    x[13] ^= _rotl((x[12] + x[15]) | 0, 9);
    x[14] ^= _rotl((x[13] + x[12]) | 0, 13);
    x[15] ^= _rotl((x[14] + x[13]) | 0, 18);
  }
}

/** The Salsa20 input block: constants, key, and the 16 bytes `input` (nonce ‖ counter, or HSalsa20's nonce). */
function _state(key: Uint8Array, input: Uint8Array): Uint32Array {
  const k = Buffer.from(key);
  const n = Buffer.from(input);
  const s = new Uint32Array(16);
  s[0] = SIGMA[0];
  s[5] = SIGMA[1];
  s[10] = SIGMA[2];
  s[15] = SIGMA[3];
  for (let i = 0; i < 4; i++) {
    s[1 + i] = k.readUInt32LE(4 * i);
    s[11 + i] = k.readUInt32LE(16 + 4 * i);
    s[6 + i] = n.readUInt32LE(4 * i);
  }
  return s;
}

/** HSalsa20: derives XSalsa20's subkey from the key and the first 16 nonce bytes. */
function _hsalsa20(key: Uint8Array, nonce16: Uint8Array): Buffer {
  const x = _state(key, nonce16);
  _rounds(x);
  const out = Buffer.alloc(32);
  [0, 5, 10, 15, 6, 7, 8, 9].forEach((w, i) => out.writeUInt32LE(x[w], 4 * i));
  return out;
}

/** `length` bytes of the XSalsa20 key stream for (key, 24-byte nonce). */
function _xsalsa20Stream(key: Uint8Array, nonce: Uint8Array, length: number): Buffer {
  const sub = _hsalsa20(key, nonce.subarray(0, 16));
  const out = Buffer.alloc(Math.ceil(length / 64) * 64);
  const input = Buffer.alloc(16);
  Buffer.from(nonce.subarray(16, 24)).copy(input, 0);
  for (let block = 0; block * 64 < length; block++) {
    input.writeUInt32LE(block >>> 0, 8);
    input.writeUInt32LE(Math.floor(block / 2 ** 32), 12);
    const s = _state(sub, input);
    const x = Uint32Array.from(s);
    _rounds(x);
    for (let i = 0; i < 16; i++) out.writeUInt32LE((x[i] + s[i]) >>> 0, block * 64 + 4 * i);
  }
  return out.subarray(0, length);
}

const P1305 = (1n << 130n) - 5n;

function _le(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/** Poly1305 one-time authenticator (RFC 8439 §2.5.1). Inputs here are small (keys), so BigInt is fine. */
export function poly1305(key: Uint8Array, msg: Uint8Array): Buffer {
  const r = _le(key.subarray(0, 16)) & 0x0ffffffc0ffffffc0ffffffc0fffffffn;
  const s = _le(key.subarray(16, 32));
  let acc = 0n;
  for (let i = 0; i < msg.length; i += 16) {
    const block = msg.subarray(i, i + 16);
    acc = ((acc + _le(block) + (1n << BigInt(8 * block.length))) * r) % P1305;
  }
  acc = (acc + s) & ((1n << 128n) - 1n);
  const out = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) out[i] = Number((acc >> BigInt(8 * i)) & 0xffn);
  return out;
}

function _check(key: Uint8Array, nonce: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw new Error(`secretbox: key must be ${KEY_BYTES} bytes`);
  if (nonce.length !== NONCE_BYTES) throw new Error(`secretbox: nonce must be ${NONCE_BYTES} bytes`);
}

/** crypto_secretbox as Go's `secretbox.Seal` lays it out: tag ‖ ciphertext. */
export function seal(plaintext: Uint8Array, nonce: Uint8Array, key: Uint8Array): Buffer {
  _check(key, nonce);
  const stream = _xsalsa20Stream(key, nonce, 32 + plaintext.length);
  const c = Buffer.alloc(plaintext.length);
  for (let i = 0; i < c.length; i++) c[i] = plaintext[i] ^ stream[32 + i];
  return Buffer.concat([poly1305(stream.subarray(0, 32), c), c]);
}

/** Opens a sealed box; undefined when the tag does not match (wrong key or password, or tampered data). */
export function open(box: Uint8Array, nonce: Uint8Array, key: Uint8Array): Buffer | undefined {
  _check(key, nonce);
  if (box.length < TAG_BYTES) return undefined;
  const c = box.subarray(TAG_BYTES);
  const stream = _xsalsa20Stream(key, nonce, 32 + c.length);
  if (!timingSafeEqual(poly1305(stream.subarray(0, 32), c), box.subarray(0, TAG_BYTES))) return undefined;
  const p = Buffer.alloc(c.length);
  for (let i = 0; i < p.length; i++) p[i] = c[i] ^ stream[32 + i];
  return p;
}
