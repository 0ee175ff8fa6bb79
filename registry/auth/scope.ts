// Docker token scopes: `repository:team-a/app:pull,push`, `registry:catalog:*`, and what each /v2 request needs.
// spec: distribution docs/content/spec/auth/scope.md — the name may itself contain `:` (`host:port/repo`), so the
// type is before the first `:` and the actions after the last one.
import { isValidName } from '../../spec/index.js';
import type { Target } from '../context.js';

export type RepoAction = 'pull' | 'push' | 'delete';
export const REPO_ACTIONS: readonly RepoAction[] = ['pull', 'push', 'delete'];

/** One entry of a token's `access` claim, and one requested scope. */
export interface Access {
  type: 'repository' | 'registry';
  name: string;
  actions: string[];
}

export class ScopeError extends Error {}

/**
 * Parses one scope string strictly. A repository name must be a valid OCI name (lowercase, no wildcards, no `..`):
 * a scope is never a pattern. `*` as a repository action means every action.
 */
export function parseScope(raw: string): Access {
  if (raw.length > 512) throw new ScopeError('scope longer than 512 characters');
  const first = raw.indexOf(':');
  const last = raw.lastIndexOf(':');
  if (first <= 0 || last === first)
    throw new ScopeError(
      `invalid scope "${raw.slice(0, 100)}": expected TYPE:NAME:ACTIONS, e.g. repository:team/app:pull,push`,
    );
  // `repository(plugin)` carries a resource class; it changes nothing here.
  const type = raw.slice(0, first).replace(/\([a-z0-9]+\)$/, '');
  const name = raw.slice(first + 1, last);
  const actions = raw
    .slice(last + 1)
    .split(',')
    .filter((a) => a !== '');
  if (type === 'registry') {
    if (name !== 'catalog' || actions.length !== 1 || actions[0] !== '*') {
      throw new ScopeError(`invalid scope "${raw.slice(0, 100)}": the only registry scope is registry:catalog:*`);
    }
    return { type, name, actions };
  }
  if (type !== 'repository')
    throw new ScopeError(
      `invalid scope "${raw.slice(0, 100)}": unknown resource type "${type.slice(0, 40)}" (repository or registry)`,
    );
  if (!isValidName(name)) {
    throw new ScopeError(
      `invalid scope "${raw.slice(0, 100)}": "${name.slice(0, 80)}" is not a repository name (lowercase a-z0-9 components separated by . _ - /; no wildcards or "..")`,
    );
  }
  if (actions.length === 0)
    throw new ScopeError(`invalid scope "${raw.slice(0, 100)}": no actions; use pull, push, delete or *`);
  for (const a of actions) {
    if (a !== '*' && !(REPO_ACTIONS as readonly string[]).includes(a)) {
      throw new ScopeError(
        `invalid scope "${raw.slice(0, 100)}": unknown action "${a.slice(0, 40)}" (pull, push, delete or *)`,
      );
    }
  }
  const expanded = actions.includes('*') ? [...REPO_ACTIONS] : [...new Set(actions)];
  return { type, name, actions: expanded };
}

export function formatScope(a: Access): string {
  return `${a.type}:${a.name}:${a.actions.join(',')}`;
}

/** Merges scopes for the same resource (`pull` + `push` on one repository → one entry). */
export function mergeScopes(list: Access[]): Access[] {
  const byKey = new Map<string, Access>();
  for (const a of list) {
    const key = `${a.type}:${a.name}`;
    const have = byKey.get(key);
    if (have) have.actions = [...new Set([...have.actions, ...a.actions])];
    else byKey.set(key, { ...a, actions: [...a.actions] });
  }
  return [...byKey.values()];
}

/**
 * What a /v2 request needs (PROTOCOL.md "Token auth"): GET/HEAD → pull; POST/PUT/PATCH → pull+push; DELETE → delete;
 * the catalog → registry:catalog:*. Every method on an upload session is part of a push (cancel included), so it
 * needs pull+push. The base route needs only a valid identity (undefined here).
 */
export function requiredAccess(target: Target, method: string): Access | undefined {
  if (target.route === 'base') return undefined;
  if (target.route === 'catalog') return { type: 'registry', name: 'catalog', actions: ['*'] };
  const name = target.name!;
  if (target.route === 'upload' || target.route === 'uploads')
    return { type: 'repository', name, actions: ['pull', 'push'] };
  switch (method) {
    case 'GET':
    case 'HEAD':
      return { type: 'repository', name, actions: ['pull'] };
    case 'DELETE':
      return { type: 'repository', name, actions: ['delete'] };
    default:
      return { type: 'repository', name, actions: ['pull', 'push'] };
  }
}
