// Platforms as written on command lines and in build specs: `os/arch[/variant]`, e.g. `linux/arm64/v8`.
import type { Platform } from './manifest.js';

/**
 * One part of a platform: lowercase letters and digits, `.` `_` `-` only between them. So never `.` or `..` — a
 * platform is substituted into paths (`src: dist/{arch}/app`) and directory names, where those would escape.
 */
const PART = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const PART_NAMES = ['os', 'architecture', 'variant'];

export function parsePlatform(value: string): Platform {
  const parts = value.split('/');
  const shown = JSON.stringify(value.slice(0, 100));
  if (parts.length < 2 || parts.length > 3) {
    throw new Error(`invalid platform ${shown}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8`);
  }
  const bad = parts.findIndex((p) => !PART.test(p));
  if (bad >= 0) {
    throw new Error(
      `invalid platform ${shown}: ${JSON.stringify(parts[bad].slice(0, 40))} is not a valid ${PART_NAMES[bad]} ` +
        '(lowercase letters and digits, with . _ - only between them); expected os/arch[/variant], e.g. linux/amd64',
    );
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

/**
 * A build spec's `platforms` (default linux/amd64), narrowed to `only` when given — each wanted platform by the
 * listed one it matches, in `only`'s order. `missing` is the first wanted platform the spec does not list.
 */
export function selectPlatforms(
  listed: string[] | undefined,
  only?: Platform[],
): { all: Platform[]; picked: Platform[]; missing?: Platform } {
  const all = (listed ?? ['linux/amd64']).map((p) => parsePlatform(p));
  if (!only?.length) return { all, picked: all };
  const picked: Platform[] = [];
  for (const w of only) {
    const hit = all.find((p) => platformMatches(p, w));
    if (!hit) return { all, picked, missing: w };
    picked.push(hit);
  }
  return { all, picked };
}
