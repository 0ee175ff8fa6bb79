// In-memory driver for unit tests. Same contract as every driver (driver-suite.ts).
import { Readable } from 'node:stream';
import {
  assertSafePath,
  NotFoundError,
  OffsetMismatchError,
  type Driver,
  type FileInfo,
  type MoveOptions,
  type PutStreamOptions,
  type ReadOptions,
} from './driver.js';

async function _collect(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks);
}

export class MemoryDriver implements Driver {
  readonly name = 'memory';
  private readonly objects = new Map<string, { data: Buffer; modified: Date }>();

  async stat(path: string): Promise<FileInfo | undefined> {
    assertSafePath(path);
    const o = this.objects.get(path);
    return o && { size: o.data.length, modified: o.modified };
  }

  async read(path: string, opts: ReadOptions = {}): Promise<Readable> {
    assertSafePath(path);
    const o = this.objects.get(path);
    if (!o) throw new NotFoundError(path);
    return Readable.from([o.data.subarray(opts.start ?? 0, opts.end === undefined ? undefined : opts.end + 1)]);
  }

  async get(path: string): Promise<Buffer | undefined> {
    assertSafePath(path);
    return this.objects.get(path)?.data;
  }

  async put(path: string, data: Buffer | string): Promise<void> {
    assertSafePath(path);
    this.objects.set(path, { data: Buffer.from(data), modified: new Date() });
  }

  async putStream(path: string, body: Readable, opts: PutStreamOptions = {}): Promise<number> {
    assertSafePath(path);
    const data = await _collect(body);
    await opts.verify?.(data.length);
    this.objects.set(path, { data, modified: new Date() });
    return data.length;
  }

  async append(path: string, offset: number, body: Readable): Promise<number> {
    assertSafePath(path);
    const chunk = await _collect(body);
    // Checked after the body arrived and without awaiting afterwards: concurrent appends cannot interleave.
    const current = this.objects.get(path)?.data ?? Buffer.alloc(0);
    if (current.length !== offset) throw new OffsetMismatchError(path, offset, current.length);
    const data = Buffer.concat([current, chunk]);
    this.objects.set(path, { data, modified: new Date() });
    return data.length;
  }

  async move(from: string, to: string, opts: MoveOptions = {}): Promise<void> {
    assertSafePath(from);
    assertSafePath(to);
    const o = this.objects.get(from);
    if (!o) throw new NotFoundError(from);
    if (opts.size !== undefined && o.data.length !== opts.size)
      throw new OffsetMismatchError(from, opts.size, o.data.length);
    this.objects.set(to, o);
    this.objects.delete(from);
  }

  async list(prefix: string): Promise<string[]> {
    assertSafePath(prefix);
    const names = new Set<string>();
    const p = `${prefix}/`;
    for (const key of this.objects.keys()) {
      if (key.startsWith(p)) names.add(key.slice(p.length).split('/')[0]);
    }
    return [...names].sort();
  }

  async delete(path: string): Promise<void> {
    assertSafePath(path);
    this.objects.delete(path);
    for (const key of [...this.objects.keys()]) if (key.startsWith(`${path}/`)) this.objects.delete(key);
  }
}
