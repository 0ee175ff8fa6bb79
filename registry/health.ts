// /healthz (liveness: the process answers) and /readyz (readiness: storage answers within a deadline).
import type { Hono } from 'hono';
import type { Driver } from '../storage/index.js';
import { paths } from '../storage/index.js';
import type { Env } from './context.js';
import type { Metrics } from './metrics.js';

const READY_TIMEOUT_MS = 3_000;

export function healthRoutes(app: Hono<Env>, driver: Driver, metrics?: Metrics): void {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      // One cheap call that needs the storage to answer: a stat of a small, fixed object (usually absent).
      await Promise.race([
        driver.stat(paths.gcState),
        new Promise(
          (_, reject) =>
            (timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS)),
        ),
      ]);
      return c.json({ status: 'ok', storage: driver.name, ms: Date.now() - started });
    } catch (e) {
      return c.json({ status: 'unavailable', storage: driver.name, error: (e as Error).message }, 503);
    } finally {
      clearTimeout(timer);
    }
  });
  if (metrics) {
    app.get('/metrics', async (c) => {
      const { contentType, body } = await metrics.render();
      return c.body(body, 200, { 'Content-Type': contentType });
    });
  }
}
