// `berth serve`: run the registry. Picks the storage driver from the config and wires everything explicitly.
import {
  createRegistry,
  listen,
  parseDuration,
  createLogger,
  runPrimary,
  workerCount,
  workerLink,
  type Config,
  type Logger,
} from '../registry/index.js';
import { createAuth, limiterOptions } from '../registry/auth/index.js';
import { createStore } from '../storage/index.js';
import { loadTls, TlsConfigError } from '../registry/tls.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { makeDriver, storageConfig } from './_storage.js';

const HELP = `Usage: berth serve [--config FILE] [--addr HOST:PORT] [--root DIR]

Runs the OCI registry. Defaults: listen on :5000, filesystem storage under ./data, one worker process per
available core sharing the port (http.workers; BERTH_HTTP_WORKERS=1 runs a single process).

Flags:
  -c, --config FILE   YAML configuration (see README "Configuration"); BERTH_* variables override its keys
      --addr ADDR     listen address, e.g. :5000, 127.0.0.1:5000, [::1]:5000   (http.addr)
      --root DIR      filesystem storage root                                  (storage.filesystem.root)

Examples:
  berth serve
  berth serve --addr 127.0.0.1:5001 --root /var/lib/berth
  BERTH_STORAGE_DELETE=false berth serve -c berth.yaml`;

const command: Command = {
  name: 'serve',
  summary: 'run the registry (filesystem under ./data by default)',
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseFlags('serve', argv, {
      config: { type: 'string', short: 'c' },
      addr: { type: 'string' },
      root: { type: 'string' },
    });
    if (positionals.length) throw new CLIError(`unexpected argument "${positionals[0]}"; see \`berth serve --help\``);
    const config = storageConfig(values, values.addr ? { http: { addr: values.addr } } : {});
    // A cluster worker is this same command, forked by the primary (registry/cluster.ts).
    const link = workerLink();
    const workers = workerCount(config.http.workers);
    const log = createLogger(
      config.log.level,
      config.log.requests,
      undefined,
      link ? { worker: link.slot } : undefined,
    );
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
    if (!link && workers > 1) return _primary(config, log, workers);
    // Leftover temp files are swept once, by the primary (or the only process): a restarted worker must not delete
    // the ones its siblings are writing.
    const driver = await makeDriver(config, { cleanTemp: !link });
    const scheduler = !link || link.slot === 0;
    const registry = createRegistry(
      config,
      driver,
      log,
      {},
      link ? { scheduler, limiter: link.limiter, fills: link.fills, renderMetrics: link.renderMetrics } : { scheduler },
    );
    if (link && registry.metrics) link.shareMetrics(registry.metrics.registry);
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
    link?.ready();
    log.info('berth registry listening', { addr: config.http.addr, url: server.url, storage: driver.name });

    // The background jobs (upload purge, GC, retention) run once per server: in the only process, or in cluster
    // worker slot 0.
    if (scheduler) registry.start();

    await new Promise<void>((resolveStop) => {
      let stopping = false;
      const stop = (signal: string) => {
        // Ctrl-C reaches a cluster worker twice (from the terminal and from the primary).
        if (stopping) return;
        stopping = true;
        log.info('shutting down', { signal });
        registry.stop();
        server.close(parseDuration(config.http.shutdownTimeout)).then(async () => {
          await driver.close?.();
          link?.close();
          resolveStop();
        });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    return 0;
  },
};
/**
 * The cluster's primary: checks what every worker would fail on (token keys are created here, once, so workers
 * starting together never sign with different keys; leftover temp files are swept here), then runs the workers.
 */
async function _primary(config: Config, log: Logger, workers: number): Promise<number> {
  const driver = await makeDriver(config);
  try {
    const auth = createAuth(config.auth, createStore(driver).auth, { warn: () => {} });
    await auth?.ready;
  } catch (e) {
    throw new CLIError(`auth: ${(e as Error).message}`);
  } finally {
    await driver.close?.();
  }
  log.info('berth primary starting workers', { workers, addr: config.http.addr });
  const code = await runPrimary({
    workers,
    log,
    shutdownTimeoutMs: parseDuration(config.http.shutdownTimeout),
    limiter: limiterOptions(config.auth.rateLimit),
  });
  log.info('berth stopped', { code });
  return code;
}

export default command;
