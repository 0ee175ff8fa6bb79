// The table of berth's commands: name → group, one-line summary, and a lazy loader (no self-registration), so
// `berth NAME …` loads only its own module while `berth --help` and did-you-mean need none of them.
// A new command is one module default-exporting defineCommand({...}) plus one row here.
import type { Command } from './command.js';

export type Group = 'images' | 'registry' | 'build' | 'admin';

export const GROUPS: Record<Group, string> = {
  images: 'Images (move and look at images)',
  registry: 'Registry (what a registry holds, and access to it)',
  build: 'Build',
  admin: 'Admin (run and maintain a registry; this tool)',
};

export interface CommandEntry {
  group: Group;
  summary: string;
  load: () => Promise<{ default: Command }>;
  /**
   * Work that can begin from the raw arguments before the command's module is loaded (build: preset go's
   * `go build`). A guess the command confirms; it never throws.
   */
  headStart?: () => Promise<{ default: (args: string[]) => Promise<void> }>;
}

export const COMMANDS: Record<string, CommandEntry> = {
  pull: {
    group: 'images',
    summary: 'download an image to an OCI layout directory or a docker-archive tar',
    load: () => import('./pull.js'),
  },
  push: {
    group: 'images',
    summary: 'upload an OCI layout directory or a docker-archive tar to a registry',
    load: () => import('./push.js'),
  },
  copy: {
    group: 'images',
    summary: 'copy an image (all platforms, optionally referrers) between registries',
    load: () => import('./copy.js'),
  },
  inspect: {
    group: 'images',
    summary: "show a manifest, an index's platforms, or an image config",
    load: () => import('./inspect.js'),
  },
  digest: { group: 'images', summary: 'print the digest a reference resolves to', load: () => import('./digest.js') },
  manifest: {
    group: 'images',
    summary: "print a manifest's exact bytes (verified)",
    load: () => import('./manifest.js'),
  },
  blob: { group: 'images', summary: 'fetch one blob by digest (verified)', load: () => import('./blob.js') },
  mutate: {
    group: 'images',
    summary: "change an image's config or annotations (all platforms of an index)",
    load: () => import('./mutate.js'),
  },
  append: {
    group: 'images',
    summary: 'add a tarball or directory as a new layer on an image',
    load: () => import('./append.js'),
  },
  index: {
    group: 'images',
    summary: 'create or amend a multi-platform index from per-platform images',
    load: () => import('./indexes.js'),
  },
  rebase: {
    group: 'images',
    summary: "swap an image's base layers for a newer base",
    load: () => import('./rebase.js'),
  },
  export: { group: 'images', summary: "flatten an image's filesystem into one tar", load: () => import('./export.js') },
  login: { group: 'registry', summary: 'verify and save registry credentials', load: () => import('./login.js') },
  logout: { group: 'registry', summary: 'remove saved registry credentials', load: () => import('./logout.js') },
  tags: { group: 'registry', summary: 'list the tags of a repository', load: () => import('./tags.js') },
  catalog: { group: 'registry', summary: 'list the repositories of a registry', load: () => import('./catalog.js') },
  tag: { group: 'registry', summary: 'add a tag to an existing manifest', load: () => import('./tag.js') },
  delete: {
    group: 'registry',
    summary: 'delete a manifest (by digest, or the digest a tag points at)',
    load: () => import('./delete.js'),
  },
  sign: {
    group: 'images',
    summary: 'sign an image (cosign simple signing, cosign bundle, or notation) with a key',
    load: () => import('./sign.js'),
  },
  verify: {
    group: 'images',
    summary: "verify an image's cosign or notation signatures against keys or certificates",
    load: () => import('./verify.js'),
  },
  key: {
    group: 'images',
    summary: 'generate a cosign-compatible signing key pair (and a self-signed certificate)',
    load: () => import('./key.js'),
  },
  build: {
    group: 'build',
    summary: 'build a reproducible image from berth.yaml (daemonless, rootless)',
    load: () => import('./build.js'),
    headStart: () => import('./build-head-start.js'),
  },
  config: {
    group: 'admin',
    summary: "check berth's config file or print its defaults; or print an image's config JSON",
    load: () => import('./config.js'),
  },
  passwd: { group: 'admin', summary: 'print a bcrypt password hash for auth.users', load: () => import('./passwd.js') },
  serve: {
    group: 'admin',
    summary: 'run the registry (filesystem under ./data by default)',
    load: () => import('./serve.js'),
  },
  gc: {
    group: 'admin',
    summary: 'garbage-collect unreferenced blobs and manifests (online; --dry-run to preview)',
    load: () => import('./gc.js'),
  },
  bundle: {
    group: 'admin',
    summary: 'air-gapped bundles: write images with their referrers to a layout or tar, load them into a registry',
    load: () => import('./bundle.js'),
  },
  sync: {
    group: 'admin',
    summary: "run the config's sync rules once: pre-load images from upstreams (resumable)",
    load: () => import('./sync.js'),
  },
  fsck: {
    group: 'admin',
    summary: 're-hash every stored blob; quarantine any whose bytes do not match its digest',
    load: () => import('./fsck.js'),
  },
  token: {
    group: 'admin',
    summary: 'create, list and revoke robot tokens for CI (stored hashed in the registry storage)',
    load: () => import('./token.js'),
  },
  completion: {
    group: 'admin',
    summary: 'print a shell completion script (bash, zsh or fish)',
    load: () => import('./completion.js'),
  },
  version: { group: 'admin', summary: 'print the berth version', load: () => import('./version.js') },
};
