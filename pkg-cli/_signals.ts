// Ctrl-C (SIGINT) or SIGTERM during a transfer: remove the temp files being written (client/temp.ts) and exit
// with the shell's code for the signal (128 + n). Downloads in progress are kept as `<file>.partial`, which the next
// run resumes; nothing else is left behind. Installed by the transfer verbs only: `serve` has its own shutdown.
import { removeTempsSync } from '../client/temp.js';

let _installed = false;

export function exitCleanlyOnSignals(): void {
  if (_installed) return;
  _installed = true;
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      removeTempsSync();
      process.stderr.write(`\nberth: interrupted (${signal}); partial downloads are kept and resume on the next run\n`);
      process.exit(code);
    });
  }
}
