// The SBOM of a build: for each platform image one SPDX 2.3 JSON document — the image (by manifest digest), its
// base image, every regular file of the layers this build added (SHA-1 as SPDX requires, and SHA-256), and the
// production npm packages of the context's lockfile — attached to the image as an OCI referrer (artifact.ts).
// Reproducible like the image: `created` is the build epoch, the namespace comes from the manifest digest (no
// clock, no UUID), IDs are positional, and the bytes are canonical JSON.
// https://spdx.github.io/spdx-spec/v2.3/
import { createHash } from 'node:crypto';
import { canonicalBytes } from '../spec/canonical-json.js';
import { parseDigest, type Digest } from '../spec/digest.js';
import type { Platform } from '../spec/manifest.js';
import { parseReference } from '../spec/reference.js';
import { artifact, type Artifact } from './artifact.js';
import type { BuildResult } from './build.js';
import { epochTime } from './image.js';
import { layerFiles, type LayerFile } from './layer-files.js';
import type { BuiltLayer } from './layers.js';
import type { LockedDeb } from './debian.js';
import { readNpmLock, type NpmPackage } from './npm-lock.js';

export const SPDX_JSON = 'application/spdx+json';
const TITLE = 'org.opencontainers.image.title';
const CREATED = 'org.opencontainers.image.created';
const NOASSERTION = 'NOASSERTION';

export interface SbomInput {
  /** berth's version, for `creationInfo.creators`. */
  toolVersion: string;
  /** RFC 3339, from the build epoch. */
  created: string;
  image: { name: string; digest: Digest; platform: Platform };
  base?: { name: string; digest: Digest };
  layers: { name: string; digest: Digest; files: LayerFile[] }[];
  npm: NpmPackage[];
  /** Debian packages installed from packages.debian (purl type deb). */
  debs?: LockedDeb[];
}

// The subset of the SPDX 2.3 JSON model berth writes (field names as in the spec's JSON schema).
type Checksum = { algorithm: 'SHA1' | 'SHA256' | 'SHA384' | 'SHA512'; checksumValue: string };
type Relationship = { spdxElementId: string; relationshipType: string; relatedSpdxElement: string; comment?: string };
export interface SpdxPackage {
  SPDXID: string;
  name: string;
  versionInfo?: string;
  downloadLocation: string;
  filesAnalyzed: boolean;
  packageVerificationCode?: { packageVerificationCodeValue: string };
  checksums?: Checksum[];
  externalRefs?: { referenceCategory: 'PACKAGE-MANAGER'; referenceType: 'purl'; referenceLocator: string }[];
  primaryPackagePurpose?: 'CONTAINER' | 'LIBRARY';
  licenseConcluded: string;
  licenseDeclared: string;
  copyrightText: string;
  comment?: string;
}
export interface SpdxFile {
  SPDXID: string;
  fileName: string;
  checksums: Checksum[];
  comment?: string;
}
export interface SpdxDocument {
  spdxVersion: 'SPDX-2.3';
  dataLicense: 'CC0-1.0';
  SPDXID: 'SPDXRef-DOCUMENT';
  name: string;
  documentNamespace: string;
  creationInfo: { created: string; creators: string[] };
  packages: SpdxPackage[];
  files: SpdxFile[];
  relationships: Relationship[];
}

