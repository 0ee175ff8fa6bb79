// Upload sessions attacked from several requests at once (issue 14, findings 1 and 2), on the filesystem and on a
// real S3 server:
//  - a PATCH queued behind another one on the same session whose client leaves must not take the process down;
//  - a PUT ?digest= sent while a PATCH is still streaming must never publish bytes other than those the digest names
//    (completing, appending and cancelling a session are mutually exclusive);
//  - a bounded storm of concurrent PATCH/PUT/DELETE on shared sessions with random disconnects leaves a server that
//    is up and a storage where every blob re-hashes to its digest (`berth fsck`);
//  - `berth fsck` finds a blob whose bytes do not match its digest and quarantines it; an honest push repairs it.
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { request } from 'node:http';
import { readFile, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, requirePeer } from './support/peers.js';
import { startBerth, type Berth } from './support/berth.js';
import { startS3Server, s3ServeConfig, S3_PEER } from './support/s3-server.js';
import { raw, sha256 } from './support/registry-client.js';

const BERTH = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

type Backend = 'filesystem' | 's3';

async function startOn(t: TestContext, backend: Backend): Promise<{ berth: Berth; config?: string } | undefined> {
  if (backend === 'filesystem') return { berth: await startBerth(t, { config: 'log: { requests: false }\n' }) };
  if (!requirePeer(t, S3_PEER)) return undefined;
  const s3 = await startS3Server();
  t.after(() => s3.stop());
  const config = s3ServeConfig(s3);
  return { berth: await startBerth(t, { config }), config };
}

/** A request whose body the test writes piece by piece; `abort()` cuts the connection like a client that left. */
function openRequest(base: string, method: string, path: string, headers: Record<string, string> = {}) {
  const url = new URL(path, base);
  const req = request(url, {
    method,
    agent: false,
    headers: { 'Content-Type': 'application/octet-stream', ...headers },
  });
  const response = new Promise<number>((resolve) => {
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(-1));
    });
    req.on('error', () => resolve(-1));
  });
  return {
    write: (data: Buffer) => new Promise<void>((resolve) => req.write(data, () => resolve())),
    end: (data?: Buffer) => req.end(data),
    abort: () => req.destroy(),
    response,
  };
}

async function startSession(base: string, repo: string): Promise<string> {
  const res = await raw(base, 'POST', `/v2/${repo}/blobs/uploads/`);
  assert.equal(res.status, 202);
  return res.header('location')!;
}

async function alive(berth: Berth): Promise<void> {
  const res = await raw(berth.url, 'GET', '/v2/');
  assert.equal(res.status, 200, `the server must still answer after the attack; logs:\n${berth.logs().slice(-3000)}`);
}

/** `berth fsck` against the server's storage; returns its exit code and parsed --json report. */
async function fsck(berth: Berth, config: string | undefined, extra: string[] = []) {
  const args = [BERTH, 'fsck', '--json', ...extra];
  if (config) {
    const file = join(`${berth.root}-fsck.yaml`);
    await writeFile(file, config);
    args.push('--config', file);
  } else {
    args.push('--root', berth.root);
  }
  const res = await run(process.execPath, args, { timeoutMs: 300_000 });
  let report: { checked: number; bad: Array<{ digest: string; actual: string }>; quarantined: number } | undefined;
  try {
    report = JSON.parse(res.stdout);
  } catch {
    assert.fail(`berth fsck --json printed no JSON (exit ${res.code}):\n${res.stdout}\n${res.stderr}`);
  }
  return { code: res.code, report: report!, stderr: res.stderr };
}

