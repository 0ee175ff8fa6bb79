// The build spec (`berth.yaml`, apiVersion berth/v1, kind Image): its TypeScript shape and JSON Schema.
// Pure: no I/O. builder/spec.ts parses the YAML, validates it with this schema and maps errors to file:line.
//
// File properties cascade spec → layer → entry (like jib's file entries): the nearest one wins. Modes are octal
// *strings* ("0644") because YAML 1.2 reads a bare 0644 as decimal 644 — a silent, dangerous misreading.

export const BUILD_API_VERSION = 'berth/v1';

/** Ownership and permissions for what lands in a layer. uname/gname are written only when set. */
export interface FileProperties {
  /** Octal string for regular files, e.g. "0644". Default: "0755" when the source is owner-executable, else "0644". */
  mode?: string;
  /** Octal string for directories (explicit and implied parents). Default "0755". */
  dirMode?: string;
  uid?: number;
  gid?: number;
  /** User name stored in the tar header (uname); omitted unless set. */
  user?: string;
  /** Group name stored in the tar header (gname); omitted unless set. */
  group?: string;
}

/** Files from the build context. `{arch}`, `{os}`, `{variant}`, `{platform}` in `src` expand per platform. */
export interface FilesEntry extends FileProperties {
  src: string;
  /** A path in the image; ending in `/` means "into this directory" (the default for globs and directories). */
  dest: string;
  /** Globs (relative to the src base) a file must match to be taken. */
  include?: string[];
  /** Globs (relative to the src base) that drop files and whole directories. */
  exclude?: string[];
  /** Copy what a symlink pointing outside the context points to, instead of failing. */
  followSymlinks?: boolean;
  /** Accept a glob that matches nothing. */
  optional?: boolean;
}
export interface InlineEntry extends FileProperties {
  inline: string;
  dest: string;
}
export interface SymlinkEntry extends FileProperties {
  /** The link target, stored verbatim. */
  symlink: string;
  dest: string;
}
export interface DirectoryEntry extends FileProperties {
  /** An (empty) directory to create, e.g. /var/lib/app. */
  directory: string;
}
export interface TarEntry extends FileProperties {
  /** An existing tar archive in the context (plain, gzip or zstd); its entries are normalised and re-emitted. */
  tar: string;
  /** Where the archive's root goes. Default "/". */
  dest?: string;
}
export type LayerEntry = FilesEntry | InlineEntry | SymlinkEntry | DirectoryEntry | TarEntry;

export interface LayerSpec {
  name: string;
  properties?: FileProperties;
  files: LayerEntry[];
}

export interface ImageConfigSpec {
  env?: Record<string, string> | string[];
  entrypoint?: string[];
  cmd?: string[];
  workdir?: string;
  user?: string;
  labels?: Record<string, string>;
  /** "8080", "8080/tcp", "53/udp" or a number. */
  exposedPorts?: (string | number)[];
  volumes?: string[];
  stopSignal?: string;
}

export type Compression = 'gzip' | 'zstd';

export interface PythonPresetSpec {
  /** The script `python3` runs, relative to the context (default: main.py, else app.py). */
  main?: string;
  /** The target's Python "X.Y" (default: the host's python3): picks the wheels (cpXY). */
  version?: string;
  /** The lock to install from, relative to the context (default: uv.lock, poetry.lock, requirements.txt). */
  lock?: string;
}

export interface GoPresetSpec {
  /** The main package, relative to the context (default "."). */
  main?: string;
  /** The binary's name in /app (default: the last element of the main package's import path). */
  binary?: string;
  /** Build tags (`go build -tags`). */
  tags?: string[];
  /** Linker flags (`go build -ldflags`), e.g. ["-s", "-w", "-X main.version=1.2.3"]. */
  ldflags?: string[];
  /** Build with cgo (default false: a static binary that runs on scratch, cross-compiled without a C toolchain). */
  cgo?: boolean;
}

/** One Debian archive: `url` + `dists/<suite>/InRelease`, signed by a key in `keyring`. */
export interface DebianSource {
  /** The archive root, e.g. http://deb.debian.org/debian (http(s) only). */
  url: string;
  suites: string[];
  /** Default [main]. */
  components?: string[];
  /**
   * An OpenPGP keyring (binary, as in /usr/share/keyrings) that must have signed InRelease: an absolute path or one
   * in the build context. Default /usr/share/keyrings/debian-archive-keyring.gpg.
   */
  keyring?: string;
}