/** The SPDX document for one image. Pure: the same input gives the same document. */
export function spdxDocument(input: SbomInput): SpdxDocument {
  const { image, base } = input;
  const hex = parseDigest(image.digest).encoded;
  const plat = [image.platform.os, image.platform.architecture, image.platform.variant].filter(Boolean).join('/');
  const files: SpdxFile[] = [];
  input.layers.forEach((layer, i) =>
    layer.files.forEach((f, j) =>
      // Keys in canonical (sorted) order, so canonical JSON needs no sorted copy of 20,000 entries.
      files.push({
        SPDXID: `SPDXRef-File-${i}-${j}`,
        checksums: [
          { algorithm: 'SHA1', checksumValue: f.sha1 },
          { algorithm: 'SHA256', checksumValue: f.sha256 },
        ],
        comment: `layer ${layer.name} (${layer.digest})`,
        // spdx 2.3 §8.1: relative to the package root, written `./usr/bin/app` (the SPDX tools reject `/usr/…`).
        fileName: `.${f.path}`,
      }),
    ),
  );
  const all = input.layers.flatMap((l) => l.files);
  const imagePkg: SpdxPackage = {
    SPDXID: 'SPDXRef-Image',
    name: image.name,
    versionInfo: image.digest,
    downloadLocation: NOASSERTION,
    // spdx 2.3 §7.9: SHA-1 over the sorted SHA-1s of the package's files.
    filesAnalyzed: true,
    packageVerificationCode: { packageVerificationCodeValue: _verificationCode(all) },
    checksums: [{ algorithm: 'SHA256', checksumValue: hex }],
    externalRefs: [
      _purlRef(
        `pkg:oci/${_purlName(image.name)}@sha256%3A${hex}?${_qualifiers({ arch: image.platform.architecture, os: image.platform.os })}`,
      ),
    ],
    primaryPackagePurpose: 'CONTAINER',
    ..._noAssertions(),
    comment: `OCI image manifest for ${plat}; files are those of the layers berth added${base ? ' (the base image is its own package)' : ''}`,
  };
  const packages: SpdxPackage[] = [imagePkg];
  const rel: Relationship[] = [
    { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: 'SPDXRef-Image' },
  ];
  if (base) {
    packages.push({
      SPDXID: 'SPDXRef-BaseImage',
      name: base.name,
      versionInfo: base.digest,
      downloadLocation: NOASSERTION,
      filesAnalyzed: false,
      checksums: [{ algorithm: 'SHA256', checksumValue: parseDigest(base.digest).encoded }],
      externalRefs: [_purlRef(_basePurl(base.name, base.digest))],
      primaryPackagePurpose: 'CONTAINER',
      ..._noAssertions(),
    });
    // The image is the base plus appended layers: a descendant of it (spdx 2.3 §11.1 DESCENDANT_OF).
    rel.push({
      spdxElementId: 'SPDXRef-Image',
      relationshipType: 'DESCENDANT_OF',
      relatedSpdxElement: 'SPDXRef-BaseImage',
    });
  }
  for (const f of files)
    rel.push({ relatedSpdxElement: f.SPDXID, relationshipType: 'CONTAINS', spdxElementId: 'SPDXRef-Image' });
  const installed = _installedNpmPaths(all);
  input.npm.forEach((p, i) => {
    const id = `SPDXRef-npm-${i}`;
    const checksums = _integrityChecksums(p.integrity);
    packages.push({
      SPDXID: id,
      name: p.name,
      versionInfo: p.version,
      downloadLocation: p.resolved && /^https?:\/\//.test(p.resolved) ? p.resolved : NOASSERTION,
      filesAnalyzed: false,
      ...(checksums.length ? { checksums } : {}),
      externalRefs: [_purlRef(_npmPurl(p.name, p.version))],
      primaryPackagePurpose: 'LIBRARY',
      ..._noAssertions(),
    });
    // Installed into a layer (its node_modules folder holds a package.json) → CONTAINS; else only pinned by the lockfile.
    rel.push(
      installed.has(p.path)
        ? { spdxElementId: 'SPDXRef-Image', relationshipType: 'CONTAINS', relatedSpdxElement: id }
        : {
            spdxElementId: 'SPDXRef-Image',
            relationshipType: 'DEPENDS_ON',
            relatedSpdxElement: id,
            comment: 'pinned by the build context lockfile; not found installed in the layers berth added',
          },
    );
  });
  (input.debs ?? []).forEach((p, i) => {
    const id = `SPDXRef-deb-${i}`;
    packages.push({
      SPDXID: id,
      name: p.name,
      versionInfo: p.version,
      downloadLocation: p.url,
      filesAnalyzed: false,
      checksums: [{ algorithm: 'SHA256', checksumValue: p.sha256 }],
      externalRefs: [_purlRef(debPurl(p))],
      primaryPackagePurpose: 'LIBRARY',
      ..._noAssertions(),
      comment: 'Debian package unpacked by berth (no maintainer scripts run); recorded in /var/lib/dpkg/status.d/',
    });
    rel.push({ spdxElementId: 'SPDXRef-Image', relationshipType: 'CONTAINS', relatedSpdxElement: id });
  });
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `${image.name} ${plat}`,
    // Unique per image and stable across rebuilds: derived from the manifest digest (spdx 2.3 §6.5).
    documentNamespace: `https://spdx.org/spdxdocs/berth/${encodeURIComponent(image.name)}-sha256-${hex}`,
    creationInfo: { created: input.created, creators: [`Tool: berth-${input.toolVersion}`] },
    packages,
    files,
    relationships: rel,
  };
}

export interface SbomOptions {
  toolVersion: string;
  /** The build context: its package-lock.json (or npm-shrinkwrap.json) lists the npm packages. */
  contextDir: string;
  /** Where per-layer file lists are cached (the layer cache dir); none = read every layer blob. */
  cacheDir?: string;
}

