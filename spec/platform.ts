// Platforms as written on command lines and in build specs: `os/arch[/variant]`, e.g. `linux/arm64/v8`.
import type { Platform } from './manifest.js';

export function parsePlatform(value: string): Platform {
  const parts = value.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/.test(p))) {
    throw new Error(`invalid platform "${value}": expected os/arch[/variant], e.g. linux/amd64`);
  }
  const [os, architecture, variant] = parts;
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** True when `candidate` satisfies `wanted` (a missing variant in `wanted` matches any; arm64 defaults to v8). */
export function platformMatches(candidate: Platform | undefined, wanted: Platform): boolean {
  if (!candidate) return false;
  if (candidate.os !== wanted.os || candidate.architecture !== wanted.architecture) return false;
  if (!wanted.variant) return true;
  const norm = (p: Platform) => p.variant ?? (p.architecture === 'arm64' ? 'v8' : undefined);
  return norm(candidate) === norm(wanted);
}