/** A base made of Debian packages (builder/debian.ts): resolved, verified and unpacked with no maintainer scripts. */
export interface DebianPackages {
  sources: DebianSource[];
  /** Packages to install; their Pre-Depends and Depends come along. */
  include: string[];
  /** Packages never installed, even as a dependency (e.g. debconf, which only maintainer scripts use). */
  exclude?: string[];
  /** The layer's name. Default "debian". */
  layer?: string;
}

/** /etc/passwd and /etc/group, written declaratively (root and nobody/nogroup are always there). */
export interface Accounts {
  groups?: { name: string; gid: number }[];
  users?: { name: string; uid: number; gid: number; home?: string; shell?: string; gecos?: string }[];
}

export interface BuildSpec {
  apiVersion: typeof BUILD_API_VERSION;
  kind: 'Image';
  /** `scratch` or an image reference. */
  base?: string;
  /**
   * `node`: a production-dependencies layer and an app layer from package.json + lockfile. `go`: one static
   * binary per platform, built with the host's Go toolchain (see `go`).
   */
  preset?: 'node' | 'go' | 'python';
  /** Settings of `preset: go`. */
  go?: GoPresetSpec;
  /** Settings of `preset: python`. */
  python?: PythonPresetSpec;
  platforms?: string[];
  epoch?: number;
  compression?: Compression;
  properties?: FileProperties;
  layers?: LayerSpec[];
  config?: ImageConfigSpec;
  annotations?: Record<string, string>;
  /** Attach an SPDX 2.3 SBOM as a referrer on push. Default true. */
  sbom?: boolean;
  /** Distribution packages that make the base layer (after `base:`'s layers, before the preset's and `layers:`). */
  packages?: { debian?: DebianPackages };
  accounts?: Accounts;
}

const octal = { type: 'string', pattern: '^0?[0-7]{3,4}$' };
const id = { type: 'integer', minimum: 0, maximum: 2097151 }; // 7 octal digits: what a ustar header holds
const name = { type: 'string', minLength: 1, maxLength: 32, pattern: '^[^\\u0000/:]+$' }; // ustar uname/gname: 32 bytes
const stringList = { type: 'array', items: { type: 'string' } };
const stringMap = { type: 'object', additionalProperties: { type: 'string' } };
const imagePath = { type: 'string', minLength: 1, pattern: '^/' };
// Debian policy §5.6.1 (package names) and §5.6.7 (no `/`, no `..`: a suite is a path segment of the archive).
const debName = { type: 'string', pattern: '^[a-z0-9][a-z0-9+.-]+$', maxLength: 100 };
const debSegment = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', maxLength: 100 };
const accountName = { type: 'string', pattern: '^[a-z_][a-z0-9_-]*\\$?$', maxLength: 32 };
const accountId = { type: 'integer', minimum: 0, maximum: 4294967294 };
const accountText = { type: 'string', pattern: '^[^:\\n]*$' };

const propertyFields = { mode: octal, dirMode: octal, uid: id, gid: id, user: name, group: name };
const fileProperties = { type: 'object', additionalProperties: false, properties: propertyFields };

function entry(required: string[], extra: Record<string, object>): object {
  return { type: 'object', additionalProperties: false, required, properties: { ...propertyFields, ...extra } };
}