/** One SBOM artifact per platform image of the build, each referring to its image manifest. */
export async function buildSboms(result: BuildResult, opts: SbomOptions): Promise<Artifact[]> {
  const npm = await readNpmLock(opts.contextDir);
  // Platforms often share a layer (same bytes, same digest): read each blob once.
  const scans = new Map<string, Promise<LayerFile[]>>();
  const filesOf = (l: BuiltLayer) => {
    const d = l.layer.descriptor.digest;
    if (!scans.has(d)) scans.set(d, layerFiles(l.layer, opts.cacheDir, l.segments));
    return scans.get(d)!;
  };
  return Promise.all(
    result.images.map(async (img) => {
      const annotations = JSON.parse(img.manifest.bytes.toString('utf8')).annotations ?? {};
      const created: string = img.image.config.created ?? annotations[CREATED] ?? epochTime(0);
      const layers = await Promise.all(
        img.layers.map(async (l) => ({ name: l.name, digest: l.layer.descriptor.digest, files: await filesOf(l) })),
      );
      const doc = spdxDocument({
        toolVersion: opts.toolVersion,
        created,
        image: { name: annotations[TITLE] || 'image', digest: img.manifest.digest, platform: img.platform },
        base: result.base,
        layers,
        npm,
        debs: img.debs,
      });
      return artifact({
        artifactType: SPDX_JSON,
        mediaType: SPDX_JSON,
        title: `sbom-${[img.platform.os, img.platform.architecture, img.platform.variant].filter(Boolean).join('-')}.spdx.json`,
        data: canonicalBytes(doc),
        subject: { mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.bytes.length },
        annotations: { [CREATED]: created },
      });
    }),
  );
}

function _noAssertions() {
  return { licenseConcluded: NOASSERTION, licenseDeclared: NOASSERTION, copyrightText: NOASSERTION };
}

function _verificationCode(files: LayerFile[]): string {
  return createHash('sha1')
    .update(
      files
        .map((f) => f.sha1)
        .sort()
        .join(''),
    )
    .digest('hex');
}

function _purlRef(locator: string) {
  return { referenceCategory: 'PACKAGE-MANAGER' as const, referenceType: 'purl' as const, referenceLocator: locator };
}

/** purl qualifiers: sorted keys, percent-encoded values ('/' kept, as purl examples write repository_url). */
function _qualifiers(q: Record<string, string | undefined>): string {
  return Object.keys(q)
    .filter((k) => q[k])
    .sort()
    .map((k) => `${k}=${encodeURIComponent(q[k]!).replace(/%2F/g, '/')}`)
    .join('&');
}

/** purl-spec oci type: the name is the last path segment of the repository, lowercase. */
function _purlName(name: string): string {
  return encodeURIComponent(name.split('/').pop()!.toLowerCase());
}

function _basePurl(name: string, digest: Digest): string {
  const hex = parseDigest(digest).encoded;
  try {
    const r = parseReference(name);
    return `pkg:oci/${_purlName(r.repository)}@sha256%3A${hex}?${_qualifiers({ repository_url: `${r.registry}/${r.repository}`, tag: r.tag })}`;
  } catch {
    // Not a registry reference (e.g. `oci-layout:DIR`): name and digest only.
    return `pkg:oci/${_purlName(name.replace(/[:/]+$/, ''))}@sha256%3A${hex}`;
  }
}

/** purl-spec deb type: `pkg:deb/debian/curl@7.88.1-10?arch=amd64&distro=debian-12` (epoch `:` encoded). */
export function debPurl(p: Pick<LockedDeb, 'name' | 'version' | 'architecture' | 'distro'>): string {
  return `pkg:deb/debian/${encodeURIComponent(p.name)}@${encodeURIComponent(p.version)}?${_qualifiers({ arch: p.architecture, distro: p.distro })}`;
}

/** purl-spec npm type: a scope is the namespace, written `%40scope`. */
function _npmPurl(name: string, version: string): string {
  const [scope, bare] =
    name.startsWith('@') && name.includes('/')
      ? [name.slice(1, name.indexOf('/')), name.slice(name.indexOf('/') + 1)]
      : [undefined, name];
  return `pkg:npm/${scope ? `%40${encodeURIComponent(scope)}/` : ''}${encodeURIComponent(bare)}@${encodeURIComponent(version)}`;
}

/** `sha512-<base64> sha1-<base64>` (Subresource Integrity) → SPDX checksums in hex; other algorithms are dropped. */
function _integrityChecksums(integrity?: string): Checksum[] {
  const out: Checksum[] = [];
  for (const part of (integrity ?? '').split(/\s+/)) {
    const m = /^(sha1|sha256|sha384|sha512)-([A-Za-z0-9+/=]+)$/.exec(part.replace(/\?.*$/, ''));
    if (!m) continue;
    const algorithm = m[1].toUpperCase() as Checksum['algorithm'];
    if (!out.some((c) => c.algorithm === algorithm))
      out.push({ algorithm, checksumValue: Buffer.from(m[2], 'base64').toString('hex') });
  }
  return out;
}

/** Lockfile keys (`node_modules/a/node_modules/b`) of packages whose package.json is in the layers. */
function _installedNpmPaths(files: LayerFile[]): Set<string> {
  const out = new Set<string>();
  for (const f of files) {
    if (!f.path.endsWith('/package.json')) continue;
    const dir = f.path.slice(0, -'/package.json'.length);
    const i = dir.indexOf('/node_modules/');
    if (i >= 0) out.add(dir.slice(i + 1));
  }
  return out;
}
