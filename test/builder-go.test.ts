// preset: go end to end: a Go HTTP service (go.mod + cmd/hello) becomes a two-platform image with a four-line
// spec, built by the host's Go toolchain (linux/arm64 cross-compiled on this amd64 machine), reproducible
// (--check-reproducible), run by the Docker engine and answering a request; containerd pulls each platform from the
// index and each binary is its platform's ELF (arm64 cross-compiled).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth } from './support/berth.js';
import { berth, parseBuild, writeTree } from './support/builder-fixtures.js';
import { startContainerd, startDockerd } from './support/docker.js';
import { freePort, ok, requirePeer, run, waitForHttp } from './support/peers.js';

export const GO_APP: Record<string, string> = {
  'go.mod': 'module example.com/hello\n\ngo 1.21\n',
  'cmd/hello/main.go': `package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		res, err := http.Get("http://127.0.0.1:" + port + "/ping")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(os.Stdout, res.Body)
		return
	}
	http.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from go on %s/%s\\n", runtime.GOOS, runtime.GOARCH)
	})
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`,
  'berth.yaml': `apiVersion: berth/v1
kind: Image
preset: go
platforms: [linux/amd64, linux/arm64]
go: { main: ./cmd/hello }
config: { exposedPorts: [8080] }
`,
};

/** ELF e_machine: 62 = x86-64, 183 = AArch64. */
async function elfMachine(path: string): Promise<number> {
  const f = await open(path, 'r');
  try {
    const b = Buffer.alloc(20);
    await f.read(b, 0, 20, 0);
    assert.equal(b.subarray(0, 4).toString('latin1'), '\x7fELF');
    return b.readUInt16LE(18);
  } finally {
    await f.close();
  }
}

test('A preset: go sample app is reproducible, runs in docker and answers; containerd pulls each platform of its index', async (t) => {
  if (!requirePeer(t, 'go', 'docker', 'containerd', 'crane')) return;
  const work = await mkdtemp(join(tmpdir(), 'berth-go-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  await writeTree(work, GO_APP);
  const reg = await startBerth(t);
  const ref = `${reg.host}/team/hello-go:v1`;
  const built = parseBuild(
    await berth(
      [
        'build',
        '-f',
        join(work, 'berth.yaml'),
        '--cache',
        join(work, '.cache'),
        '--check-reproducible',
        '--push',
        ref,
        '--json',
      ],
      { timeoutMs: 600_000 },
    ),
  );
  assert.deepEqual(
    built.images.map((i) => [i.platform, i.layers.map((l) => l.name)]),
    [
      ['linux/amd64', ['app']],
      ['linux/arm64', ['app']],
    ],
  );
  // A cold rebuild in another cache gives the same digest (Go's own build cache may be warm: same bytes anyway).
  const again = parseBuild(
    await berth(['build', '-f', join(work, 'berth.yaml'), '--cache', join(work, '.cache2'), '--json'], {
      timeoutMs: 600_000,
    }),
  );
  assert.equal(again.digest, built.digest);

  const dockerd = await startDockerd({ insecureRegistries: [reg.host] });
  t.after(() => dockerd.stop());
  ok(await dockerd.docker(['pull', ref]));
  const inspect = JSON.parse(ok(await dockerd.docker(['image', 'inspect', ref])))[0];
  assert.deepEqual(inspect.Config.Entrypoint, ['/app/hello']);
  assert.equal(inspect.Config.User, '65532:65532');
  const port = await freePort();
  const name = `berth-go-${process.pid}`;
  t.after(async () => {
    await dockerd.docker(['rm', '-f', name]);
  });
  ok(await dockerd.docker(['run', '-d', '--name', name, '--network', 'host', '-e', `PORT=${port}`, ref]));
  await waitForHttp(`http://127.0.0.1:${port}/ping`, { timeoutMs: 30_000 }).catch(async (e) => {
    throw new Error(`${(e as Error).message}\ncontainer logs:\n${(await dockerd.docker(['logs', name])).stdout}`);
  });
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/ping`)).text(), 'hello from go on linux/amd64\n');
  // The image's own binary asks from inside a container without network: static, no libc, runs on scratch.
  const probe = await dockerd.docker([
    'run',
    '--rm',
    '--network',
    `container:${name}`,
    '-e',
    `PORT=${port}`,
    ref,
    'probe',
  ]);
  assert.equal(ok(probe), 'hello from go on linux/amd64\n');

  // containerd pulls each platform of the index and unpacks it: each holds its own architecture's binary.
  const ctrd = await startContainerd();
  t.after(() => ctrd.stop());
  for (const [platform, machine] of [
    ['linux/amd64', 62],
    ['linux/arm64', 183],
  ] as const) {
    ok(await ctrd.ctr(['images', 'pull', '--plain-http', '--platform', platform, ref]));
    const mounts = await mkdtemp(join(tmpdir(), 'berth-go-mount-'));
    t.after(() => rm(mounts, { recursive: true, force: true }));
    ok(await ctrd.ctr(['images', 'mount', '--platform', platform, ref, mounts]));
    try {
      assert.equal(await elfMachine(join(mounts, 'app/hello')), machine, `${platform}: its own binary`);
    } finally {
      await ctrd.ctr(['images', 'unmount', mounts]);
    }
  }
  const amd = JSON.parse(ok(await run('crane', ['config', '--platform', 'linux/amd64', ref])));
  assert.equal(amd.architecture, 'amd64');
});