for (const backend of ['filesystem', 's3'] as const) {
  test(`${backend}: a queued PATCH whose client leaves does not take the server down`, async (t) => {
    const started = await startOn(t, backend);
    if (!started) return;
    const { berth } = started;
    for (let round = 0; round < 5; round++) {
      const loc = await startSession(berth.url, 'race/queued');
      const first = openRequest(berth.url, 'PATCH', loc);
      await first.write(randomBytes(64 * 1024));
      const second = openRequest(berth.url, 'PATCH', loc);
      await second.write(randomBytes(1024));
      await sleep(150);
      second.abort(); // queued behind `first`: its client goes away
      await sleep(300);
      first.abort();
      await sleep(200);
      await alive(berth);
    }
    assert.doesNotMatch(berth.logs(), /unexpected error|uncaught|unhandled/i, berth.logs().slice(-3000));
  });

  test(`${backend}: a PUT during a PATCH never publishes bytes that do not match the digest`, async (t) => {
    const started = await startOn(t, backend);
    if (!started) return;
    const { berth, config } = started;
    const whole = randomBytes(30_000);
    const part = whole.subarray(0, 20_000);
    const partDigest = sha256(part);
    const loc = await startSession(berth.url, 'race/poison');
    const patch = openRequest(berth.url, 'PATCH', loc);
    await patch.write(part);
    await sleep(300); // the first 20,000 bytes are stored by now
    const put = raw(berth.url, 'PUT', `${loc}?digest=${partDigest}`);
    await sleep(300);
    patch.end(whole.subarray(20_000));
    const [putStatus, patchStatus] = await Promise.all([put.then((r) => r.status), patch.response]);
    // Either order is legal (PUT first: 201 with exactly the 20,000 bytes; PATCH first: the PUT's digest no longer
    // matches → 400), but the digest must always name the bytes stored under it.
    assert.ok([201, 400, 404].includes(putStatus), `PUT answered ${putStatus}`);
    assert.ok([202, 404, 416, -1].includes(patchStatus), `PATCH answered ${patchStatus}`);
    // Before the fix this GET failed to parse: the server announced the 20,000 verified bytes and sent the 30,000
    // that the PATCH had gone on writing into the published file.
    const got = await raw(berth.url, 'GET', `/v2/race/poison/blobs/${partDigest}`);
    if (putStatus === 201) {
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), partDigest, 'the blob served under the digest must hash to it');
      assert.equal(got.body.length, part.length);
    } else {
      assert.equal(got.status, 404);
    }
    if (backend === 'filesystem') {
      await berth.stop(); // after a restart too: what is on disk is what the digest names
      await berth.restart();
      const again = await raw(berth.url, 'GET', `/v2/race/poison/blobs/${partDigest}`);
      if (again.status === 200) assert.equal(sha256(again.body), partDigest);
    }
    const { code, report } = await fsck(berth, config);
    assert.equal(code, 0, JSON.stringify(report));
    assert.deepEqual(report.bad, []);
  });

  test(`${backend}: concurrent PATCH/PUT/DELETE storm with random disconnects leaves only verified blobs`, async (t) => {
    const started = await startOn(t, backend);
    if (!started) return;
    const { berth, config } = started;
    const deadline = Date.now() + Number(process.env.BERTH_STORM_MS ?? 12_000);
    const sessions: string[] = [];
    const contents = Array.from({ length: 4 }, () => randomBytes(randomInt(1, 96 * 1024)));
    let created = 0;
    const inFlight = new Map<number, string>();
    let seq = 0;
    const worker = async () => {
      while (Date.now() < deadline) {
        const op = seq++;
        if (sessions.length < 4 || Math.random() < 0.15)
          sessions.push(await startSession(berth.url, `storm/r${randomInt(3)}`));
        const loc = sessions[randomInt(sessions.length)];
        const data = contents[randomInt(contents.length)];
        const action = randomInt(10);
        inFlight.set(op, `action ${action} on ${loc}`);
        if (action < 5) {
          // PATCH the whole content or a prefix, sometimes cut off half-way.
          const r = openRequest(berth.url, 'PATCH', loc);
          const cut = randomInt(1, data.length + 1);
          await r.write(data.subarray(0, cut));
          if (Math.random() < 0.3) {
            await sleep(randomInt(30));
            r.abort();
          } else {
            r.end(data.subarray(cut));
          }
          await r.response;
        } else if (action < 8) {
          const target = contents[randomInt(contents.length)];
          const prefix = target.subarray(0, randomInt(1, target.length + 1));
          const digest = Math.random() < 0.5 ? sha256(target) : sha256(prefix);
          const status = (await raw(berth.url, 'PUT', `${loc}?digest=${digest}`).catch(() => ({ status: -1 }))).status;
          if (status === 201) created++;
        } else if (action < 9) {
          await raw(berth.url, 'DELETE', loc).catch(() => {});
        } else {
          // A PUT with a last chunk, cut off.
          const r = openRequest(berth.url, 'PUT', `${loc}?digest=${sha256(data)}`);
          await r.write(data.subarray(0, Math.max(1, data.length >> 1)));
          r.abort();
          await r.response;
        }
        inFlight.delete(op);
      }
    };
    const stuck = setTimeout(
      () =>
        console.error(
          `storm still running: ${[...inFlight.values()].join('; ')}; server log:\n${berth.logs().slice(-4000)}`,
        ),
      40_000,
    );
    await Promise.all(Array.from({ length: 8 }, worker));
    clearTimeout(stuck);
    await sleep(500);
    await alive(berth);
    // Clients that leave are not server faults: nothing may be logged as an unexpected error (a 500).
    assert.doesNotMatch(berth.logs(), /unexpected error|uncaught|unhandled/i, berth.logs().slice(-3000));
    const { code, report } = await fsck(berth, config);
    assert.equal(code, 0, JSON.stringify(report));
    assert.deepEqual(report.bad, []);
    assert.ok(report.checked >= 1, `the storm should have published blobs (${created} PUTs answered 201)`);
  });
}

