#!/usr/bin/env node
// Turns Kubernetes' own OpenAPI document (api/openapi-spec/swagger.json in the k8s.io/kubernetes Go module) into
// the JSON Schemas kubeconform reads: one file per kind, `$ref`s inlined ("standalone") and unknown fields refused
// ("strict": additionalProperties false), named <kind>[-<group>]-<version>.json like kubeconform's schema registry.
// Usage: node .ci/k8s-schemas.mjs SWAGGER_JSON OUT_DIR
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [swaggerPath, out] = process.argv.slice(2);
if (!swaggerPath || !out) {
  console.error('usage: k8s-schemas.mjs SWAGGER_JSON OUT_DIR');
  process.exit(2);
}
const defs = JSON.parse(readFileSync(swaggerPath, 'utf8')).definitions;
const INT_OR_STRING = { oneOf: [{ type: 'string' }, { type: 'integer' }] };

function convert(schema, stack) {
  if (Array.isArray(schema)) return schema.map((s) => convert(s, stack));
  if (!schema || typeof schema !== 'object') return schema;
  if (schema.$ref) {
    const name = schema.$ref.replace('#/definitions/', '');
    if (name === 'io.k8s.apimachinery.pkg.util.intstr.IntOrString') return INT_OR_STRING;
    if (name === 'io.k8s.apimachinery.pkg.api.resource.Quantity')
      return { oneOf: [{ type: 'string' }, { type: 'number' }] };
    if (stack.includes(name)) return {}; // recursive types (JSONSchemaProps): accept anything below
    return convert(defs[name], [...stack, name]);
  }
  if (schema.format === 'int-or-string') return INT_OR_STRING;
  const outSchema = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k.startsWith('x-') || k === 'format') continue;
    outSchema[k] =
      k === 'properties'
        ? Object.fromEntries(Object.entries(v).map(([p, s]) => [p, convert(s, stack)]))
        : convert(v, stack);
  }
  if (outSchema.properties && outSchema.additionalProperties === undefined) outSchema.additionalProperties = false;
  if (outSchema.type === 'object' && !outSchema.properties && outSchema.additionalProperties === undefined)
    outSchema.additionalProperties = true;
  return outSchema;
}

mkdirSync(out, { recursive: true });
let n = 0;
for (const [name, def] of Object.entries(defs)) {
  for (const gvk of def['x-kubernetes-group-version-kind'] ?? []) {
    if (name.startsWith('io.k8s.apimachinery.')) continue; // meta types (Status, WatchEvent, …)
    const group = gvk.group ? `-${gvk.group.split('.')[0].toLowerCase()}` : '';
    const file = `${gvk.kind.toLowerCase()}${group}-${gvk.version.toLowerCase()}.json`;
    const schema = convert(def, [name]);
    schema.$schema = 'http://json-schema.org/schema#';
    writeFileSync(join(out, file), JSON.stringify(schema));
    n++;
  }
}
console.log(`wrote ${n} schemas to ${out}`);
