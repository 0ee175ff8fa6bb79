// Access control: ordered rules of repository patterns → subjects → actions. The first rule whose subjects match the
// caller and whose patterns match the repository decides (an empty `actions` list is an explicit deny); no match →
// denied. `catalog` is granted when any rule matching the caller lists it.
//
// Subjects: `*` (everyone), `anonymous`, `authenticated`, `user:NAME`, `group:NAME`, `robot:NAME`, `oidc:PROVIDER`,
// `claim:KEY=GLOB` (CI identities). NAME and PROVIDER may be globs. Patterns are picomatch globs (`team-a/**`,
// `public/*`) and may use `${name}` and `${claim.KEY}` from the caller (`ci/${claim.repository}/**`): a value is
// lowercased and used only when it is a plain repository path (no glob characters, no `..`), else the rule is skipped.
import picomatch from 'picomatch';
import { isValidName } from '../../spec/index.js';
import { REPO_ACTIONS, type RepoAction } from './scope.js';

export type Action = RepoAction | 'catalog';

export interface AclRule {
  repositories: string[];
  subjects: string[];
  actions: Array<Action | '*'>;
}

/** A robot token's own limits: the robot may never exceed these, whatever the ACL says. */
export interface RobotScope {
  repositories: string[];
  actions: RepoAction[];
}

export interface Identity {
  kind: 'anonymous' | 'user' | 'robot' | 'oidc';
  /** User name, robot name, or the CI identity's name (from the provider's `subject` template). */
  name: string;
  groups: string[];
  /** The OIDC provider (kind oidc). */
  provider?: string;
  /** String claims of the OIDC ID token (kind oidc). */
  claims?: Record<string, string>;
  /** The robot's own limits (kind robot). */
  limits?: RobotScope[];
  robotId?: string;
}

export const ANONYMOUS: Identity = { kind: 'anonymous', name: 'anonymous', groups: [] };

/** The token `sub` (and upload-session owner) of an identity. */
export function subjectOf(id: Identity): string {
  switch (id.kind) {
    case 'user':
      return id.name;
    case 'robot':
      return `robot:${id.name}`;
    case 'oidc':
      return `oidc:${id.provider}:${id.name}`;
    default:
      return 'anonymous';
  }
}

/** Without an `acl`, every configured user (not robots or CI identities) may do everything; nobody else anything. */
export const DEFAULT_ACL: AclRule[] = [
  { repositories: ['**'], subjects: ['user:*'], actions: ['pull', 'push', 'delete', 'catalog'] },
];

type SubjectMatch = (id: Identity) => boolean;

const SUBJECT_RE = /^(\*|anonymous|authenticated|(user|group|robot|oidc):.+|claim:[A-Za-z0-9_.:-]+=.*)$/;
const TEMPLATE_RE = /\$\{(name|claim\.[A-Za-z0-9_.:-]+)\}/g;
const SAFE_VALUE = /^[a-z0-9]+(?:[._/-][a-z0-9]+)*$/;

export class AclConfigError extends Error {}

interface CompiledRule {
  subjects: SubjectMatch[];
  patterns: string[];
  actions: Set<Action>;
  /** Static patterns compiled once; templated ones are compiled per caller (cached). */
  static?: (name: string) => boolean;
}

const _glob = (pattern: string) => picomatch(pattern, { dot: true, nobrace: false });

function _subject(s: string, where: string): SubjectMatch {
  if (!SUBJECT_RE.test(s)) {
    throw new AclConfigError(
      `${where}: unknown subject "${s}"; use *, anonymous, authenticated, user:NAME, group:NAME, robot:NAME, oidc:PROVIDER or claim:KEY=VALUE`,
    );
  }
  if (s === '*') return () => true;
  if (s === 'anonymous') return (id) => id.kind === 'anonymous';
  if (s === 'authenticated') return (id) => id.kind !== 'anonymous';
  if (s.startsWith('claim:')) {
    const eq = s.indexOf('=');
    const key = s.slice('claim:'.length, eq);
    const match = _glob(s.slice(eq + 1));
    return (id) => id.kind === 'oidc' && id.claims?.[key] !== undefined && match(id.claims[key]);
  }
  const colon = s.indexOf(':');
  const kind = s.slice(0, colon);
  const match = _glob(s.slice(colon + 1));
  if (kind === 'group') return (id) => id.kind !== 'anonymous' && id.groups.some((g) => match(g));
  if (kind === 'oidc') return (id) => id.kind === 'oidc' && match(id.provider ?? '');
  return (id) => id.kind === kind && match(id.name);
}

