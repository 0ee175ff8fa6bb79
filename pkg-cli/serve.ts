// `berth serve`: run the registry. Picks the storage driver from the config and wires everything explicitly.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { createRegistry, listen, parseDuration, createLogger } from '../registry/index.js';
import { parseAddr } from '../registry/server.js';
import { loadTls, TlsConfigError } from '../registry/tls.js';
import { CLIError, defineCommand, flag } from './command.js';
import { makeDriver, storageConfig } from './_storage.js';
import { STORAGE } from './flags.js';
import { banner } from './_banner.js';

export default defineCommand({
  usage: '[--config FILE] [--addr HOST:PORT] [--root DIR]',
  description: 'Runs the OCI registry. Defaults: listen on :5000, filesystem storage under ./data.',
  flags: {
    ...STORAGE,
    addr: flag.string({
      arg: 'ADDR',
      help: 'listen address, e.g. :5000, 127.0.0.1:5000, [::1]:5000 (http.addr)',
    }),
    'log-format': flag.choice(['auto', 'json', 'pretty'] as const, {
      help: 'auto (readable on a terminal, JSON lines otherwise), json or pretty (log.format)',
    }),
  },
  args: [],
  examples: [
    'berth serve',
    'berth serve --addr 127.0.0.1:5001 --root /var/lib/berth',
    'berth serve -c berth.yaml --log-format json       (check a file first: berth config check -c berth.yaml)',
    'BERTH_STORAGE_DELETE=false berth serve -c berth.yaml',
  ],
  async run({ flags: values }) {
    const config = storageConfig(values, {
      ...(values.addr ? { http: { addr: values.addr } } : {}),
      ...(values['log-format'] ? { log: { format: values['log-format'] } } : {}),
    });
    // The listen address is checked before anything is created on disk: a typo must not leave a ./data behind.
    await _checkAddr(config.http.addr, values.addr ? '--addr' : 'http.addr');
    const pretty = config.log.format === 'pretty' || (config.log.format === 'auto' && !!process.stderr.isTTY);
    const log = createLogger(config.log.level, config.log.requests, undefined, {
      pretty,
      color: !!process.stderr.isTTY && !process.env.NO_COLOR,
    });
    // Whatever one request does must not take the registry down (issue 14): an error that escaped every handler is
    // logged with its stack and the server keeps serving. Request errors are handled where they happen; this is
    // the net under that, and a line here is a bug to fix.
    process.on('uncaughtException', (e) =>
      log.error('uncaught exception; the server keeps running', { err: String(e), stack: e.stack }),
    );
    process.on('unhandledRejection', (e) =>
      log.error('unhandled rejection; the server keeps running', { err: String(e), stack: (e as Error)?.stack }),
    );
    // Unreadable or mismatched TLS files are the operator's to fix, named before anything else starts.
    if (config.http.tls) {
      try {
        loadTls(config.http.tls);
      } catch (e) {
        if (e instanceof TlsConfigError) throw new CLIError(e.message);
        throw e;
      }
    }
    const driver = await makeDriver(config);
    let registry: ReturnType<typeof createRegistry>;
    try {
      registry = createRegistry(config, driver, log);
    } catch (e) {
      // An audit file that can't be opened is the operator's to fix, like a TLS file.
      if (/^audit\./.test((e as Error).message)) throw new CLIError((e as Error).message);
      throw e;
    }
    if (config.auth.mode === 'none')
      log.warn('auth.mode is "none": anyone who can reach this port can push and delete');
    let server;
    try {
      server = await listen(registry.app, config.http.addr, log, registry.metrics?.onRequest, config.http);
    } catch (e) {
      throw new CLIError(
        `cannot listen on ${config.http.addr}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; pick another --addr`,
      );
    }
    log.info('berth registry listening', { addr: config.http.addr, url: server.url, storage: driver.name });
    // http.debug: metrics and health on their own plain-HTTP listener (distribution's http.debug), for a port that
    // only the cluster's monitoring reaches; /metrics is then no longer served on the registry port.
    let debug: Awaited<ReturnType<typeof listen>> | undefined;
    if (registry.debugApp && config.http.debug) {
      try {
        debug = await listen(registry.debugApp, config.http.debug.addr, undefined, undefined, {});
      } catch (e) {
        await server.close(0);
        throw new CLIError(
          `cannot listen on ${config.http.debug.addr} (http.debug.addr): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; pick another address`,
        );
      }
      log.info('berth debug listener (metrics, health)', { addr: config.http.debug.addr, url: debug.url });
    }
    if (pretty) process.stderr.write(banner(config, server.port, values.config));

    registry.start();

    await new Promise<void>((resolveStop) => {
      const stop = (signal: string) => {
        log.info('shutting down', { signal });
        registry.stop();
        Promise.all([server.close(parseDuration(config.http.shutdownTimeout)), debug?.close(1000)]).then(async () => {
          await registry.audit?.close();
          await driver.close?.();
          resolveStop();
        });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    return 0;
  },
});

async function _checkAddr(addr: string, source: string): Promise<void> {
  let host: string | undefined;
  try {
    host = parseAddr(addr).host;
  } catch (e) {
    throw new CLIError(`${source}: ${(e as Error).message}`);
  }
  if (host && !isIP(host) && host !== 'localhost')
    await lookup(host).catch((e: NodeJS.ErrnoException) => {
      throw new CLIError(
        `${source}: cannot resolve "${host}" (${e.code ?? e.message}); use an IP address, localhost or :PORT`,
      );
    });
}
