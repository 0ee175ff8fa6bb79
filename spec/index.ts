// spec/: the OCI data model. Pure — no I/O, imports nothing else from the project.
export * from './digest.js';
export * from './reference.js';
export * from './media-types.js';
export * from './manifest.js';
export * from './json.js';
export * from './canonical-json.js';
export * from './platform.js';
export * from './errors.js';
