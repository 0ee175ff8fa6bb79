// A private PKI for TLS tests (openssl): a CA, leaf certificates for 127.0.0.1 or a client, and the berth config
// that serves TLS with them. Shared by tls.test.ts and the transfer tests (certs.d, --ca-file).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { ok, run } from './peers.js';

const openssl = (args: string[], cwd: string) => run('openssl', args, { cwd }).then(ok);

/** A CA (ca.crt/ca.key) in `dir`. */
export async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-subj',
      `/CN=berth test ${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

/** A leaf certificate `name.crt`/`name.key` signed by `ca`, for 127.0.0.1 and localhost (server) or a client. */
export async function makeLeaf(
  dir: string,
  ca: string,
  name: string,
  serial: number,
  usage: 'serverAuth' | 'clientAuth',
  /** More subjectAltNames of a server certificate, e.g. `IP:::1`, `DNS:registry.berth.test`. */
  altNames: string[] = [],
): Promise<void> {
  const san = ['IP:127.0.0.1', 'DNS:localhost', ...altNames].join(',');
  await writeFile(
    join(dir, `${name}.ext`),
    `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\n${usage === 'serverAuth' ? `subjectAltName=${san}\n` : ''}`,
  );
  await openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      usage === 'serverAuth' ? '/CN=127.0.0.1' : `/CN=${name}`,
    ],
    dir,
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.crt`,
      '-CAkey',
      `${ca}.key`,
      '-set_serial',
      String(serial),
      '-days',
      '2',
      '-out',
      `${name}.crt`,
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

export async function pki(t: TestContext): Promise<string> {
  const dir = await mkdtemp('/tmp/berth-tls-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  await makeCa(dir, 'ca');
  await makeCa(dir, 'other-ca');
  await makeLeaf(dir, 'ca', 'server', 1, 'serverAuth');
  return dir;
}

export const tlsConfig = (dir: string, extra = '') =>
  `http:\n  tls:\n    certificate: ${dir}/server.crt\n    key: ${dir}/server.key\n${extra}`;
