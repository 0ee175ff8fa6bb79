#!/usr/bin/env node
// The `berth` executable: runs the compiled CLI (npm ci / npm run build produce dist/).
await import('../dist/pkg-cli/main.js');
