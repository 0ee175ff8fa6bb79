// DSSE envelopes and in-toto statements: what cosign v3 bundles sign, and what berth's provenance will be wrapped in.
// spec: secure-systems-lab/dsse protocol.md (PAE), in-toto/attestation spec/v1/statement.md.
import type { KeyObject } from 'node:crypto';
import { keyId, signBytes, verifyBytes } from './keys.js';

export const INTOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const STATEMENT_V1 = 'https://in-toto.io/Statement/v1';

export interface Envelope {
  payload: string;
  payloadType: string;
  signatures: { keyid?: string; sig: string }[];
}

export interface Statement {
  _type: string;
  subject: { name?: string; digest: Record<string, string> }[];
  predicateType: string;
  predicate: unknown;
}

/** Pre-Authentication Encoding: "DSSEv1" SP len(type) SP type SP len(body) SP body. */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

export function signEnvelope(payload: Buffer, payloadType: string, key: KeyObject): Envelope {
  const sig = signBytes(key, pae(payloadType, payload)).toString('base64');
  return { payload: payload.toString('base64'), payloadType, signatures: [{ sig }] };
}

/** The payload and the key that verified one of its signatures, or an error naming why none did. */
export function openEnvelope(env: Envelope, keys: KeyObject[]): { payload: Buffer; signer?: string; error?: string } {
  if (typeof env?.payload !== 'string' || typeof env.payloadType !== 'string' || !Array.isArray(env.signatures))
    return { payload: Buffer.alloc(0), error: 'not a DSSE envelope' };
  const payload = Buffer.from(env.payload, 'base64');
  const message = pae(env.payloadType, payload);
  for (const s of env.signatures) {
    const key = keys.find((k) => typeof s?.sig === 'string' && verifyBytes(k, message, Buffer.from(s.sig, 'base64')));
    if (key) return { payload, signer: keyId(key) };
  }
  return { payload, error: 'the envelope is not signed by any trusted key' };
}
