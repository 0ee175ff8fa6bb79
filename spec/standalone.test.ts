import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { GENERATED_FILE, validatorsSource } from './standalone.js';
import { ajvOptions, descriptorSchema, precompiledSchemas, validator } from './schemas.js';

test('the checked-in precompiled validators match the schemas', () => {
  const checkedIn = readFileSync(new URL(`../${GENERATED_FILE}`, import.meta.url), 'utf8');
  assert.ok(
    checkedIn === validatorsSource(),
    `${GENERATED_FILE} is stale: a schema in spec/schemas.ts precompiledSchemas changed. Run \`npm run gen:validators\` and commit the result.`,
  );
});

test('precompiled validators report the same errors as ajv compiling at run time', () => {
  const runtime = new Ajv({ ...ajvOptions });
  runtime.addSchema(descriptorSchema);
  const spec = precompiledSchemas.validateBuildSpec;
  const cases = [
    { apiVersion: 'berth/v1', kind: 'Image', layers: [{ name: 'app', files: [{ src: 'a', dest: '/a' }] }] },
    { apiVersion: 'berth/v2', kind: 'Image' },
    { apiVersion: 'berth/v1', kind: 'Image', layers: [{ name: 'app', files: [{ src: 'a', dest: 'rel' }] }] },
    { apiVersion: 'berth/v1', kind: 'Image', layers: [{ name: 'app', files: [{ nope: 1 }] }] },
    { apiVersion: 'berth/v1', kind: 'Image', properties: { user: 'x'.repeat(33) } },
  ];
  const fresh = runtime.compile(spec);
  for (const doc of cases) {
    const pre = validator(spec);
    assert.equal(pre(doc), fresh(doc), JSON.stringify(doc));
    assert.deepEqual(pre.errors, fresh.errors, JSON.stringify(doc));
  }
});
