// What a preset (`preset: node`, `preset: go`) gives the build: the layers it makes for a platform, put after the
// base's and before the spec's own, and config defaults that the spec's `config:` overrides.
import type { ImageConfigSpec } from '../spec/build-spec.js';
import type { Platform } from '../spec/manifest.js';
import { parseMode, type FileProperties } from '../spec/build-spec.js';
import type { ContextFile } from './context.js';
import type { LayerPlan, Member } from './plan.js';

export interface Preset {
  /** The layer names it makes (a spec layer may not reuse one). */
  readonly layerNames: readonly string[];
  layers(platform: Platform): Promise<LayerPlan[]>;
  config: ImageConfigSpec;
}

/** A context file as a layer member, like plan.ts's members for `src:` entries: spec-level properties apply; a file keeps only its executable bit. */
export function contextMember(path: string, f: ContextFile, props: FileProperties): Member {
  const owner = { uid: props.uid ?? 0, gid: props.gid ?? 0, uname: props.user, gname: props.group };
  if (f.kind === 'directory')
    return { path, type: 'directory', mode: parseMode(props.dirMode ?? '0755'), ...owner, size: 0 };
  if (f.kind === 'symlink') return { path, type: 'symlink', mode: 0o777, ...owner, size: 0, linkname: f.linkname };
  return {
    path,
    type: 'file',
    mode: props.mode ? parseMode(props.mode) : f.executable ? 0o755 : 0o644,
    ...owner,
    size: f.size,
    source: { abs: f.abs, stats: f.stats },
  };
}
