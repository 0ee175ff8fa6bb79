// The OCI image layout medium (image-spec image-layout.md): `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
// Read and written by skopeo (`oci:DIR:TAG`), umoci, crane, oras and the builder. Lives in client/ (not builder/
// as DESIGN.md sketches) because `berth pull/push` need it and the builder imports client/.
// Referrers (signatures, SBOMs) are listed in index.json as untagged entries, as oras-go's layout store does;
// a layout answers "referrers of D" by reading the listed manifests and keeping those whose `subject` is D.
// https://github.com/opencontainers/image-spec/blob/main/image-layout.md
import { createReadStream } from 'node:fs';
import { link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseDigest, type Digest } from '../spec/digest.js';
import type { Descriptor, ImageIndex } from '../spec/manifest.js';
import { OCI_INDEX, isManifestType } from '../spec/media-types.js';
import { isCosignTag, isValidTag } from '../spec/reference.js';
import { referrerDescriptor, type ImageSource, type ImageTarget } from './copy.js';
import type { FetchedManifest, PushResult } from './remote.js';
import { downloadTo } from './partial.js';
import { tempBeside } from './temp.js';
import { VerifyStream, verifyBytes } from './verify.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';
const LAYOUT_VERSION = '1.0.0';
// index.json entries larger than this are not read when looking for referrers (manifests are small).
const REFERRER_SCAN_LIMIT = 4 << 20;

export class LayoutError extends Error {}

export class OciLayout implements ImageSource, ImageTarget {
  readonly label: string;
  /** pushBlob hashes what it writes, so sources need not (one hash per blob on a pull, not two). */
  readonly verifiesBlobs = true;
  /** subject digest → referrer descriptors, from index.json; dropped whenever index.json changes. */
  private referrerMap?: Promise<Map<string, Descriptor[]>>;
  /** index.json updates run one at a time (a copy stores referrers of several children at once). */
  private indexQueue: Promise<unknown> = Promise.resolve();
  private constructor(readonly dir: string) {
    this.label = `oci-layout:${dir}`;
  }

  /** Opens an existing layout (must have `oci-layout` and `index.json`). */
  static async open(dir: string): Promise<OciLayout> {
    let marker: any;
    try {
      marker = JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8'));
    } catch {
      throw new LayoutError(
        `${dir} is not an OCI layout (no readable oci-layout file); pass a directory written by berth pull, skopeo or umoci`,
      );
    }
    if (typeof marker?.imageLayoutVersion !== 'string')
      throw new LayoutError(`${dir}/oci-layout has no imageLayoutVersion`);
    const l = new OciLayout(dir);
    await l.index();
    return l;
  }