export const buildSpecSchema = {
  $id: 'berth-build-spec',
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind'],
  properties: {
    apiVersion: { const: BUILD_API_VERSION },
    kind: { const: 'Image' },
    base: { type: 'string', minLength: 1 },
    preset: { enum: ['node', 'go', 'python'] },
    python: {
      type: 'object',
      additionalProperties: false,
      properties: {
        main: { type: 'string', minLength: 1, pattern: '^(?!-)(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\u0000]+$' },
        version: { type: 'string', pattern: '^3\\.[0-9]{1,2}$' },
        lock: { type: 'string', minLength: 1, pattern: '^(?!-)(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\u0000]+$' },
      },
    },
    go: {
      type: 'object',
      additionalProperties: false,
      properties: {
        // A package path inside the context: no absolute path, no `..`, no flag-like leading '-'.
        main: { type: 'string', minLength: 1, pattern: '^(?!-)(?!/)(?!.*(^|/)\\.\\.(/|$))[A-Za-z0-9._/~+-]+$' },
        binary: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' },
        tags: { type: 'array', items: { type: 'string', pattern: '^[A-Za-z0-9_.]+$' } },
        ldflags: { type: 'array', items: { type: 'string', minLength: 1 } },
        cgo: { type: 'boolean' },
      },
    },
    platforms: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      items: { type: 'string', pattern: '^[a-z0-9_.-]+/[a-z0-9_.-]+(/[a-z0-9_.-]+)?$' },
    },
    epoch: { type: 'integer', minimum: 0, maximum: 8589934591 },
    compression: { enum: ['gzip', 'zstd'] },
    properties: fileProperties,
    layers: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'files'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' },
          properties: fileProperties,
          files: {
            type: 'array',
            items: {
              // Discriminated by which key is present; `oneOf` would report every branch, so pick by `if`.
              type: 'object',
              allOf: [
                {
                  if: { required: ['src'] },
                  then: entry(['src', 'dest'], {
                    src: { type: 'string', minLength: 1 },
                    dest: imagePath,
                    include: stringList,
                    exclude: stringList,
                    followSymlinks: { type: 'boolean' },
                    optional: { type: 'boolean' },
                  }),
                },
                {
                  if: { required: ['inline'] },
                  then: entry(['inline', 'dest'], { inline: { type: 'string' }, dest: imagePath }),
                },
                {
                  if: { required: ['symlink'] },
                  then: entry(['symlink', 'dest'], { symlink: { type: 'string', minLength: 1 }, dest: imagePath }),
                },
                { if: { required: ['directory'] }, then: entry(['directory'], { directory: imagePath }) },
                {
                  if: { required: ['tar'] },
                  then: entry(['tar'], { tar: { type: 'string', minLength: 1 }, dest: imagePath }),
                },
                {
                  anyOf: [
                    { required: ['src'] },
                    { required: ['inline'] },
                    { required: ['symlink'] },
                    { required: ['directory'] },
                    { required: ['tar'] },
                  ],
                  errorMessage: 'needs one of src, inline, symlink, directory, tar',
                },
              ],
            },
          },
        },
      },
    },
    config: {
      type: 'object',
      additionalProperties: false,
      properties: {
        env: { anyOf: [stringMap, stringList] },
        entrypoint: stringList,
        cmd: stringList,
        workdir: imagePath,
        user: { type: 'string' },
        labels: stringMap,
        exposedPorts: {
          type: 'array',
          items: {
            anyOf: [
              { type: 'integer', minimum: 1, maximum: 65535 },
              { type: 'string', pattern: '^[0-9]{1,5}(/(tcp|udp|sctp))?$' },
            ],
          },
        },
        volumes: { type: 'array', items: imagePath },
        stopSignal: { type: 'string' },
      },
    },
    annotations: stringMap,
    sbom: { type: 'boolean' },
    packages: {
      type: 'object',
      additionalProperties: false,
      properties: {
        debian: {
          type: 'object',
          additionalProperties: false,
          required: ['sources', 'include'],
          properties: {
            sources: {
              type: 'array',
              minItems: 1,
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['url', 'suites'],
                properties: {
                  url: { type: 'string', pattern: '^https?://[^\\s]+$' },
                  suites: { type: 'array', minItems: 1, uniqueItems: true, items: debSegment },
                  components: { type: 'array', minItems: 1, uniqueItems: true, items: debSegment },
                  keyring: { type: 'string', minLength: 1 },
                },
              },
            },
            include: { type: 'array', minItems: 1, uniqueItems: true, items: debName },
            exclude: { type: 'array', uniqueItems: true, items: debName },
            layer: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' },
          },
        },
      },
    },
    accounts: {
      type: 'object',
      additionalProperties: false,
      properties: {
        groups: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'gid'],
            properties: { name: accountName, gid: accountId },
          },
        },
        users: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'uid', 'gid'],
            properties: {
              name: accountName,
              uid: accountId,
              gid: accountId,
              home: { ...accountText, pattern: '^/[^:\\n]*$' },
              shell: { ...accountText, pattern: '^/[^:\\n]*$' },
              gecos: accountText,
            },
          },
        },
      },
    },
  },
} as const;

/** Which kind an entry is (the schema guarantees exactly the keys of one kind are allowed). */
export function entryKind(e: LayerEntry): 'src' | 'inline' | 'symlink' | 'directory' | 'tar' {
  if ('src' in e) return 'src';
  if ('inline' in e) return 'inline';
  if ('symlink' in e) return 'symlink';
  if ('directory' in e) return 'directory';
  return 'tar';
}

/** "0644" → 0o644. */
export function parseMode(mode: string): number {
  return parseInt(mode, 8);
}
