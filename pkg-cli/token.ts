// `berth token create|list|revoke|prune`: robot tokens for CI (and the refresh tokens `docker login` keeps), kept
// hashed in the registry's storage — run it against the same --config / --root as `berth serve`.
import picomatch from 'picomatch';
import { AuthState, type RobotRecord } from '../registry/auth/index.js';
import type { RobotScope } from '../registry/auth/acl.js';
import { parseDuration } from '../spec/units.js';
import { CLIError, defineCommand, EXIT, flag, suggest, UsageError } from './command.js';
import { cliAudit, existingStorageConfig, makeDriver } from './_storage.js';
import { cliActor } from '../registry/index.js';
import { json, STORAGE } from './flags.js';
import { AuthStore } from '../storage/index.js';

function _duration(value: string, flag: string): number {
  try {
    return parseDuration(value);
  } catch {
    throw new UsageError(`${flag} "${value}": not a duration; write e.g. 12h or 30d`);
  }
}

function _scopes(repositories: string[] | undefined, actions: string | undefined): RobotScope[] {
  const list = (actions ?? 'pull')
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  for (const a of list)
    if (!['pull', 'push', 'delete'].includes(a))
      throw new UsageError(`--actions: unknown action "${a}"; use pull, push, delete`);
  const repos = repositories?.length ? repositories : ['**'];
  for (const r of repos) {
    if (!/^[a-z0-9*?._/{},-]+$/.test(r))
      throw new UsageError(`--repository: "${r}" is not a repository pattern (lowercase names, * and ** globs)`);
    picomatch(r); // throws on a broken glob
  }
  return [{ repositories: repos, actions: list as RobotScope['actions'] }];
}

function _row(r: RobotRecord): string {
  const scopes = r.scopes.map((s) => `${s.repositories.join(',')}:${s.actions.join(',')}`).join(' ');
  const expired = Date.parse(r.expiresAt) <= Date.now() ? ' (expired)' : '';
  return `${r.id}  robot:${r.name}  ${scopes}  expires ${r.expiresAt}${expired}`;
}

const VERBS = ['create', 'list', 'revoke', 'prune'] as const;

