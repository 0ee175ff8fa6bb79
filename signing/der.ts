// The little DER (ITU-T X.690) a self-signed code-signing certificate needs: berth writes one for notation-style
// signatures (`berth key generate --cert`). Parsing certificates is left to node's X509Certificate.
// spec: RFC 5280 §4.1 (TBSCertificate), §4.2.1.3 (keyUsage), §4.2.1.9 (basicConstraints), §4.2.1.12 (extKeyUsage).
import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';

function _len(n: number): Buffer {
  if (n < 0x80) return Buffer.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.of(tag), _len(body.length), body]);
}

export const seq = (...c: Buffer[]) => tlv(0x30, ...c);
export const set = (...c: Buffer[]) => tlv(0x31, ...c);
export const bool = (v: boolean) => tlv(0x01, Buffer.of(v ? 0xff : 0));
export const octets = (b: Buffer) => tlv(0x04, b);
export const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
/** [n] EXPLICIT */
export const explicit = (n: number, c: Buffer) => tlv(0xa0 + n, c);

/** A non-negative INTEGER from big-endian bytes (a leading 0 keeps it positive). */
export function uint(bytes: Buffer): Buffer {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && b[1] < 0x80) b = b.subarray(1);
  if (b[0] & 0x80) b = Buffer.concat([Buffer.of(0), b]);
  return tlv(0x02, b);
}

export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out = [40 * parts[0] + parts[1]];
  for (const p of parts.slice(2)) {
    const chunk = [p & 0x7f];
    for (let v = p >>> 7; v > 0; v >>>= 7) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** BIT STRING with `unused` padding bits in the last byte. */
export function bits(b: Buffer, unused = 0): Buffer {
  return tlv(0x03, Buffer.of(unused), b);
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5). */
export function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14); // YYYYMMDDHHMMSS
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${iso}Z`));
}

const OID = {
  ecdsaSha256: '1.2.840.10045.4.3.2',
  C: '2.5.4.6',
  ST: '2.5.4.8',
  L: '2.5.4.7',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  CN: '2.5.4.3',
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  subjectKeyId: '2.5.29.14',
  codeSigning: '1.3.6.1.5.5.7.3.3',
};

export interface CertificateOptions {
  /** A common name, or a distinguished name `C=US,ST=WA,O=acme,CN=signer` (C, ST, L, O, OU, CN). */
  subject: string;
  /** Validity in days from `notBefore` (default 365). */
  days?: number;
  notBefore?: Date;
}

/**
 * A self-signed X.509 v3 leaf certificate for code signing over an ECDSA P-256 key, shaped as notation requires of
 * a self-signed signing certificate (notation-core-go ValidateCodeSigningCertChain): keyUsage critical and
 * digitalSignature only, basicConstraints CA:false, extKeyUsage codeSigning. Returns DER.
 */
export function selfSignedCertificate(privateKey: KeyObject, publicKey: KeyObject, o: CertificateOptions): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const notBefore = o.notBefore ?? new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
  const notAfter = new Date(notBefore.getTime() + (o.days ?? 365) * 86_400_000);
  const name = seq(
    ...parseSubject(o.subject).map(([type, value]) =>
      // countryName is a PrintableString (RFC 5280 appendix A); the rest UTF8String.
      set(seq(oid(OID[type]), type === 'C' ? tlv(0x13, Buffer.from(value)) : utf8(value))),
    ),
  );
  const alg = seq(oid(OID.ecdsaSha256));
  const serial = randomBytes(16);
  serial[0] &= 0x7f;
  const ext = (id: string, critical: boolean, value: Buffer) =>
    seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
  // The key identifier is the SHA-1 of the public key bits (RFC 5280 §4.2.1.2 method 1), as Go's x509 writes it.
  const keyBits = spki.subarray(spki.length - 65);
  const tbs = seq(
    explicit(0, uint(Buffer.of(2))), // v3
    uint(serial),
    alg,
    name,
    seq(time(notBefore), time(notAfter)),
    name,
    spki,
    explicit(
      3,
      seq(
        ext(OID.keyUsage, true, bits(Buffer.of(0x80), 7)), // digitalSignature
        ext(OID.basicConstraints, true, seq()),
        ext(OID.extKeyUsage, false, seq(oid(OID.codeSigning))),
        ext(OID.subjectKeyId, false, octets(createHash('sha1').update(keyBits).digest())),
      ),
    ),
  );
  const signature = sign('sha256', tbs, privateKey); // DER ECDSA-Sig-Value, as X.509 wants
  return seq(tbs, alg, bits(signature));
}

const RDN_TYPES = ['C', 'ST', 'L', 'O', 'OU', 'CN'] as const;
type RdnType = (typeof RDN_TYPES)[number];

/** `CN` alone, or `C=US,ST=WA,O=acme,CN=signer` → [[type, value]…]; throws naming what is wrong. */
export function parseSubject(subject: string): [RdnType, string][] {
  if (!subject.includes('=')) return subject.trim() ? [['CN', subject.trim()]] : [];
  const out: [RdnType, string][] = [];
  for (const part of subject.split(',')) {
    const m = /^\s*([A-Za-z]+)\s*=\s*(.+?)\s*$/.exec(part);
    const type = m?.[1].toUpperCase() as RdnType;
    if (!m || !RDN_TYPES.includes(type))
      throw new Error(`subject "${subject}": write CN or C=..,ST=..,O=..,CN=.. (attributes ${RDN_TYPES.join(', ')})`);
    if (type === 'C' && !/^[A-Z]{2}$/.test(m[2])) throw new Error(`subject: C must be a two-letter country code`);
    out.push([type, m[2]]);
  }
  return out;
}

export function pem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}
