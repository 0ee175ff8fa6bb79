// The audit log (config `audit`): who did what, one JSON object per line, separate from the request logs (which say
// how the server did). One schema for every event, documented in README "Audit log":
//   { time, event, outcome, actor?, address?, requestId?, …event fields }
// Events are built here from named fields only — never a header, a body or a credential — so no password, token
// or secret can reach the file (test/audit.test.ts greps for them). Writes are asynchronous and appended; a file is
// opened at start (an unwritable path is a start-up error) with mode 0600.
import { closeSync, openSync, createWriteStream, type WriteStream } from 'node:fs';
import type { MiddlewareHandler } from 'hono';
import { isDigest } from '../spec/index.js';
import { clientOf, type Env } from './context.js';
import { requiredAccess, formatScope } from './auth/scope.js';

export interface AuditConfig {
  enabled?: boolean;
  /** `stdout`, `stderr`, or a file path (appended). Default stdout. */
  output?: string;
}

export type AuditEventName =
  | 'login'
  | 'token.issued'
  | 'token.refreshed'
  | 'token.revoked'
  | 'robot.created'
  | 'robot.revoked'
  | 'push'
  | 'pull'
  | 'delete'
  | 'access.denied'
  | 'signature.policy'
  | 'gc.delete'
  | 'retention.delete';

export interface AuditEvent {
  event: AuditEventName;
  outcome: 'success' | 'failure' | 'denied' | 'throttled';
  /** The subject: `alice`, `robot:ci`, `oidc:github:org/repo@ref`, `anonymous`; `cli:<os user>` for CLI commands. */
  actor?: string;
  /** The client's IP (through trusted proxies: http.trustedProxies). */
  address?: string;
  requestId?: string;
  /** Login: the account name tried (failed logins have no subject). */
  account?: string;
  /** Login: password, robot (robot token) or oidc (CI ID token). */
  method?: string;
  repository?: string;
  /** push/pull/delete: manifest or blob. */
  object?: 'manifest' | 'blob';
  digest?: string;
  tag?: string;
  mediaType?: string;
  /** push: the manifest a referrer (signature, SBOM, attestation) points to, from its `subject` field. */
  subject?: string;
  /** Tokens: the scopes granted; denials: the scope needed. */
  scopes?: string[];
  /** token.issued: whether a refresh token came with it. */
  refreshToken?: boolean;
  clientId?: string;
  /** Robots and refresh tokens: the record id (never the token). */
  id?: string;
  name?: string;
  expiresAt?: string;
  /** Denials and failures: the error code and message shown to the client. */
  code?: string;
  reason?: string;
  /** gc.delete: the item kind (blob, manifest, upload, …) and which. */
  kind?: string;
  item?: string;
  bytes?: number;
  dryRun?: boolean;
}

export interface Audit {
  record(e: AuditEvent): void;
  /** Flushes and closes the file. */
  close(): Promise<void>;
}

const FIELDS: Array<keyof AuditEvent> = [
  'event',
  'outcome',
  'actor',
  'address',
  'requestId',
  'account',
  'method',
  'repository',
  'object',
  'digest',
  'tag',
  'mediaType',
  'subject',
  'scopes',
  'refreshToken',
  'clientId',
  'id',
  'name',
  'expiresAt',
  'code',
  'reason',
  'kind',
  'item',
  'bytes',
  'dryRun',
];

/** The audit log of `config.audit`, or undefined when it is off. Throws when the file can't be opened. */
export function createAudit(config: AuditConfig | undefined, write?: (line: string) => void): Audit | undefined {
  if (!config?.enabled) return undefined;
  const output = config.output ?? 'stdout';
  let stream: WriteStream | NodeJS.WriteStream | undefined;
  if (!write) {
    if (output === 'stdout') stream = process.stdout;
    else if (output === 'stderr') stream = process.stderr;
    else {
      try {
        closeSync(openSync(output, 'a', 0o600));
      } catch (e) {
        throw new Error(
          `audit.output: cannot open ${output} for appending: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
      stream = createWriteStream(output, { flags: 'a', mode: 0o600 });
    }
    write = (line) => stream!.write(line);
  }
  return {
    record(e) {
      const line: Record<string, unknown> = { time: new Date().toISOString() };
      for (const k of FIELDS) {
        const v = e[k];
        if (v === undefined || v === null || v === '') continue;
        line[k] = typeof v === 'string' ? v.slice(0, 512) : v;
      }
      write!(`${JSON.stringify(line)}\n`);
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (!stream || stream === process.stdout || stream === process.stderr) return resolve();
        (stream as WriteStream).end(() => resolve());
      }),
  };
}

/**
 * The /v2 middleware (first after the target is parsed, so it sees what auth refuses): push, pull and delete that
 * succeeded, and every denial — 403 (ACL in htpasswd mode, immutable tags, quotas) and 401 insufficient_scope (a
 * token without the right). Manifest pulls only (a blob GET per layer would drown the log); blob deletes too.
 */
export function auditMiddleware(audit: Audit): MiddlewareHandler<Env> {
  return async (c, next) => {
    await next();
    const { route, name, reference } = c.var.target;
    const status = c.res.status;
    const method = c.req.method;
    const base = {
      actor: c.var.subject ?? 'anonymous',
      address: clientOf(c).address,
      requestId: c.env?.outgoing?.getHeader?.('x-request-id')?.toString(),
    };
    const challenge = c.res.headers.get('www-authenticate') ?? '';
    if (status === 403 || (status === 401 && challenge.includes('error="insufficient_scope"'))) {
      const need = requiredAccess(c.var.target, method);
      const error = (c.error as { code?: string; message?: string } | undefined) ?? {};
      audit.record({
        event: 'access.denied',
        outcome: 'denied',
        ...base,
        repository: name,
        scopes: need ? [formatScope(need)] : undefined,
        code: status === 401 ? 'insufficient_scope' : (error.code ?? 'DENIED'),
        reason: error.message,
      });
      return;
    }
    if (!name || !reference) return;
    const object = route === 'manifest' ? 'manifest' : route === 'blob' ? 'blob' : undefined;
    const tag = route === 'manifest' && !isDigest(reference) ? reference : undefined;
    const digest = c.res.headers.get('docker-content-digest') ?? (isDigest(reference) ? reference : undefined);
    const what = { ...base, outcome: 'success' as const, repository: name, tag, digest: digest ?? undefined };
    if (route === 'manifest' && method === 'PUT' && status === 201) {
      const tags = tag ? [tag] : (c.req.queries('tag') ?? []);
      const mediaType = c.req.header('content-type');
      const subject = c.res.headers.get('oci-subject') ?? undefined;
      if (tags.length)
        for (const t of tags) audit.record({ event: 'push', object, ...what, tag: t, mediaType, subject });
      else audit.record({ event: 'push', object, ...what, mediaType, subject });
    } else if (route === 'manifest' && method === 'GET' && status === 200) {
      audit.record({ event: 'pull', object, ...what, mediaType: c.res.headers.get('content-type') ?? undefined });
    } else if (object && method === 'DELETE' && status === 202) {
      audit.record({ event: 'delete', object, ...what });
    }
  };
}

/** `cli:<os user>`: the actor of CLI commands that change the registry's state directly (berth token, berth gc). */
export function cliActor(): string {
  return `cli:${(process.env.SUDO_USER || process.env.USER || process.env.LOGNAME || 'unknown').slice(0, 64)}`;
}
