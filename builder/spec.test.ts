import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSpec, BuildSpecError } from './spec.js';

const head = 'apiVersion: berth/v1\nkind: Image\n';

function err(text: string): string {
  try {
    parseSpec(text);
  } catch (e) {
    assert.ok(e instanceof BuildSpecError, String(e));
    return e.message;
  }
  assert.fail('expected an error');
}

test('a valid spec loads and keeps its values', () => {
  const { spec } = parseSpec(
    `${head}platforms: [linux/amd64, linux/arm64]\nepoch: 42\ncompression: zstd\nlayers:\n  - name: app\n    files:\n      - { src: "dist/{arch}/app", dest: /usr/local/bin/app, mode: "0755" }\n      - { inline: "hi\\n", dest: /etc/motd }\n      - { symlink: /usr/local/bin/app, dest: /app }\n      - { directory: /var/lib/app, uid: 65532 }\nconfig: { entrypoint: [/app], env: { PORT: "8080" }, exposedPorts: [8080] }\n`,
  );
  assert.equal(spec.epoch, 42);
  assert.equal(spec.layers![0].files.length, 4);
});

test('errors name file, line and field', () => {
  assert.equal(
    err(`${head}layers:\n  - name: app\n    files:\n      - { src: a, dest: /x, mode: 0644 }\n`),
    'berth.yaml:6 layers[0].files[0].mode: must be an octal string like "0644" (quote it: YAML reads a bare 0644 as decimal)',
  );
  assert.match(
    err(`${head}layers:\n  - name: app\n    files:\n      - src: a\n        dest: /x\n        bogus: 1\n`),
    /^berth\.yaml:8 layers\[0\]\.files\[0\]\.bogus: unknown field "bogus"/,
  );
  assert.equal(
    err(`${head}layers:\n  - name: app\n    files:\n      - dest: /x\n`),
    'berth.yaml:6 layers[0].files[0]: an entry needs one of src, inline, symlink, directory or tar',
  );
  assert.equal(err('apiVersion: berth/v2\nkind: Image\n'), 'berth.yaml:1 apiVersion: must be "berth/v1"');
  assert.equal(err(`${head}compression: lz4\n`), 'berth.yaml:3 compression: must be one of "gzip", "zstd"');
  assert.equal(
    err(`${head}layers:\n  - name: app\n    files:\n      - { src: a, dest: relative }\n`),
    'berth.yaml:6 layers[0].files[0].dest: must be an absolute path in the image, not "relative"',
  );
  assert.match(err(`${head}platforms: [linux]\n`), /^berth\.yaml:3 platforms\[0\]/);
  // A platform is substituted into src paths ({arch}): `..` must never pass as one of its parts.
  assert.equal(
    err(`${head}platforms: [linux/amd64, linux/../amd64]\n`),
    'berth.yaml:3 platforms[1]: invalid platform "linux/../amd64": ".." is not a valid architecture (lowercase letters and digits, with . _ - only between them); expected os/arch[/variant], e.g. linux/amd64',
  );
  assert.match(
    err(`${head}layers:\n  - { name: a, files: [] }\n  - { name: a, files: [] }\n`),
    /^berth\.yaml:5 layers\[1\]\.name: duplicate layer name "a"/,
  );
  assert.match(err(`${head}layers: [\n`), /^berth\.yaml:\d+: invalid YAML/);
  assert.match(err(`${head}kind: Image\n`), /invalid YAML|duplicate/i);
});

test('located errors from later stages use the same shape', () => {
  const l = parseSpec(`${head}layers:\n  - name: app\n    files:\n      - src: "dist/**"\n        dest: /srv/\n`);
  assert.equal(
    l.error(['layers', 0, 'files', 0, 'src'], "no file matches 'dist/**'").message,
    "berth.yaml:6 layers[0].files[0].src: no file matches 'dist/**'",
  );
});
