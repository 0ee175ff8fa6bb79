// `berth token create|list|revoke|prune`: robot tokens for CI (and the refresh tokens `docker login` keeps), kept
// hashed in the registry's storage — run it against the same --config / --root as `berth serve`.
import picomatch from 'picomatch';
import { cliActor, parseDuration, type Audit } from '../registry/index.js';
import { AuthState, type RobotRecord } from '../registry/auth/index.js';
import type { RobotScope } from '../registry/auth/acl.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { cliAudit, makeDriver, storageConfig } from './_storage.js';
import { AuthStore } from '../storage/index.js';

const HELP = `Usage:
  berth token create NAME [--repository PATTERN]… [--actions pull,push,delete] [--expires DURATION] [--description TEXT]
  berth token list [--refresh] [--json]
  berth token revoke ID|NAME
  berth token prune
      (each with [--config FILE] [--root DIR], the same storage as \`berth serve\`)

Robot tokens let CI log in without a person's password: \`docker login -u NAME -p <token>\`. A robot may do what
the ACL allows for subject robot:NAME, and never more than its own --repository/--actions limits. The token is
printed once; only its SHA-256 is stored. Revoking takes effect at the next token request (access tokens live
auth.token.ttl, 5 minutes by default).

Flags:
  -c, --config FILE        the registry's YAML configuration (storage, auth.robots)
      --root DIR           filesystem storage root (storage.filesystem.root)
  -r, --repository GLOB    repositories the robot may touch, e.g. "team-a/**" (repeatable; default: all)
  -a, --actions LIST       pull, push, delete (default: pull)
  -e, --expires DURATION   lifetime, e.g. 90d (default auth.robots.defaultTtl or 90d; at most auth.robots.maxTtl)
      --refresh            list refresh tokens (from docker login) instead of robots
      --json               machine-readable output

Examples:
  berth token create ci-team-a -r 'team-a/**' -a pull,push -e 30d --root /var/lib/berth
  berth token list -c berth.yaml
  berth token revoke ci-team-a -c berth.yaml`;

function _duration(value: string, flag: string): number {
  try {
    return parseDuration(value);
  } catch {
    throw new CLIError(`${flag}: invalid duration "${value}"; use e.g. 12h, 30d`);
  }
}

function _scopes(repositories: string[] | undefined, actions: string | undefined): RobotScope[] {
  const list = (actions ?? 'pull')
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  for (const a of list)
    if (!['pull', 'push', 'delete'].includes(a))
      throw new CLIError(`--actions: unknown action "${a}"; use pull, push, delete`);
  const repos = repositories?.length ? repositories : ['**'];
  for (const r of repos) {
    if (!/^[a-z0-9*?._/{},-]+$/.test(r))
      throw new CLIError(`--repository: "${r}" is not a repository pattern (lowercase names, * and ** globs)`);
    picomatch(r); // throws on a broken glob
  }
  return [{ repositories: repos, actions: list as RobotScope['actions'] }];
}

function _row(r: RobotRecord): string {
  const scopes = r.scopes.map((s) => `${s.repositories.join(',')}:${s.actions.join(',')}`).join(' ');
  const expired = Date.parse(r.expiresAt) <= Date.now() ? ' (expired)' : '';
  return `${r.id}  robot:${r.name}  ${scopes}  expires ${r.expiresAt}${expired}`;
}

const command: Command = {
  name: 'token',
  summary: 'create, list and revoke robot tokens for CI (stored hashed in the registry storage)',
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseFlags('token', argv, {
      config: { type: 'string', short: 'c' },
      root: { type: 'string' },
      repository: { type: 'string', short: 'r', multiple: true },
      actions: { type: 'string', short: 'a' },
      expires: { type: 'string', short: 'e' },
      description: { type: 'string' },
      refresh: { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const [verb, arg, extra] = positionals;
    if (extra !== undefined) throw new CLIError(`unexpected argument "${extra}"; see \`berth token --help\``);
    const config = storageConfig(values);
    const state = new AuthState(new AuthStore(await makeDriver(config, { cleanTemp: false })));
    // Robots created and revoked here are audited like the server's events (config audit), by the OS user.
    const audit = cliAudit(config.audit);
    try {
      return await _run(state, audit, config, values, verb, arg);
    } finally {
      await audit?.close();
    }
  },
};

async function _run(
  state: AuthState,
  audit: Audit | undefined,
  config: ReturnType<typeof storageConfig>,
  values: {
    repository?: string[];
    actions?: string;
    expires?: string;
    description?: string;
    refresh?: boolean;
    json?: boolean;
  },
  verb: string | undefined,
  arg: string | undefined,
): Promise<number> {
  switch (verb) {
    case 'create': {
      if (!arg || !/^[a-z0-9][a-z0-9._-]{0,63}$/.test(arg))
        throw new CLIError(
          'berth token create NAME: NAME is lowercase letters, digits, . _ - (at most 64), e.g. ci-team-a',
        );
      const ttl = _duration(values.expires ?? config.auth.robots?.defaultTtl ?? '90d', '--expires');
      const max = config.auth.robots?.maxTtl;
      if (max && ttl > _duration(max, 'auth.robots.maxTtl'))
        throw new CLIError(`--expires: longer than auth.robots.maxTtl (${max})`);
      if (ttl <= 0) throw new CLIError('--expires: must be positive');
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
      if (arg !== undefined) throw new CLIError(`unexpected argument "${arg}"; see \`berth token --help\``);
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
        throw new CLIError(
          'berth token revoke ID|NAME: give a robot id or name, or a refresh-token id (berth token list [--refresh])',
        );
      const removed = await state.revoke(arg);
      if (!removed.length) throw new CLIError(`no robot or refresh token "${arg}"; see \`berth token list\``);
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
      throw new CLIError(
        `berth token: expected create, list, revoke or prune${verb ? `, not "${verb}"` : ''}; see \`berth token --help\``,
      );
  }
}
export default command;
