// preset: python end to end: a small HTTP service with a locked pure-Python dependency (six) and a binary one
// (markupsafe's C speedups), installed from PyPI wheels for each target platform. The linux/amd64 image, on a
// python base this test makes from the host's Debian python3.11, runs under docker and answers a request; it and
// the two-platform index are reproducible (--check-reproducible) and containerd pulls each platform of the index,
// the arm64 one with the aarch64 binary wheel. A platform with no binary wheel is refused by name. pip reads the wheels from the directory
// .ci/install-wheels.sh filled (PIP_NO_INDEX, PIP_FIND_LINKS): the test itself talks only to loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, cp, mkdir, mkdtemp, readdir, rm, writeFile, copyFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startBerth } from './support/berth.js';
import { berth, parseBuild, writeTree } from './support/builder-fixtures.js';
import { startContainerd, startDockerd } from './support/docker.js';
import { freePort, ok, requirePeer, run, waitForHttp } from './support/peers.js';

const PYTHON = '/usr/bin/python3.11';
/** Wheels staged by .ci/install-wheels.sh: pip reads them from disk, so the test talks only to loopback. */
const WHEELS = join(process.env.BERTH_TOOLS ?? '/opt/berth-tools', 'wheels');
const OFFLINE = { PIP_NO_INDEX: '1', PIP_FIND_LINKS: WHEELS };
const STDLIB = '/usr/lib/python3.11';

export const PY_APP: Record<string, string> = {
  'requirements.txt': `# pip-compile --generate-hashes
markupsafe==2.1.5 \\
    --hash=sha256:6ec585f69cec0aa07d945b20805be741395e28ac1627333b1c5b0105962ffced \\
    --hash=sha256:b91c037585eba9095565a3556f611e3cbfaa42ca1e865f7b8015fe5c7336d5a5
six==1.16.0 \\
    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254
`,
  'main.py': `import os, platform
from http.server import BaseHTTPRequestHandler, HTTPServer
import six
from markupsafe import escape, _speedups

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from python on {platform.machine()}: {escape('<six ' + six.__version__ + '>')}\\n".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Hello).serve_forever()
`,
  '.venv/lib/junk.py': 'never in the image\n',
};

/** A context whose rootfs/ holds Debian's python3.11, its stdlib (no tests) and every library they load. */
async function pythonBaseContext(dir: string): Promise<void> {
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'usr/bin'), { recursive: true });
  await copyFile(PYTHON, join(rootfs, 'usr/bin/python3.11'));
  const skip =
    /\/(test|tests|idlelib|tkinter|turtledemo|lib2to3|ensurepip|__pycache__|dist-packages|site-packages|config-3\.11[^/]*)$/;
  await cp(STDLIB, join(rootfs, STDLIB), { recursive: true, filter: (src) => !skip.test(src) });
  const dynload = join(STDLIB, 'lib-dynload');
  const objects = [PYTHON, ...(await readdir(dynload)).map((n) => join(dynload, n))];
  const libs = new Set<string>();
  for (const o of objects) {
    for (const l of ok(await run('ldd', [o])).split('\n')) {
      const m = l.match(/(\/\S+) \(0x/);
      if (m) libs.add(m[1]);
    }
  }
  // What manylinux wheels may link besides (PEP 600: the glibc libraries a manylinux system has).
  const multiarch = dirname([...libs].find((l) => l.includes('/libc.so.6'))!);
  for (const extra of ['libpthread.so.0', 'libdl.so.2', 'librt.so.1', 'libutil.so.1'])
    if (
      await access(join(multiarch, extra)).then(
        () => true,
        () => false,
      )
    )
      libs.add(join(multiarch, extra));
  for (const lib of libs) {
    await mkdir(join(rootfs, dirname(lib)), { recursive: true });
    await copyFile(lib, join(rootfs, lib));
  }
  await writeFile(
    join(dir, 'berth.yaml'),
    `apiVersion: berth/v1
kind: Image
platforms: [linux/amd64]
layers:
  - name: python
    files:
      - { src: rootfs, dest: /, followSymlinks: true }
      - { symlink: python3.11, dest: /usr/bin/python3 }
config: { env: { PATH: /usr/local/bin:/usr/bin:/bin }, cmd: [python3] }
`,
  );
}

async function elfMachine(path: string): Promise<number> {
  const f = await open(path, 'r');
  try {
    const b = Buffer.alloc(20);
    await f.read(b, 0, 20, 0);
    return b.readUInt16LE(18);
  } finally {
    await f.close();
  }
}