test('berth fsck quarantines a blob whose bytes do not match its digest; an honest push repairs it', async (t) => {
  const berth = await startBerth(t, { config: 'log: { requests: false }\n' });
  const good = randomBytes(10_000);
  const digest = sha256(good);
  assert.equal(
    (await raw(berth.url, 'POST', `/v2/team/app/blobs/uploads/?digest=${digest}`, { body: good })).status,
    201,
  );
  const hex = digest.slice('sha256:'.length);
  const file = join(berth.root, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
  assert.deepEqual(await readFile(file), good);
  await writeFile(file, Buffer.concat([good, Buffer.from('poison')])); // what the old race left behind

  const dry = await fsck(berth, undefined, ['--dry-run']);
  assert.equal(dry.code, 3, 'a damaged blob makes fsck fail (exit 3), also in a dry run');
  assert.deepEqual(
    dry.report.bad.map((b) => b.digest),
    [digest],
  );
  assert.equal(dry.report.quarantined, 0);
  assert.equal((await raw(berth.url, 'GET', `/v2/team/app/blobs/${digest}`)).status, 200, 'a dry run changes nothing');

  const repair = await fsck(berth, undefined);
  assert.equal(repair.code, 3);
  assert.equal(repair.report.quarantined, 1);
  const quarantine = join(berth.root, 'quarantine', 'sha256');
  assert.deepEqual(await readdir(quarantine), [hex], 'the bad bytes are kept aside for inspection');
  // The damaged bytes are no longer served under a digest they do not match.
  assert.equal((await raw(berth.url, 'GET', `/v2/team/app/blobs/${digest}`)).status, 404);

  // An honest push of the same content stores it again (the data was missing, so it is written, not reused).
  assert.equal(
    (await raw(berth.url, 'POST', `/v2/other/app/blobs/uploads/?digest=${digest}`, { body: good })).status,
    201,
  );
  const got = await raw(berth.url, 'GET', `/v2/team/app/blobs/${digest}`);
  assert.equal(got.status, 200);
  assert.equal(sha256(got.body), digest);
  const after = await fsck(berth, undefined);
  assert.equal(after.code, 0);
  assert.deepEqual(after.report.bad, []);
});