export function compileAcl(rules: AclRule[] | undefined): Acl {
  return new Acl(rules ?? DEFAULT_ACL);
}

export class Acl {
  private readonly rules: CompiledRule[];
  private readonly templated = new Map<string, (name: string) => boolean>();

  constructor(rules: AclRule[]) {
    this.rules = rules.map((r, i) => {
      const where = `auth.acl[${i}]`;
      if (!r.repositories?.length)
        throw new AclConfigError(`${where}: repositories is empty; list patterns such as "team-a/**"`);
      if (!r.subjects?.length)
        throw new AclConfigError(`${where}: subjects is empty; list e.g. "group:dev" or "anonymous"`);
      const actions = new Set<Action>();
      for (const a of r.actions ?? []) {
        if (a === '*') for (const x of [...REPO_ACTIONS, 'catalog' as const]) actions.add(x);
        else if ([...REPO_ACTIONS, 'catalog'].includes(a)) actions.add(a);
        else throw new AclConfigError(`${where}: unknown action "${a}"; use pull, push, delete, catalog or *`);
      }
      const hasTemplate = r.repositories.some((p) => p.includes('${'));
      return {
        subjects: r.subjects.map((s) => _subject(s, where)),
        patterns: r.repositories,
        actions,
        static: hasTemplate ? undefined : picomatch(r.repositories, { dot: true }),
      };
    });
  }

  /** Actions the caller may perform on `repository` (intersected with a robot's own limits). */
  allowed(id: Identity, repository: string): Set<RepoAction> {
    const out = new Set<RepoAction>();
    const rule = this.rules.find((r) => r.subjects.some((m) => m(id)) && this._matches(r, id, repository));
    if (!rule) return out;
    for (const a of REPO_ACTIONS) if (rule.actions.has(a)) out.add(a);
    if (id.kind === 'robot') {
      const limit = new Set<RepoAction>();
      for (const s of id.limits ?? [])
        if (picomatch(s.repositories, { dot: true })(repository)) for (const a of s.actions) limit.add(a);
      for (const a of out) if (!limit.has(a)) out.delete(a);
    }
    return out;
  }

  mayCatalog(id: Identity): boolean {
    return this.rules.some((r) => r.actions.has('catalog') && r.subjects.some((m) => m(id)));
  }

  private _matches(rule: CompiledRule, id: Identity, repository: string): boolean {
    if (rule.static) return rule.static(repository);
    return rule.patterns.some((p) => {
      const expanded = _expand(p, id);
      if (expanded === undefined) return false;
      let m = this.templated.get(expanded);
      if (!m) {
        if (this.templated.size > 10_000) this.templated.clear();
        m = picomatch(expanded, { dot: true });
        this.templated.set(expanded, m);
      }
      return m(repository);
    });
  }
}

/** Fills `${name}` / `${claim.KEY}`; undefined when a value is missing or is not a plain lowercase path. */
function _expand(pattern: string, id: Identity): string | undefined {
  let ok = true;
  const out = pattern.replace(TEMPLATE_RE, (_, key: string) => {
    const raw = key === 'name' ? id.name : id.claims?.[key.slice('claim.'.length)];
    const value = raw?.toLowerCase();
    if (id.kind === 'anonymous' || value === undefined || !SAFE_VALUE.test(value) || !isValidName(value)) {
      ok = false;
      return '';
    }
    return value;
  });
  return ok ? out : undefined;
}
