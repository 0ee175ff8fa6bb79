// README's "In production: HTTPS and token auth, step by step", run as written: its openssl commands make the
// certificate, `berth passwd` the user, its berth.yaml (taken from README, only the port, the storage root and the
// password hash filled in) passes `berth config check` and serves; docker logs in, pushes and pulls over HTTPS; an
// anonymous pull is refused; berth's CLI trusts the CA with NODE_EXTRA_CA_CERTS; the audit log names alice.
// If README changes, this test runs the new text — the walk-through cannot drift from what works.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parse } from 'yaml';
import { startBerth } from './support/berth.js';
import { makeBusyboxLayout } from './support/oci-layouts.js';
import { startDockerd } from './support/docker.js';
import { freePort, ok, requirePeer, run } from './support/peers.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));
const README = fileURLToPath(new URL('../README.md', import.meta.url));

/** The section's shell block and the YAML block after the `readme-https: berth.yaml` marker. */
async function walkThrough(): Promise<{ shell: string; yaml: string }> {
  const text = await readFile(README, 'utf8');
  const start = text.indexOf('### In production: HTTPS and token auth, step by step');
  assert.ok(start >= 0, 'README has the HTTPS walk-through');
  const section = text.slice(start);
  const shell = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  const yaml = /<!-- readme-https: berth\.yaml -->\n```yaml\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(shell && yaml, 'the walk-through has a sh block and the marked berth.yaml block');
  return { shell, yaml };
}

test('README walk-through: HTTPS + token auth from nothing to docker push, as written', async (t) => {
  if (!requirePeer(t, 'docker', 'openssl', 'skopeo', 'busybox')) return;
  const { shell, yaml } = await walkThrough();
  const dir = await mkdtemp('/tmp/berth-readme-https-');
  t.after(() => rm(dir, { recursive: true, force: true }));

  // Step 1 as written: every `openssl` command of the block (with its continuation lines), run by bash.
  const openssl = shell.match(/^openssl (?:.*\\\n)*.*$/gm) ?? [];
  assert.equal(openssl.length, 3, 'step 1 makes a CA, a request and the certificate');
  ok(await run('bash', ['-euo', 'pipefail', '-c', openssl.join('\n')], { cwd: dir }));

  // Step 2: the users entry, from `berth passwd` (--stdin instead of the terminal prompt).
  const passwd = ok(
    await run(process.execPath, [BERTH, 'passwd', 'alice', '--stdin'], { input: 's3cret-pass\n', cwd: dir }),
  );
  const hash = /passwordHash: (\S+)/.exec(passwd)?.[1];
  assert.ok(hash, `berth passwd printed a passwordHash:\n${passwd}`);

  // Step 3: README's berth.yaml with this test's port, storage root and hash.
  const port = await freePort();
  const root = join(dir, 'data');
  const config = yaml
    .replaceAll(':5443', `:${port}`)
    .replace('/var/lib/berth', root)
    .replace('"$2b$12$…"', `"${hash}"`);
  const parsed = parse(config);
  assert.equal(parsed.auth.users[0].passwordHash, hash, 'the hash landed where README says');
  await writeFile(join(dir, 'berth.yaml'), config);
  ok(await run(process.execPath, [BERTH, 'config', 'check', '-c', join(dir, 'berth.yaml')], { cwd: dir }));
  // startBerth writes the config beside the storage root (`data-config.yaml` in dir), so tls.crt resolves in dir.
  const berth = await startBerth(t, { root, config, port, tlsCa: join(dir, 'ca.crt') });

  // Step 4: docker (dockerd reads certs.d only from /etc, which a test must not write: it verifies loopback
  // registries loosely, so this proves login and push over HTTPS and the token realm from publicUrl).
  const engine = await startDockerd({ insecureRegistries: [] });
  t.after(() => engine.stop());
  const img = await makeBusyboxLayout(join(dir, 'layout'));
  const ref = `localhost:${port}/team/app:1.0`;
  ok(
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      'alice:s3cret-pass',
      img.ref,
      `docker://${ref}`,
    ]),
  );
  const anonymous = await engine.docker(['pull', ref]);
  assert.notEqual(anonymous.code, 0, 'an anonymous pull of team/app is refused');
  assert.match(anonymous.stderr, /denied|unauthorized/i);
  ok(
    await engine.docker(['login', `localhost:${port}`, '-u', 'alice', '--password-stdin'], { input: 's3cret-pass\n' }),
  );
  ok(await engine.docker(['pull', ref]));
  ok(await engine.docker(['tag', ref, `localhost:${port}/team/app:1.1`]));
  ok(await engine.docker(['push', `localhost:${port}/team/app:1.1`]));

  // Step 5: berth's CLI trusts the private CA through NODE_EXTRA_CA_CERTS.
  const env = { NODE_EXTRA_CA_CERTS: join(dir, 'ca.crt'), DOCKER_CONFIG: join(dir, 'berth-docker-config') };
  ok(
    await run(process.execPath, [BERTH, 'login', `localhost:${port}`, '-u', 'alice', '--password-stdin'], {
      input: 's3cret-pass\n',
      env,
    }),
  );
  const tags = ok(await run(process.execPath, [BERTH, 'tags', `localhost:${port}/team/app`], { env }));
  assert.deepEqual(tags.trim().split('\n'), ['1.0', '1.1']);

  // The audit log (relative to berth.yaml's directory) has alice's login and her push.
  const audit = (await readFile(join(dir, 'audit.log'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.ok(audit.some((e) => e.event === 'login' && e.outcome === 'success' && e.account === 'alice'));
  assert.ok(audit.some((e) => e.event === 'push' && e.actor === 'alice' && e.tag === '1.1'));
  await berth.stop();
});
