// Registry clients (skopeo, crane, oras, regctl, podman) with a private home per test: credentials, policies
// and storage never leak between tests.
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type RunOptions, type RunResult, removeTree, run, tool } from './peers.js';

// ---------------------------------------------------------------------------------------------------------------
// Registry clients with a private home: credentials, policies and storage never leak between tests

export interface Clients {
  /** The private HOME; config files of every client live under it. */
  home: string;
  skopeo(args: string[], opts?: RunOptions): Promise<RunResult>;
  crane(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Remember `--plain-http` for loopback registries. */
  oras(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Call `regctl(['registry', 'set', '--tls', 'disabled', host])` first for plain-HTTP registries. */
  regctl(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** podman with `--root/--runroot/--tmpdir` in the home and `--storage-driver vfs`. Use docker to run images. */
  podman(args: string[], opts?: RunOptions): Promise<RunResult>;
}

/** Makes a fresh client home for one test; it is removed when the test ends. */
export async function makeClients(t: TestContext): Promise<Clients> {
  const home = await mkdtemp('/tmp/peer-home-');
  t.after(() => removeTree(home));
  const env = await _clientEnv(home);
  const bound =
    (name: string, pre: string[] = []) =>
    (args: string[], opts: RunOptions = {}) =>
      run(tool(name), [...pre, ...args], { ...opts, env: { ...env, ...opts.env } });
  const storage = join(home, 'podman');
  return {
    home,
    skopeo: bound('skopeo'),
    crane: bound('crane'),
    oras: bound('oras'),
    regctl: bound('regctl'),
    podman: bound('podman', [
      '--root',
      join(storage, 'root'),
      '--runroot',
      join(storage, 'run'),
      '--tmpdir',
      join(storage, 'tmp'),
      '--storage-driver',
      'vfs',
      '--cgroup-manager',
      'cgroupfs',
      '--events-backend',
      'file',
    ]),
  };
}

/** Writes the containers/* policy and registries files and returns the env that points every client at `home`. */
async function _clientEnv(home: string): Promise<Record<string, string>> {
  const containers = join(home, '.config', 'containers');
  await mkdir(containers, { recursive: true });
  await mkdir(join(home, 'run'), { recursive: true });
  // c/image (skopeo, podman) prefers $HOME/.config/containers/policy.json over /etc.
  await writeFile(join(containers, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  // No search registries: a short name must never reach out to the internet.
  await writeFile(join(containers, 'registries.conf'), 'unqualified-search-registries = []\n');
  // podman 4.3 refuses a storage.conf without runroot ("runroot must be set") even when --runroot is given.
  const storage = join(home, 'podman');
  const storageConf = `[storage]\ndriver = "vfs"\ngraphroot = ${JSON.stringify(join(storage, 'root'))}\nrunroot = ${JSON.stringify(join(storage, 'run'))}\n`;
  await writeFile(join(containers, 'storage.conf'), storageConf);
  // As root, podman raises a container's nofile/nproc to values above this machine's hard limits and runc then
  // fails ("error setting rlimit type 7"); defaults within the limits make `podman run` work.
  const containersConf = [
    '[containers]',
    'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    '',
  ].join('\n');
  await writeFile(join(containers, 'containers.conf'), containersConf);
  // podman fails with "stat …/auth.json" when REGISTRY_AUTH_FILE names a file that does not exist yet.
  await writeFile(join(home, 'auth.json'), JSON.stringify({ auths: {} }));
  return {
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_RUNTIME_DIR: join(home, 'run'),
    DOCKER_CONFIG: join(home, '.docker'),
    REGISTRY_AUTH_FILE: join(home, 'auth.json'),
    CONTAINERS_REGISTRIES_CONF: join(containers, 'registries.conf'),
    CONTAINERS_STORAGE_CONF: join(containers, 'storage.conf'),
    CONTAINERS_CONF: join(containers, 'containers.conf'),
    REGCTL_CONFIG: join(home, '.regctl', 'config.json'),
  };
}
