// Bad input gets the right OCI error, and nothing is stored: the storage tree is compared before and after.
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { startBerth } from './support/berth.js';
import { raw, sha256, pushBlob, imageManifest, pushManifest, type RawResponse } from './support/registry-client.js';

/** Every file under the storage root with its size (temp files excluded): the registry's whole visible state. */
async function snapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string): Promise<void> {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = join(dir, e.name);
      if (e.name === '_tmp') continue;
      if (e.isDirectory()) await walk(p);
      else out.push(`${relative(root, p)}:${(await stat(p)).size}`);
    }
  }
  await walk(root);
  return out.sort();
}

function expectError(res: RawResponse, status: number, code: string): void {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status} ${res.body}`);
  if (res.body.length) assert.equal(res.json().errors[0].code, code, res.body.toString());
}

test('bad input: right OCI error, nothing stored', async (t) => {
  const berth = await startBerth(t, { config: 'storage:\n  maxManifestBytes: 8388608\n' });
  const base = berth.url;
  const configBlob = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const layerBlob = Buffer.from('layer-bytes-'.repeat(100));
  const config = { digest: await pushBlob(base, 'good/repo', configBlob), size: configBlob.length };
  const layer = { digest: await pushBlob(base, 'good/repo', layerBlob), size: layerBlob.length };
  const good = imageManifest(config, [layer]);
  assert.equal((await pushManifest(base, 'good/repo', 'v1', good)).status, 201);

  /** Runs `fn` and asserts the storage tree did not change. */
  async function unchanged(label: string, fn: () => Promise<void>): Promise<void> {
    const before = await snapshot(berth.root);
    await fn();
    assert.deepEqual(await snapshot(berth.root), before, `${label}: storage changed`);
  }

  await t.test('invalid repository names → 400 NAME_INVALID', async () => {
    for (const name of [
      'Upper/case',
      'a/../b',
      'a/%2e%2e/b',
      'a//b',
      '-lead',
      'trail-',
      'x'.repeat(256),
      'a/./b',
      'a%2fb',
    ]) {
      await unchanged(name, async () => {
        expectError(await raw(base, 'GET', `/v2/${name}/tags/list`), 400, 'NAME_INVALID');
        expectError(await raw(base, 'POST', `/v2/${name}/blobs/uploads/`), 400, 'NAME_INVALID');
        expectError(await pushManifest(base, name, 'v1', good), 400, 'NAME_INVALID');
      });
    }
  });

  await t.test('invalid tags → 400 TAG_INVALID', async () => {
    for (const tag of ['-bad', '.bad', 'a'.repeat(129), 'bad%20tag', 'b@d']) {
      await unchanged(tag, async () =>
        expectError(await pushManifest(base, 'good/repo', tag, good), 400, 'TAG_INVALID'),
      );
    }
  });

  await t.test('malformed digests and unknown algorithms → 400 DIGEST_INVALID', async () => {
    const bad = [
      'sha256:xyz',
      `sha256:${'a'.repeat(63)}`,
      `sha256:${'A'.repeat(64)}`,
      `md5:${'a'.repeat(32)}`,
      `sha512:${'a'.repeat(64)}`,
      'sha256',
      'nocolon',
    ];
    for (const d of bad) {
      await unchanged(d, async () => {
        expectError(await raw(base, 'GET', `/v2/good/repo/blobs/${d}`), 400, 'DIGEST_INVALID');
        expectError(
          await raw(base, 'POST', `/v2/good/repo/blobs/uploads/?digest=${d}`, { body: 'x' }),
          400,
          'DIGEST_INVALID',
        );
      });
    }
  });

  await t.test('digest mismatch on every upload path → 400 DIGEST_INVALID, no blob, no session', async () => {
    const data = Buffer.from('payload that will not match');
    const wrong = sha256('something else');
    await unchanged('single POST', async () => {
      expectError(
        await raw(base, 'POST', `/v2/good/repo/blobs/uploads/?digest=${wrong}`, { body: data }),
        400,
        'DIGEST_INVALID',
      );
    });
    await unchanged('POST + monolithic PUT', async () => {
      const loc = (await raw(base, 'POST', '/v2/good/repo/blobs/uploads/')).header('location')!;
      expectError(await raw(base, 'PUT', `${loc}?digest=${wrong}`, { body: data }), 400, 'DIGEST_INVALID');
      expectError(await raw(base, 'GET', loc), 404, 'BLOB_UPLOAD_UNKNOWN');
    });
    await unchanged('chunked PATCH + PUT', async () => {
      const loc = (await raw(base, 'POST', '/v2/good/repo/blobs/uploads/')).header('location')!;
      assert.equal(
        (await raw(base, 'PATCH', loc, { body: data.subarray(0, 10), headers: { 'Content-Range': '0-9' } })).status,
        202,
      );
      assert.equal((await raw(base, 'PATCH', loc, { body: data.subarray(10) })).status, 202);
      expectError(await raw(base, 'PUT', `${loc}?digest=${wrong}`), 400, 'DIGEST_INVALID');
    });
    await unchanged('PATCH + PUT with final chunk', async () => {
      const loc = (await raw(base, 'POST', '/v2/good/repo/blobs/uploads/')).header('location')!;
      await raw(base, 'PATCH', loc, { body: data.subarray(0, 5) });
      expectError(
        await raw(base, 'PUT', `${loc}?digest=${wrong}`, {
          body: data.subarray(5),
          headers: { 'Content-Range': `5-${data.length - 1}` },
        }),
        400,
        'DIGEST_INVALID',
      );
    });
    expectError(await raw(base, 'HEAD', `/v2/good/repo/blobs/${sha256(data)}`), 404, 'BLOB_UNKNOWN');
  });

  await t.test('out-of-order, overlapping and mismatched chunks → 416, upload unchanged', async () => {
    const loc = (await raw(base, 'POST', '/v2/good/repo/blobs/uploads/')).header('location')!;
    assert.equal(
      (await raw(base, 'PATCH', loc, { body: '0123456789', headers: { 'Content-Range': '0-9' } })).status,
      202,
    );
    for (const [range, body] of [
      ['20-29', '0123456789'],
      ['5-14', '0123456789'],
      ['0-9', '0123456789'],
      ['10-19', 'short'],
    ] as const) {
      await unchanged(range, async () => {
        const res = await raw(base, 'PATCH', loc, { body, headers: { 'Content-Range': range } });
        expectError(res, 416, 'RANGE_INVALID');
      });
    }
    const status = await raw(base, 'GET', loc);
    assert.equal(status.status, 204);
    assert.equal(status.header('range'), '0-9');
    const res = await raw(base, 'PUT', `${loc}?digest=${sha256('0123456789abc')}`, {
      body: 'abc',
      headers: { 'Content-Range': '10-12' },
    });
    assert.equal(res.status, 201, res.body.toString());
  });

  await t.test('an upload session is bound to its repository', async () => {
    const loc = (await raw(base, 'POST', '/v2/good/repo/blobs/uploads/')).header('location')!;
    const id = loc.split('/').pop();
    await unchanged('foreign id', async () => {
      expectError(
        await raw(base, 'PATCH', `/v2/other/repo/blobs/uploads/${id}`, { body: 'x' }),
        404,
        'BLOB_UPLOAD_UNKNOWN',
      );
      expectError(
        await raw(base, 'PUT', `/v2/other/repo/blobs/uploads/${id}?digest=${sha256('')}`),
        404,
        'BLOB_UPLOAD_UNKNOWN',
      );
      expectError(await raw(base, 'GET', `/v2/other/repo/blobs/uploads/${id}`), 404, 'BLOB_UPLOAD_UNKNOWN');
      expectError(await raw(base, 'DELETE', `/v2/other/repo/blobs/uploads/${id}`), 404, 'BLOB_UPLOAD_UNKNOWN');
      expectError(await raw(base, 'GET', `/v2/good/repo/blobs/uploads/..%2f..%2fetc`), 404, 'BLOB_UPLOAD_UNKNOWN');
    });
    assert.equal((await raw(base, 'DELETE', loc)).status, 204);
  });

  await t.test('manifests: missing blobs, ambiguous or mismatched types, oversized', async () => {
    const missing = imageManifest(config, [{ digest: sha256('not pushed'), size: 10 }]);
    await unchanged('missing blob', async () =>
      expectError(await pushManifest(base, 'good/repo', 'm1', missing), 400, 'MANIFEST_BLOB_UNKNOWN'),
    );
    const otherRepo = imageManifest(config, [layer]);
    await unchanged('blob of another repository', async () =>
      expectError(await pushManifest(base, 'other/repo', 'm1', otherRepo), 400, 'MANIFEST_BLOB_UNKNOWN'),
    );
    const ambiguous = [
      imageManifest(config, [layer], { manifests: [] }),
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [],
          layers: [],
        }),
      ),
    ];
    await unchanged('image with manifests', async () =>
      expectError(await pushManifest(base, 'good/repo', 'a1', ambiguous[0]), 400, 'MANIFEST_INVALID'),
    );
    await unchanged('index with layers', async () =>
      expectError(
        await pushManifest(base, 'good/repo', 'a2', ambiguous[1], 'application/vnd.oci.image.index.v1+json'),
        400,
        'MANIFEST_INVALID',
      ),
    );
    await unchanged('mediaType contradicts Content-Type', async () =>
      expectError(
        await pushManifest(base, 'good/repo', 'a3', good, 'application/vnd.docker.distribution.manifest.v2+json'),
        400,
        'MANIFEST_INVALID',
      ),
    );
    await unchanged('not JSON', async () =>
      expectError(await pushManifest(base, 'good/repo', 'a4', Buffer.from('{nope')), 400, 'MANIFEST_INVALID'),
    );
    await unchanged('schema violation', async () =>
      expectError(
        await pushManifest(
          base,
          'good/repo',
          'a5',
          Buffer.from(JSON.stringify({ schemaVersion: 2, config: {}, layers: 'x' })),
        ),
        400,
        'MANIFEST_INVALID',
      ),
    );
    await unchanged('digest reference mismatch', async () =>
      expectError(await pushManifest(base, 'good/repo', sha256('other'), good), 400, 'DIGEST_INVALID'),
    );
    // 4 MiB manifests are accepted; above the configured cap (8 MiB here) → 413.
    const big = imageManifest(config, [layer], { annotations: { pad: 'x'.repeat(4 * 1024 * 1024) } });
    assert.equal((await pushManifest(base, 'good/repo', 'big', big)).status, 201);
    const huge = imageManifest(config, [layer], { annotations: { pad: 'x'.repeat(8 * 1024 * 1024) } });
    await unchanged('oversized', async () =>
      expectError(await pushManifest(base, 'good/repo', 'huge', huge), 413, 'MANIFEST_TOO_BIG'),
    );
  });

  await t.test(
    'manifests with more than one meaning, or sizes that are not the stored sizes → 400 MANIFEST_INVALID',
    async () => {
      const text = good.toString();
      const cases: Record<string, [Buffer, RegExp]> = {
        'duplicate key': [
          Buffer.from(text.replace('{"schemaVersion":2,', '{"schemaVersion":2,"schemaVersion":2,')),
          /duplicate key "\/schemaVersion"/,
        ],
        'duplicate key inside a descriptor': [
          Buffer.from(
            text.replace(`"digest":"${layer.digest}"`, `"digest":"${layer.digest}","digest":"${config.digest}"`),
          ),
          /duplicate key "\/layers\/0\/digest"/,
        ],
        'invalid UTF-8': [
          Buffer.concat([
            Buffer.from(`${text.slice(0, -1)},"annotations":{"a":"`),
            Buffer.from([0xff, 0xfe]),
            Buffer.from('"}}'),
          ]),
          /not valid UTF-8/,
        ],
        'byte order mark': [Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), good]), /byte order mark/],
        'lone surrogate': [Buffer.from(`${text.slice(0, -1)},"annotations":{"a":"\\udc00"}}`), /lone surrogate/],
        'size beyond 2^53': [
          Buffer.from(text.replace(`"size":${layer.size}`, '"size":9007199254740993')),
          /beyond 2\^53/,
        ],
        'layer size smaller than the blob': [
          imageManifest(config, [{ ...layer, size: layer.size - 1 }]),
          /\/layers\/0\/size is 1199 but .* has 1200 bytes/,
        ],
        'layer size larger than the blob': [
          imageManifest(config, [{ ...layer, size: layer.size + 100 }]),
          /\/layers\/0\/size is 1300/,
        ],
        'config size': [imageManifest({ ...config, size: 1 }, [layer]), /\/config\/size is 1 but/],
      };
      for (const [label, [body, message]] of Object.entries(cases)) {
        await unchanged(label, async () => {
          const res = await pushManifest(base, 'good/repo', 'strict', body);
          expectError(res, 400, 'MANIFEST_INVALID');
          assert.match(res.json().errors[0].message, message, label);
        });
        // By digest too: the bytes' digest must not become a stored revision.
        await unchanged(`${label} (by digest)`, async () =>
          expectError(await pushManifest(base, 'good/repo', sha256(body), body), 400, 'MANIFEST_INVALID'),
        );
      }
      // A child of an index must have the size of the stored child manifest.
      const goodDigest = sha256(good);
      const index = (size: number) =>
        Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: 'application/vnd.oci.image.index.v1+json',
            manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: goodDigest, size }],
          }),
        );
      await unchanged('index child size', async () => {
        const res = await pushManifest(
          base,
          'good/repo',
          sha256(index(good.length + 1)),
          index(good.length + 1),
          'application/vnd.oci.image.index.v1+json',
        );
        expectError(res, 400, 'MANIFEST_INVALID');
        assert.match(res.json().errors[0].message, /\/manifests\/0\/size is \d+ but/);
        assert.equal(res.json().errors[0].detail.field, '/manifests/0/size');
      });
      // (by digest: the tag list is asserted below)
      assert.equal(
        (
          await pushManifest(
            base,
            'good/repo',
            sha256(index(good.length)),
            index(good.length),
            'application/vnd.oci.image.index.v1+json',
          )
        ).status,
        201,
      );
    },
  );

  await t.test('Range abuse on blob GET', async () => {
    const url = `/v2/good/repo/blobs/${layer.digest}`;
    const ok = await raw(base, 'GET', url, { headers: { Range: 'bytes=0-9' } });
    assert.equal(ok.status, 206);
    assert.equal(ok.header('content-range'), `bytes 0-9/${layer.size}`);
    assert.equal(ok.body.toString(), layerBlob.subarray(0, 10).toString());
    const suffix = await raw(base, 'GET', url, { headers: { Range: 'bytes=-5' } });
    assert.equal(suffix.status, 206);
    assert.equal(suffix.body.toString(), layerBlob.subarray(-5).toString());
    for (const r of [
      'bytes=10-5',
      `bytes=${layer.size}-`,
      `bytes=${layer.size + 10}-${layer.size + 20}`,
      'bytes=-0',
      'bytes=abc',
      'bytes=-',
    ]) {
      const res = await raw(base, 'GET', url, { headers: { Range: r } });
      expectError(res, 416, 'RANGE_INVALID');
      assert.equal(res.header('content-range'), `bytes */${layer.size}`);
    }
    // A unit other than bytes is ignored (RFC 9110 §14.2): the whole blob, 200.
    for (const r of ['items=0-1', 'rows=5-']) {
      const res = await raw(base, 'GET', url, { headers: { Range: r } });
      assert.equal(res.status, 200, r);
      assert.equal(res.header('content-range'), undefined);
      assert.deepEqual(res.body, layerBlob);
    }
    const many = await raw(base, 'GET', url, {
      headers: { Range: `bytes=${Array.from({ length: 200 }, (_, i) => `${i}-${i}`).join(',')}` },
    });
    expectError(many, 400, 'RANGE_INVALID');
  });

  await t.test('pagination: n=-1|abc|1e18 → 400; huge n is capped', async () => {
    for (const n of ['-1', 'abc', '1e18', '1.5', '']) {
      expectError(await raw(base, 'GET', `/v2/good/repo/tags/list?n=${n}`), 400, 'PAGINATION_NUMBER_INVALID');
      expectError(await raw(base, 'GET', `/v2/_catalog?n=${n}`), 400, 'PAGINATION_NUMBER_INVALID');
    }
    const capped = await raw(base, 'GET', '/v2/good/repo/tags/list?n=9999999999');
    assert.equal(capped.status, 200);
    assert.deepEqual(capped.json().tags, ['big', 'v1']);
    const zero = await raw(base, 'GET', '/v2/good/repo/tags/list?n=0');
    assert.deepEqual(zero.json().tags, []);
    assert.equal(zero.header('link'), undefined);
    const one = await raw(base, 'GET', '/v2/good/repo/tags/list?n=1');
    assert.deepEqual(one.json().tags, ['big']);
    assert.equal(one.header('link'), '</v2/good/repo/tags/list?n=1&last=big>; rel="next"');
  });

  await t.test('unknown things → 404 with the right code', async () => {
    expectError(await raw(base, 'GET', '/v2/good/repo/manifests/nope'), 404, 'MANIFEST_UNKNOWN');
    expectError(await raw(base, 'GET', `/v2/good/repo/blobs/${sha256('nope')}`), 404, 'BLOB_UNKNOWN');
    expectError(await raw(base, 'GET', '/v2/never/pushed/tags/list'), 404, 'NAME_UNKNOWN');
    expectError(
      await raw(base, 'PATCH', '/v2/good/repo/blobs/uploads/AAAAAAAAAAAAAAAAAAAAAAAA', { body: 'x' }),
      404,
      'BLOB_UPLOAD_UNKNOWN',
    );
    // Unknown endpoints: 404, not 405 (405 is for a known endpoint's wrong method).
    for (const [method, path] of [
      ['GET', '/v2/good/repo/unknown'],
      ['PUT', '/v2/good/repo/blobs/uploads/x/y'],
      ['GET', '/v2/good/repo/tags'],
      ['POST', '/v2/good/repo/nothing'],
    ]) {
      await unchanged(path, async () =>
        expectError(await raw(base, method, path, method === 'GET' ? {} : { body: 'x' }), 404, 'NOT_FOUND'),
      );
    }
    expectError(await raw(base, 'POST', '/v2/good/repo/tags/list', { body: 'x' }), 405, 'UNSUPPORTED');
  });
});

test('deletes disabled → 405 UNSUPPORTED on every deleting route, nothing removed', async (t) => {
  const berth = await startBerth(t, { config: 'storage:\n  delete: false\n' });
  const blob = Buffer.from('{}');
  const digest = await pushBlob(berth.url, 'd/repo', blob);
  const manifest = imageManifest({ digest, size: 2 }, []);
  const put = await pushManifest(berth.url, 'd/repo', 't1', manifest);
  assert.equal(put.status, 201);
  const before = await snapshot(berth.root);
  expectError(await raw(berth.url, 'DELETE', `/v2/d/repo/blobs/${digest}`), 405, 'UNSUPPORTED');
  expectError(await raw(berth.url, 'DELETE', '/v2/d/repo/manifests/t1'), 405, 'UNSUPPORTED');
  expectError(
    await raw(berth.url, 'DELETE', `/v2/d/repo/manifests/${put.header('docker-content-digest')}`),
    405,
    'UNSUPPORTED',
  );
  assert.deepEqual(await snapshot(berth.root), before);
});
