// `berth login [REGISTRY]`: checks the credentials against the registry (the same ping + token exchange docker
// login does), then stores them where docker and podman look: a credential helper when config.json names one,
// else base64 in `auths` of $REGISTRY_AUTH_FILE or ~/.docker/config.json.
import { DockerCredentialStore, staticCredentials } from '../client/credentials.js';
import { Registry, RegistryError } from '../client/registry.js';
import { AuthError } from '../client/auth.js';
import { CLIError, defineCommand, EXIT, flag, UsageError } from './command.js';
import { printJson } from './_client.js';
import { REMOTE, registryHost } from './flags.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export default defineCommand({
  usage: '[REGISTRY] -u USER (--password-stdin | -p PASSWORD) [flags]',
  description: `Verifies the credentials with the registry and saves them for berth, docker, podman, skopeo and crane.
REGISTRY defaults to docker.io. Credentials go to the credential helper configured in ~/.docker/config.json
(credHelpers / credsStore) when there is one, else into $REGISTRY_AUTH_FILE or ~/.docker/config.json.`,
  flags: {
    username: flag.string({ short: 'u', arg: 'USER', help: 'the account name' }),
    password: flag.string({
      short: 'p',
      arg: 'PASS',
      help: 'visible in your shell history and process list — prefer --password-stdin',
    }),
    'password-stdin': flag.boolean({ help: 'read the password from standard input' }),
    ...REMOTE,
  },
  args: ['[REGISTRY]'],
  examples: [
    'echo "$TOKEN" | berth login ghcr.io -u octocat --password-stdin',
    'berth login localhost:5000 -u admin -p secret',
  ],
  async run({ flags, args }) {
    const host = registryHost(args[0] ?? 'docker.io');
    const username = flags.username;
    if (!username) throw new UsageError('missing --username (-u); see `berth login --help`');
    if (flags.password !== undefined && flags['password-stdin'])
      throw new UsageError('use either --password or --password-stdin, not both');
    const password = flags['password-stdin'] ? await readStdin() : flags.password;
    if (!password) throw new UsageError('missing password; pass --password-stdin (recommended) or -p');
    const apiHost = host === 'docker.io' ? 'registry-1.docker.io' : host;
    const registry = new Registry(apiHost, {
      credentials: staticCredentials({ [apiHost]: { username, password } }),
      insecure: flags.insecure,
      caFile: flags['ca-file'],
      certsDirs: flags['certs-dir'] ? [flags['certs-dir']] : undefined,
    });
    try {
      const res = await registry.request({ method: 'GET', url: '/v2/', scopes: [] });
      await res.dump();
    } catch (e) {
      if ((e instanceof AuthError || e instanceof RegistryError) && (e.status === 401 || e.status === 403)) {
        throw new CLIError(
          `login to ${host} failed: the registry rejected username "${username}" or its password; check them and retry`,
          EXIT.denied,
        );
      }
      throw e;
    }
    const where = await new DockerCredentialStore().store(host, { username, password });
    if (flags.json) printJson({ registry: host, username, stored: where });
    else console.log(`Login succeeded for ${username} at ${host} (saved to ${where})`);
  },
});
