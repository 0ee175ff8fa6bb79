// TLS for `berth serve` (config `http.tls`): the PEM files are read at start, and watched afterwards so a
// certificate that cert-manager or an ACME client rotates on disk is served to the next connection without a
// restart; open connections keep the context they were accepted with. A broken new pair (half written, a key that
// does not match) is logged and the old one kept — the next change of either file tries again.
import { readFileSync, watchFile, unwatchFile } from 'node:fs';
import { createSecureContext, type SecureContextOptions, type Server as TlsServer } from 'node:tls';
import type { TlsConfig } from './config.js';
import type { Logger } from './log.js';

/** How often the files are stat'ed: fs.watchFile follows symlinks, so Kubernetes' `..data` swaps are seen too. */
const POLL_MS = 1000;
/** A rotation writes the certificate and the key one after the other; wait for both before reading. */
const DEBOUNCE_MS = 300;

export class TlsConfigError extends Error {}

/** Reads and checks the files (a key that does not match the certificate is an error here, not at handshake). */
export function loadTls(tls: TlsConfig): SecureContextOptions {
  const read = (what: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new TlsConfigError(
        `http.tls.${what}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  };
  const options: SecureContextOptions = {
    cert: read('certificate', tls.certificate),
    key: read('key', tls.key),
    minVersion: tls.minVersion ?? 'TLSv1.2',
    ...(tls.clientCAs ? { ca: read('clientCAs', tls.clientCAs) } : {}),
  };
  try {
    createSecureContext(options);
  } catch (e) {
    throw new TlsConfigError(
      `http.tls: ${tls.certificate} and ${tls.key} are not a usable certificate and key: ${(e as Error).message}`,
    );
  }
  return options;
}

/** Watches the files and swaps the server's context when they change; returns the function that stops watching. */
export function watchTls(server: TlsServer, tls: TlsConfig, log?: Logger): () => void {
  const files = [tls.certificate, tls.key, ...(tls.clientCAs ? [tls.clientCAs] : [])];
  let timer: NodeJS.Timeout | undefined;
  const reload = () => {
    timer = undefined;
    try {
      server.setSecureContext(loadTls(tls));
      log?.info('TLS certificate reloaded', { certificate: tls.certificate });
    } catch (e) {
      log?.error('TLS certificate change ignored; still serving the previous one', { err: (e as Error).message });
    }
  };
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(reload, DEBOUNCE_MS);
    timer.unref();
  };
  for (const f of files) watchFile(f, { interval: POLL_MS, persistent: false }, changed);
  return () => {
    clearTimeout(timer);
    for (const f of files) unwatchFile(f, changed);
  };
}
