// The few lines `berth serve` prints for a person on a terminal, before the log lines.
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import type { Config } from '../registry/index.js';
import { parseAddr } from '../registry/server.js';

/** What a person starting berth on a terminal needs: where to point clients, where the data goes, who may push. */
export function banner(config: Config, port: number, file: string | undefined): string {
  const { host } = parseAddr(config.http.addr);
  const scheme = config.http.tls ? 'https' : 'http';
  const wildcard = !host || host === '0.0.0.0' || host === '::' || host === '[::]';
  // 0.0.0.0 and :: are where berth listens, not addresses a client can use: show one that works from here.
  const shown = wildcard ? 'localhost' : isIP(host) === 6 ? `[${host}]` : host;
  const url = `${scheme}://${shown}:${port}`;
  const s3 = config.storage.s3;
  const storage = s3
    ? `s3://${s3.bucket}/${s3.prefix ?? ''}${s3.endpoint ? ` at ${s3.endpoint}` : ''}`
    : `${resolve(config.storage.filesystem!.root)} (filesystem)`;
  const auth = {
    none: 'none: anyone who can reach this port can push and delete (set auth.mode: htpasswd or token)',
    htpasswd: `htpasswd (${config.auth.htpasswd?.path ?? 'auth.users'})`,
    token: `token (realm ${config.auth.token.realm})`,
  }[config.auth.mode];
  const rows = [
    ['listening', `${url}  (bound to ${wildcard ? `all interfaces, port ${port}` : `${shown}:${port}`})`],
    ...(config.http.publicUrl ? [['public URL', config.http.publicUrl]] : []),
    ['storage', storage],
    ['auth', auth],
    ['config', file ? resolve(file) : 'built-in defaults (`berth config defaults` lists every key)'],
    ['logs', 'here (stderr), readable; JSON lines with --log-format json or when not on a terminal'],
  ];
  const hostPort = `${shown}:${port}`;
  return [
    '',
    'berth registry is running',
    ...rows.map(([k, v]) => `  ${k.padEnd(11)} ${v}`),
    '',
    `  try: docker tag alpine ${hostPort}/alpine && docker push ${hostPort}/alpine`,
    '',
    '',
  ].join('\n');
}