  /** Opens a layout, creating an empty one when the directory has none. */
  static async create(dir: string): Promise<OciLayout> {
    await mkdir(join(dir, 'blobs'), { recursive: true });
    try {
      await stat(join(dir, 'oci-layout'));
    } catch {
      await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));
    }
    try {
      await stat(join(dir, 'index.json'));
    } catch {
      await _atomicWrite(
        join(dir, 'index.json'),
        JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }),
      );
    }
    return OciLayout.open(dir);
  }

  blobPath(digest: Digest): string {
    const { algorithm, encoded } = parseDigest(digest);
    return join(this.dir, 'blobs', algorithm, encoded);
  }

  async index(): Promise<ImageIndex> {
    let doc: any;
    try {
      doc = JSON.parse(await readFile(join(this.dir, 'index.json'), 'utf8'));
    } catch {
      throw new LayoutError(`${this.dir}/index.json is missing or not JSON`);
    }
    if (!Array.isArray(doc?.manifests)) throw new LayoutError(`${this.dir}/index.json has no manifests array`);
    return doc as ImageIndex;
  }

  /** The descriptor in index.json for a tag (ref.name), a digest, or — with no reference — the only entry. */
  async find(reference?: string): Promise<Descriptor> {
    const { manifests } = await this.index();
    let hit: Descriptor | undefined;
    if (!reference) {
      let images = manifests;
      if (images.length > 1) {
        // Referrers listed beside an image are not candidates for "the image in this layout", nor are cosign's
        // tag-scheme artifacts (`sha256-<hex>.sig`…), which a copy with referrers lists under their tag.
        const referrers = new Set([...(await this._referrers()).values()].flat().map((d) => d.digest));
        images = manifests.filter((d) => {
          const name = d.annotations?.[REF_NAME];
          return name ? !isCosignTag(name) : !referrers.has(d.digest);
        });
      }
      if (images.length !== 1) {
        const names = images.map((d) => d.annotations?.[REF_NAME] ?? d.digest).join(', ');
        throw new LayoutError(`${this.dir} holds ${images.length} images (${names || 'none'}); name one as DIR:TAG`);
      }
      hit = images[0];
    } else if (reference.includes(':')) {
      hit = manifests.find((d) => d.digest === reference) ?? (await this._manifestByDigest(reference as Digest));
    } else {
      hit = manifests.find((d) => d.annotations?.[REF_NAME] === reference);
    }
    if (!hit) throw new LayoutError(`${this.dir} has no image named "${reference}"`);
    return hit;
  }

  private async _manifestByDigest(digest: Digest): Promise<Descriptor | undefined> {
    try {
      const s = await stat(this.blobPath(digest));
      return { mediaType: '', digest, size: s.size };
    } catch {
      return undefined;
    }
  }

  // ---- ImageSource ------------------------------------------------------------------------------------------

  async manifest(reference: string): Promise<FetchedManifest> {
    const d = await this.find(reference);
    const bytes = await readFile(this.blobPath(d.digest)).catch(() => {
      throw new LayoutError(`${this.dir} is missing blob ${d.digest}`);
    });
    verifyBytes(bytes, d.digest, `manifest ${d.digest} in ${this.dir}`);
    let mediaType = d.mediaType;
    if (!isManifestType(mediaType)) {
      const doc = JSON.parse(bytes.toString('utf8'));
      mediaType =
        doc.mediaType ?? (Array.isArray(doc.manifests) ? OCI_INDEX : 'application/vnd.oci.image.manifest.v1+json');
    }
    return { bytes, mediaType, digest: d.digest };
  }

  /** The manifest index.json lists under the tag, or undefined when none is (cosign's tag-scheme artifacts). */
  async tagged(tag: string): Promise<FetchedManifest | undefined> {
    const { manifests } = await this.index();
    if (!manifests.some((d) => d.annotations?.[REF_NAME] === tag)) return undefined;
    return this.manifest(tag);
  }

  /** Manifests listed in index.json whose `subject` is `digest`. */
  async referrers(digest: Digest): Promise<Descriptor[]> {
    return (await this._referrers()).get(digest) ?? [];
  }

  private _referrers(): Promise<Map<string, Descriptor[]>> {
    this.referrerMap ??= (async () => {
      const map = new Map<string, Descriptor[]>();
      const seen = new Set<string>();
      for (const d of (await this.index()).manifests) {
        if (seen.has(d.digest) || !(d.size <= REFERRER_SCAN_LIMIT)) continue;
        seen.add(d.digest);
        let bytes: Buffer;
        let doc: any;
        try {
          bytes = await readFile(this.blobPath(d.digest));
          doc = JSON.parse(bytes.toString('utf8'));
        } catch {
          continue; // a missing or non-JSON entry is reported when someone asks for it, not here
        }
        const subject = doc?.subject?.digest;
        if (typeof subject !== 'string') continue;
        const mediaType = isManifestType(d.mediaType)
          ? d.mediaType
          : (doc.mediaType ?? 'application/vnd.oci.image.manifest.v1+json');
        const list = map.get(subject) ?? [];
        list.push(referrerDescriptor({ bytes, mediaType, digest: d.digest }, doc));
        map.set(subject, list);
      }
      return map;
    })();
    return this.referrerMap;
  }

  blob(desc: Descriptor, offset: number, opts: { verify?: boolean } = {}): Readable {
    const file = createReadStream(this.blobPath(desc.digest), { start: offset, highWaterMark: 1 << 20 });
    if (offset > 0 || opts.verify === false) return file;
    const v = new VerifyStream(desc.digest, desc.size, `blob ${desc.digest} in ${this.dir}`);
    file.on('error', (e) => v.destroy(e));
    return file.pipe(v);
  }

  // ---- ImageTarget ------------------------------------------------------------------------------------------

  async resolve(reference: string, opts: { referrer?: boolean } = {}): Promise<Digest | undefined> {
    if (opts.referrer) {
      // Present only when listed: a referrer blob that index.json does not name cannot be found from its subject.
      const listed = (await this.index()).manifests.some((d) => d.digest === reference);
      return listed && (await this._manifestByDigest(reference as Digest)) ? (reference as Digest) : undefined;
    }
    if (reference.includes(':'))
      return (await this._manifestByDigest(reference as Digest)) ? (reference as Digest) : undefined;
    const { manifests } = await this.index();
    return manifests.find((d) => d.annotations?.[REF_NAME] === reference)?.digest;
  }

  async pushBlob(
    desc: Descriptor,
    source: (offset: number) => Readable | Promise<Readable>,
    opts: { onBytes?: (n: number) => void; localFile?: string; localFileVerified?: boolean } = {},
  ): Promise<PushResult> {
    const path = this.blobPath(desc.digest);
    try {
      if ((await stat(path)).size === desc.size) return 'exists';
    } catch {
      /* absent */
    }
    await mkdir(join(path, '..'), { recursive: true });
    if (opts.localFile) {
      const { tmp, done } = tempBeside(path);
      try {
        if (await this._linkVerified(opts.localFile, tmp, desc, opts.localFileVerified)) {
          await rename(tmp, path);
          opts.onBytes?.(desc.size);
          return 'uploaded';
        }
      } finally {
        done();
      }
    }
    // The one check on this path (verifiesBlobs: sources skip theirs): a layout never holds a wrong blob under a
    // digest name. Bytes land in `<blob>.partial` first, so an interrupted pull resumes (partial.ts).
    await downloadTo(path, desc, source, { onBytes: opts.onBytes, what: `blob ${desc.digest}` });
    return 'uploaded';
  }

  /**
   * Hard-links a local file (the builder's blob cache, another layout) into place when it is on the same filesystem:
   * no copy, yet still the one check on this path — the linked file is read and hashed before it is published,
   * unless the source hashed it as it wrote it in this very process (`hashed`: a layer just built).
   * False when it cannot link (another filesystem, no permission): the caller copies.
   */
  private async _linkVerified(file: string, tmp: string, desc: Descriptor, hashed = false): Promise<boolean> {
    try {
      await link(file, tmp);
    } catch {
      return false;
    }
    if (hashed) return true;
    try {
      await pipeline(
        createReadStream(tmp, { highWaterMark: 1 << 20 }),
        new VerifyStream(desc.digest, desc.size),
        new Writable({ write: (_c, _e, cb) => cb() }),
      );
      return true;
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
  }

  async putManifest(
    reference: string,
    m: FetchedManifest,
    opts: { root?: boolean; subject?: Descriptor } = {},
  ): Promise<void> {
    const path = this.blobPath(m.digest);
    await mkdir(join(path, '..'), { recursive: true });
    await _atomicWrite(path, m.bytes);
    if (opts.subject) {
      // A referrer: an untagged index.json entry (once), so readers (berth, oras) find it from its subject.
      const desc = referrerDescriptor(m, JSON.parse(m.bytes.toString('utf8')));
      await this._updateIndex((manifests) =>
        manifests.some((d) => d.digest === m.digest && !d.annotations?.[REF_NAME]) ? manifests : [...manifests, desc],
      );
      return;
    }
    if (!opts.root) return;
    const tag = reference.includes(':') ? undefined : reference;
    if (tag && !isValidTag(tag)) throw new LayoutError(`invalid tag "${tag}"`);
    const desc: Descriptor = { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
    if (tag) desc.annotations = { [REF_NAME]: tag };
    // One entry per name: a new image under an existing tag replaces it (as skopeo does).
    await this._updateIndex((manifests) => [
      ...manifests.filter((d) =>
        tag ? d.annotations?.[REF_NAME] !== tag : d.digest !== m.digest || d.annotations?.[REF_NAME],
      ),
      desc,
    ]);
  }

  /** Read-modify-write of index.json, serialised within this process. */
  private _updateIndex(change: (manifests: Descriptor[]) => Descriptor[]): Promise<void> {
    const run = this.indexQueue.then(async () => {
      const index = await this.index();
      const next = change(index.manifests);
      if (next === index.manifests) return;
      index.manifests = next;
      this.referrerMap = undefined;
      await _atomicWrite(join(this.dir, 'index.json'), JSON.stringify(index));
    });
    this.indexQueue = run.catch(() => {});
    return run;
  }
}

/** Splits `DIR:TAG` (the form skopeo's `oci:` transport uses); a bare DIR has no tag. */
export function parseLayoutArg(arg: string): { dir: string; tag?: string } {
  const i = arg.lastIndexOf(':');
  if (i > 0 && !arg.slice(i + 1).includes('/') && isValidTag(arg.slice(i + 1)))
    return { dir: arg.slice(0, i), tag: arg.slice(i + 1) };
  return { dir: arg };
}

async function _atomicWrite(path: string, data: string | Uint8Array): Promise<void> {
  const { tmp, done } = tempBeside(path);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  } finally {
    done();
  }
}