export default defineCommand({
  usage: [
    'create NAME [--repository PATTERN]… [--actions pull,push,delete] [--expires DURATION] [--description TEXT]',
    'list [--refresh] [--json]',
    'revoke ID|NAME',
    'prune',
    '    (each with [--config FILE] [--root DIR], the same storage as `berth serve`)',
  ],
  description: `Robot tokens let CI log in without a person's password: \`docker login -u NAME -p <token>\`. A robot may do what
the ACL allows for subject robot:NAME, and never more than its own --repository/--actions limits. The token is
printed once; only its SHA-256 is stored. Revoking takes effect at the next token request (access tokens live
auth.token.ttl, 5 minutes by default).`,
  flags: {
    ...STORAGE,
    repository: flag.list({
      short: 'r',
      arg: 'GLOB',
      help: 'repositories the robot may touch, e.g. "team-a/**" (default: all)',
    }),
    actions: flag.string({ short: 'a', arg: 'LIST', help: 'pull, push, delete (default: pull)' }),
    expires: flag.string({
      short: 'e',
      arg: 'DURATION',
      help: 'lifetime, e.g. 90d (default auth.robots.defaultTtl or 90d; at most auth.robots.maxTtl)',
    }),
    description: flag.string({ arg: 'TEXT', help: 'a note shown by token list' }),
    refresh: flag.boolean({ help: 'list refresh tokens (from docker login) instead of robots' }),
    json,
  },
  verbs: VERBS,
  examples: [
    "berth token create ci-team-a -r 'team-a/**' -a pull,push -e 30d --root /var/lib/berth",
    'berth token list -c berth.yaml',
    'berth token revoke ci-team-a -c berth.yaml',
  ],
  async run({ flags: values, args: positionals }) {
    const [verb, arg, extra] = positionals;
    if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"; see \`berth token --help\``);
    if (!VERBS.includes(verb as (typeof VERBS)[number])) {
      const guess = verb ? suggest(verb, [...VERBS]) : [];
      throw new UsageError(
        `token: expected create, list, revoke or prune${verb ? `, not "${verb}"` : ''}${guess.length ? ` (did you mean ${guess.join(' or ')}?)` : ''}; see \`berth token --help\``,
      );
    }
    const config = existingStorageConfig('token', values);
    const state = new AuthState(new AuthStore(await makeDriver(config, { cleanTemp: false, create: false })));
    // Robots created and revoked here are audited like the server's events (config audit), by the OS user.
    const audit = cliAudit(config.audit);
    try {
      return await _verb();
    } finally {
      await audit?.close();
    }
    async function _verb(): Promise<number> {
      switch (verb) {
        case 'create': {
          if (!arg || !/^[a-z0-9][a-z0-9._-]{0,63}$/.test(arg))
            throw new UsageError(
              'berth token create NAME: NAME is lowercase letters, digits, . _ - (at most 64), e.g. ci-team-a',
            );
          const ttl = _duration(values.expires ?? config.auth.robots?.defaultTtl ?? '90d', '--expires');
          const max = config.auth.robots?.maxTtl;
          if (max && ttl > _duration(max, 'auth.robots.maxTtl'))
            throw new CLIError(`--expires: longer than auth.robots.maxTtl (${max})`);
          if (ttl <= 0) throw new UsageError('--expires: must be positive');
          const { record, token } = await state.createRobot({
            name: arg,
            scopes: _scopes(values.repository, values.actions),
            expiresAt: new Date(Date.now() + ttl),
            description: values.description,
          });
          audit?.record({
            event: 'robot.created',
            outcome: 'success',
            actor: cliActor(),
            id: record.id,
            name: `robot:${record.name}`,
            scopes: record.scopes.map((x) => `${x.repositories.join(',')}:${x.actions.join(',')}`),
            expiresAt: record.expiresAt,
          });
          if (values.json) console.log(JSON.stringify({ ...record, hash: undefined, username: arg, token }));
          else {
            console.log(_row(record));
            console.log(`username: ${arg}`);
            console.log(`token:    ${token}`);
            console.error('(shown once; store it as a CI secret)');
          }
          return 0;
        }
        case 'list': {
          if (arg !== undefined) throw new UsageError(`unexpected argument "${arg}"; see \`berth token --help\``);
          if (values.refresh) {
            const list = await state.listRefresh();
            if (values.json) console.log(JSON.stringify(list));
            else
              for (const r of list)
                console.log(
                  `${r.id}  ${r.kind}:${r.name}  ${r.clientId ?? '-'}  created ${r.createdAt}  expires ${r.expiresAt}`,
                );
            return 0;
          }
          const list = await state.listRobots();
          if (values.json) console.log(JSON.stringify(list.map((r) => ({ ...r, hash: undefined }))));
          else for (const r of list) console.log(_row(r));
          return 0;
        }
        case 'revoke': {
          if (!arg)
            throw new UsageError(
              'berth token revoke ID|NAME: give a robot id or name, or a refresh-token id (berth token list [--refresh])',
            );
          const removed = await state.revoke(arg);
          if (!removed.length)
            throw new CLIError(`no robot or refresh token "${arg}"; see \`berth token list\``, EXIT.notFound);
          for (const r of removed)
            audit?.record({
              event: r.startsWith('robot ') ? 'robot.revoked' : 'token.revoked',
              outcome: 'success',
              actor: cliActor(),
              name: r,
            });
          for (const r of removed) console.log(`revoked ${r}`);
          return 0;
        }
        case 'prune': {
          console.log(`removed ${await state.prune()} expired tokens`);
          return 0;
        }
        default:
          throw new UsageError(
            `token: expected create, list, revoke or prune${verb ? `, not "${verb}"` : ''}; see \`berth token --help\``,
          );
      }
    }
  },
});
