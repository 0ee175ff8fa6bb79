// `berth login [REGISTRY]`: checks the credentials against the registry (the same ping + token exchange docker
// login does), then stores them where docker and podman look: a credential helper when config.json names one,
// else base64 in `auths` of $REGISTRY_AUTH_FILE or ~/.docker/config.json.
import { DockerCredentialStore, staticCredentials } from '../client/credentials.js';
import { Registry, RegistryError } from '../client/registry.js';
import { AuthError } from '../client/auth.js';
import { CLIError, parseFlags, type Command } from './command.js';
import { COMMON_FLAGS, COMMON_HELP, printJson } from './_client.js';

const HELP = `Usage: berth login [REGISTRY] -u USER (--password-stdin | -p PASSWORD) [flags]

Verifies the credentials with the registry and saves them for berth, docker, podman, skopeo and crane.
REGISTRY defaults to docker.io. Credentials go to the credential helper configured in ~/.docker/config.json
(credHelpers / credsStore) when there is one, else into $REGISTRY_AUTH_FILE or ~/.docker/config.json.

Flags:
  -u, --username USER
  -p, --password PASS     visible in your shell history and process list — prefer --password-stdin
      --password-stdin    read the password from standard input
${COMMON_HELP}

Examples:
  echo "$TOKEN" | berth login ghcr.io -u octocat --password-stdin
  berth login localhost:5000 -u admin -p secret`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export function normaliseHost(input: string): string {
  const host = input.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$/.test(host)) {
    throw new CLIError(`"${input}" is not a registry host; write it as HOST[:PORT], e.g. localhost:5000`);
  }
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

const command: Command = {
  name: 'login',
  summary: 'verify and save registry credentials',
  help: HELP,
  async run(argv) {
    const { values, positionals: pos } = parseFlags('login', argv, {
      ...COMMON_FLAGS,
      username: { type: 'string', short: 'u' },
      password: { type: 'string', short: 'p' },
      'password-stdin': { type: 'boolean' },
    });
    if (pos.length > 1) throw new CLIError('expected at most one REGISTRY; see `berth login --help`');
    const host = normaliseHost(pos[0] ?? 'docker.io');
    const username = values.username;
    if (!username) throw new CLIError('missing --username (-u); see `berth login --help`');
    if (values.password !== undefined && values['password-stdin'])
      throw new CLIError('use either --password or --password-stdin, not both');
    const password = values['password-stdin'] ? await readStdin() : values.password;
    if (!password) throw new CLIError('missing password; pass --password-stdin (recommended) or -p');
    const apiHost = host === 'docker.io' ? 'registry-1.docker.io' : host;
    const registry = new Registry(apiHost, {
      credentials: staticCredentials({ [apiHost]: { username, password } }),
      insecure: !!values.insecure,
      caFile: values['ca-file'],
      certsDirs: values['certs-dir'] ? [values['certs-dir']] : undefined,
    });
    try {
      const res = await registry.request({ method: 'GET', url: '/v2/', scopes: [] });
      await res.dump();
    } catch (e) {
      if ((e instanceof AuthError || e instanceof RegistryError) && (e.status === 401 || e.status === 403)) {
        throw new CLIError(
          `login to ${host} failed: the registry rejected username "${username}" or its password; check them and retry`,
        );
      }
      throw e;
    }
    const where = await new DockerCredentialStore().store(host, { username, password });
    if (values.json) printJson({ registry: host, username, stored: where });
    else console.log(`Login succeeded for ${username} at ${host} (saved to ${where})`);
  },
};
export default command;
