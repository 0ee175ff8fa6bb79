// Writes spec/generated/validators.ts (precompiled ajv validators). Run after changing a schema in
// spec/schemas.ts precompiledSchemas: `npm run gen:validators`.
import { writeFileSync } from 'node:fs';
import { GENERATED_FILE, validatorsSource } from '../spec/standalone.js';

const out = new URL(`../${GENERATED_FILE}`, import.meta.url);
writeFileSync(out, validatorsSource());
console.log(`wrote ${GENERATED_FILE}`);
