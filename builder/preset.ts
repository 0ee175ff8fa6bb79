// What a preset (`preset: node`, `preset: go`) gives the build: the layers it makes for a platform, put after the
// base's and before the spec's own, and config defaults that the spec's `config:` overrides.
import type { ImageConfigSpec } from '../spec/build-spec.js';
import type { Platform } from '../spec/manifest.js';
import type { LayerPlan } from './plan.js';

export interface Preset {
  /** The layer names it makes (a spec layer may not reuse one). */
  readonly layerNames: readonly string[];
  layers(platform: Platform): Promise<LayerPlan[]>;
  config: ImageConfigSpec;
}