test('A preset: python sample app runs in docker and answers; its arm64 image has arm64 wheels', async (t) => {
  if (!requirePeer(t, 'python3', 'docker', 'containerd', 'ldd', PYTHON)) return;
  const staged = await readdir(WHEELS).catch(() => [] as string[]);
  if (staged.filter((f) => f.endsWith('.whl')).length < 3) {
    const message = `missing peer: wheels in ${WHEELS}; run .ci/install-wheels.sh`;
    if (process.env.CI === 'true') throw new Error(message);
    t.skip(message);
    return;
  }
  const work = await mkdtemp(join(tmpdir(), 'berth-python-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const cache = join(work, 'cache');
  const reg = await startBerth(t);

  const baseDir = join(work, 'base');
  await pythonBaseContext(baseDir);
  const baseRef = `${reg.host}/library/python:3.11`;
  parseBuild(
    await berth(
      ['build', '-f', join(baseDir, 'berth.yaml'), '--cache', cache, '--no-sbom', '--push', baseRef, '--json'],
      {
        timeoutMs: 300_000,
      },
    ),
  );

  const app = join(work, 'app');
  await writeTree(app, {
    ...PY_APP,
    'berth.yaml': `apiVersion: berth/v1\nkind: Image\nbase: ${baseRef}\npreset: python\nplatforms: [linux/amd64]\nconfig: { exposedPorts: [8080] }\n`,
  });
  const ref = `${reg.host}/team/hello-py:v1`;
  const built = parseBuild(
    await berth(
      ['build', '-f', join(app, 'berth.yaml'), '--cache', cache, '--check-reproducible', '--push', ref, '--json'],
      {
        timeoutMs: 300_000,
        env: OFFLINE,
      },
    ),
  );
  assert.deepEqual(
    built.images[0].layers.map((l) => l.name),
    ['dependencies', 'app'],
  );

  const dockerd = await startDockerd({ insecureRegistries: [reg.host] });
  t.after(() => dockerd.stop());
  ok(await dockerd.docker(['pull', ref]));
  const inspect = JSON.parse(ok(await dockerd.docker(['image', 'inspect', ref])))[0];
  assert.deepEqual(inspect.Config.Entrypoint, ['python3', '/app/main.py']);
  assert.ok(inspect.Config.Env.includes('PYTHONPATH=/app/site-packages'), String(inspect.Config.Env));
  const port = await freePort();
  const name = `berth-py-${process.pid}`;
  t.after(async () => {
    await dockerd.docker(['rm', '-f', name]);
  });
  ok(await dockerd.docker(['run', '-d', '--name', name, '--network', 'host', '-e', `PORT=${port}`, ref]));
  await waitForHttp(`http://127.0.0.1:${port}/`, { timeoutMs: 30_000 }).catch(async (e) => {
    const logs = await dockerd.docker(['logs', name]);
    throw new Error(`${(e as Error).message}\ncontainer logs:\n${logs.stdout}${logs.stderr}`);
  });
  assert.equal(
    await (await fetch(`http://127.0.0.1:${port}/`)).text(),
    'hello from python on x86_64: &lt;six 1.16.0&gt;\n',
  );
  const ls = ok(
    await dockerd.docker([
      'run',
      '--rm',
      '--network',
      'none',
      '--entrypoint',
      'python3',
      ref,
      '-c',
      'import os; print(sorted(os.listdir("/app")))',
    ]),
  );
  assert.equal(ls.trim(), "['main.py', 'requirements.txt', 'site-packages']", 'no .venv, no berth.yaml');

  // Both platforms (on scratch: only pulled here): reproducible, and arm64 gets the aarch64 wheel.
  await writeFile(
    join(app, 'berth.yaml'),
    'apiVersion: berth/v1\nkind: Image\npreset: python\nplatforms: [linux/amd64, linux/arm64]\n',
  );
  const multiRef = `${reg.host}/team/hello-py:multi`;
  const multi = parseBuild(
    await berth(
      ['build', '-f', join(app, 'berth.yaml'), '--cache', cache, '--check-reproducible', '--push', multiRef, '--json'],
      { timeoutMs: 300_000, env: OFFLINE },
    ),
  );
  assert.equal(multi.images.length, 2);
  const ctrd = await startContainerd();
  t.after(() => ctrd.stop());
  // containerd pulls each platform of the index; the arm64 one is unpacked and checked.
  for (const platform of ['linux/amd64', 'linux/arm64'])
    ok(await ctrd.ctr(['images', 'pull', '--plain-http', '--platform', platform, multiRef]));
  const mounts = await mkdtemp(join(tmpdir(), 'berth-py-mount-'));
  t.after(() => rm(mounts, { recursive: true, force: true }));
  ok(await ctrd.ctr(['images', 'mount', '--platform', 'linux/arm64', multiRef, mounts]));
  try {
    const so = join(mounts, 'app/site-packages/markupsafe/_speedups.cpython-311-aarch64-linux-gnu.so');
    assert.equal(await elfMachine(so), 183, 'the aarch64 wheel');
    assert.ok((await readdir(join(mounts, 'app/site-packages'))).includes('six.py'));
  } finally {
    await ctrd.ctr(['images', 'unmount', mounts]);
  }

  // No markupsafe wheel exists for riscv64: refused, naming the package, the platform and the way out.
  await writeFile(
    join(app, 'berth.yaml'),
    'apiVersion: berth/v1\nkind: Image\npreset: python\nplatforms: [linux/riscv64]\n',
  );
  const refused = await berth(['build', '-f', join(app, 'berth.yaml'), '--cache', cache], { env: OFFLINE });
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(
    refused.stderr,
    /no wheel of markupsafe==2\.1\.5 for linux\/riscv64 \(CPython 3\.11\): pure-Python wheels install on any platform/,
  );
});
