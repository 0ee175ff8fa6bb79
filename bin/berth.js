#!/usr/bin/env node
// The `berth` executable: runs the compiled CLI (npm ci / npm run build produce dist/).
// V8's compile cache (Node ≥ 22.1; in the OS temp dir, or NODE_COMPILE_CACHE) keeps the ~190 modules a `berth build`
// loads as bytecode: their load goes from ~110 to ~80 ms, on every short CLI run. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
import module from 'node:module';

module.enableCompileCache?.();
await import('../dist/pkg-cli/main.js');
