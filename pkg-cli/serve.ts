// `berth serve`: run the registry. Picks the storage driver from the config and wires everything explicitly.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
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
import { parseAddr } from '../registry/server.js';
import { loadTls, TlsConfigError } from '../registry/tls.js';
import { CLIError, defineCommand, flag } from './command.js';
import { makeDriver, storageConfig } from './_storage.js';
import { STORAGE } from './flags.js';
import { banner } from './_banner.js';

export default defineCommand({
  usage: '[--config FILE] [--addr HOST:PORT] [--root DIR]',
  description: `Runs the OCI registry. Defaults: listen on :5000, filesystem storage under ./data, one worker process per
available core sharing the port (http.workers; BERTH_HTTP_WORKERS=1 runs a single process).`,
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
    // A cluster worker is this same command, forked by the primary (registry/cluster.ts).
    const link = workerLink();
    const workers = workerCount(config.http.workers);
    const pretty = config.log.format === 'pretty' || (config.log.format === 'auto' && !!process.stderr.isTTY);
    const log = createLogger(config.log.level, config.log.requests, undefined, {
      pretty,
      color: !!process.stderr.isTTY && !process.env.NO_COLOR,
      fields: link ? { worker: link.slot } : undefined,
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
    if (!link && workers > 1) return _primary(config, log, workers);
    // Leftover temp files are swept once, by the primary (or the only process): a restarted worker must not delete
    // the ones its siblings are writing.
    const driver = await makeDriver(config, { cleanTemp: !link });
    const scheduler = !link || link.slot === 0;
    let registry: ReturnType<typeof createRegistry>;
    try {
      registry = createRegistry(
        config,
        driver,
        log,
        {},
        link
          ? {
              scheduler,
              limiter: link.limiter,
              fills: link.fills,
              renderMetrics: link.renderMetrics,
              changes: link.changes,
            }
          : { scheduler },
      );
    } catch (e) {
      // An audit file that can't be opened is the operator's to fix, like a TLS file.
      if (/^audit\./.test((e as Error).message)) throw new CLIError((e as Error).message);
      throw e;
    }
    if (link && registry.metrics) link.shareMetrics(registry.metrics.registry);
    if (config.auth.mode === 'none' && !link?.slot)
      log.warn('auth.mode is "none": anyone who can reach this port can push and delete');
    let server;
    try {
      server = await listen(
        registry.app,
        config.http.addr,
        log,
        registry.metrics?.onRequest,
        config.http,
        link?.affinity,
      );
    } catch (e) {
      throw new CLIError(
        `cannot listen on ${config.http.addr}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; pick another --addr`,
      );
    }
    link?.ready();
    // The URL clients use: http.publicUrl when the operator named one (the listener's own address is then only
    // where it is bound, e.g. [::1] for ":5443", which is not what to type into docker login).
    log.info('berth registry listening', {
      addr: config.http.addr,
      url: config.http.publicUrl ?? server.url,
      storage: driver.name,
    });
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
    // The banner once per server, when the port answers: the only process, or cluster worker slot 0 (workers write
    // to the primary's terminal).
    if (pretty && !link?.slot) process.stderr.write(banner(config, server.port, values.config));

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
        Promise.all([server.close(parseDuration(config.http.shutdownTimeout)), debug?.close(1000)]).then(async () => {
          await registry.audit?.close();
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
