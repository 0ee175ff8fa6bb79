// zstd-napi is a native addon that may be missing (installed with scripts blocked, an unsupported platform, a
// bundler that dropped the .node file). It is loaded on first use of zstd only, so gzip builds and every other
// command work without it, and a zstd build that cannot load it fails with one message naming the fix.
// BERTH_ZSTD_MODULE names the module to load instead of `zstd-napi` (tests use it to simulate the addon's absence).
import { createRequire } from 'node:module';

type ZstdModule = typeof import('zstd-napi');

export interface Zstd {
  CompressStream: ZstdModule['CompressStream'];
  DecompressStream: ZstdModule['DecompressStream'];
  decompress: ZstdModule['decompress'];
  /** The libzstd version: part of the layer cache key (output bytes may change with it). */
  version: string;
}

/** zstd was asked for and its addon cannot be loaded. */
export class ZstdUnavailableError extends Error {}

let _loaded: Promise<Zstd> | undefined;

/** The zstd implementation, loaded once; rejects with ZstdUnavailableError when the addon is unavailable. */
export function loadZstd(): Promise<Zstd> {
  _loaded ??= _load().catch((e) => {
    _loaded = undefined;
    throw e;
  });
  return _loaded;
}

async function _load(): Promise<Zstd> {
  const name = process.env.BERTH_ZSTD_MODULE || 'zstd-napi';
  try {
    const mod = (await import(name)) as ZstdModule;
    // The binding is CommonJS without named ESM exports; require() gives its functions.
    const binding = createRequire(import.meta.url)(`${name}/binding.js`) as { versionString(): string };
    return {
      CompressStream: mod.CompressStream,
      DecompressStream: mod.DecompressStream,
      decompress: mod.decompress,
      version: binding.versionString(),
    };
  } catch (e) {
    const why = ((e as Error).message ?? String(e)).split('\n')[0];
    throw new ZstdUnavailableError(
      `zstd needs the native addon ${name}, which cannot be loaded (${why}); reinstall with its install script ` +
        `allowed (\`npm ci\`; package.json "allowScripts" lists zstd-napi) or use \`compression: gzip\``,
    );
  }
}
