// Auth overhead (issue 5, "Speed"): manifest GET by tag at 64 connections (wrk) against `berth serve` with token auth
// on (every request carries a Bearer token, verified once then served from the verified-token cache) and off, same
// build, same image, rounds alternating between the two servers; the median rate of the rounds is reported.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import bcrypt from 'bcryptjs';
import { load, startBerthServer, type Server } from './registry.js';
import { OCI_MANIFEST } from './client.js';
import { median, type Bench, type Row } from './types.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function _push(url: string, auth: Record<string, string>): Promise<void> {
  const layer = Buffer.from('auth bench layer');
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  for (const b of [layer, config]) {
    const res = await fetch(`${url}/v2/bench/small/blobs/uploads/?digest=${sha(b)}`, {
      method: 'POST',
      body: b,
      headers: auth,
    });
    if (res.status !== 201) throw new Error(`blob push: ${res.status} ${await res.text()}`);
  }
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(layer), size: layer.length }],
  });
  const res = await fetch(`${url}/v2/bench/small/manifests/v1`, {
    method: 'PUT',
    body: manifest,
    headers: { ...auth, 'Content-Type': OCI_MANIFEST },
  });
  if (res.status !== 201) throw new Error(`manifest push: ${res.status} ${await res.text()}`);
}

export const authBench: Bench = {
  name: 'auth',
  async run(ctx) {
    const seconds = ctx.quick ? 3 : 10;
    const work = await mkdtemp('/tmp/berth-bench-auth-');
    const servers: Server[] = [];
    try {
      const off = await startBerthServer(work, 'auth off');
      servers.push(off);
      const on = await startBerthServer(work, 'token auth', {
        BERTH_AUTH_MODE: 'token',
        BERTH_AUTH_TOKEN_TTL: '1h',
        BERTH_AUTH_USERS: JSON.stringify([{ name: 'bench', passwordHash: bcrypt.hashSync('bench-pw', 8) }]),
      });
      servers.push(on);
      const basic = `Basic ${Buffer.from('bench:bench-pw').toString('base64')}`;
      const res = await fetch(`${on.url}/token?service=berth&scope=repository:bench/small:pull,push`, {
        headers: { Authorization: basic },
      });
      if (res.status !== 200) throw new Error(`token: ${res.status} ${await res.text()}`);
      const bearer = `Bearer ${(await res.json()).token}`;
      await _push(off.url, {});
      await _push(on.url, { Authorization: bearer });
      const headers = new Map<Server, string[]>([
        [off, [`Accept: ${OCI_MANIFEST}`]],
        [on, [`Accept: ${OCI_MANIFEST}`, `Authorization: ${bearer}`]],
      ]);
      const rates = new Map<Server, number[]>([
        [off, []],
        [on, []],
      ]);
      for (let round = 0; round < ctx.rounds; round++) {
        for (const s of round % 2 ? [on, off] : [off, on]) {
          const url = `${s.url}/v2/bench/small/manifests/v1`;
          if (round === 0) await load(url, { seconds: 1, connections: 64, headers: headers.get(s) });
          const r = await load(url, { seconds, connections: 64, headers: headers.get(s) });
          ctx.log(`  manifest GET ${s.name} round ${round + 1}: ${r.rps.toFixed(0)} req/s, avg latency ${r.latency}`);
          if (r.errors) throw new Error(`${s.name}: ${r.errors} failed requests under load`);
          rates.get(s)!.push(r.rps);
        }
      }
      const rOn = median(rates.get(on)!);
      const rOff = median(rates.get(off)!);
      const overhead = 1 - rOn / rOff;
      const row: Row = {
        name: `manifest GET by tag, 64 connections (wrk ${seconds} s), token auth on vs off, median of ${ctx.rounds}`,
        unit: 'req/s',
        berth: rOn,
        peer: rOff,
        peerName: 'berth, auth off',
        better: 'higher',
        target: '< 15 % overhead',
        met: overhead < 0.15,
        note: `overhead ${(overhead * 100).toFixed(1)} %`,
      };
      return [row];
    } finally {
      for (const s of servers) await s.stop();
      await rm(work, { recursive: true, force: true });
    }
  },
};
