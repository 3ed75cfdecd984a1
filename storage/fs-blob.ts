/**
 * Filesystem blob store (the embedded default): one file per object under a root folder.
 * put() writes a temporary file, fsyncs it, renames it into place and fsyncs the folder, so an object
 * is either absent or complete and durable (no half-written object after a crash or a failed upload).
 */
import { createReadStream, close as fsClose, open as fsOpen, read as fsRead } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BlobNotFoundError, type BlobStore, type ByteRange, isValidBlobKey } from './blob';

const TMP_DIR = '.tmp';
const WRITE_GROUP_BYTES = 1024 * 1024;

export class FsBlobStore implements BlobStore {
  /** Folders known to exist. */
  private readonly dirs = new Set<string>();

  constructor(readonly root: string) {}

  static async open(root: string): Promise<FsBlobStore> {
    await mkdir(path.join(root, TMP_DIR), { recursive: true });
    // Temporary files left by a crash are incomplete uploads that were never acknowledged.
    for (const f of await readdir(path.join(root, TMP_DIR)))
      await rm(path.join(root, TMP_DIR, f), { force: true });
    return new FsBlobStore(root);
  }

  private file(key: string): string {
    if (!isValidBlobKey(key) || key.startsWith(TMP_DIR)) {
      throw new Error(`invalid blob key "${key}"`);
    }
    return path.join(this.root, key);
  }

  async put(key: string, body: AsyncIterable<Uint8Array>): Promise<{ size: number }> {
    const target = this.file(key);
    const tmp = path.join(this.root, TMP_DIR, `${randomUUID()}.part`);
    const fh = await open(tmp, 'wx');
    let size = 0;
    // Network chunks are small (16-64 KiB): write them in groups of about 1 MiB.
    let group: Uint8Array[] = [];
    let groupBytes = 0;
    const writeGroup = async () => {
      const chunks = group;
      const total = groupBytes;
      group = [];
      groupBytes = 0;
      let { bytesWritten } = await fh.writev(chunks);
      if (bytesWritten < total) {
        // A short write (rare on files): finish the rest one buffer at a time.
        const rest = Buffer.concat(chunks).subarray(bytesWritten);
        for (let off = 0; off < rest.length; off += bytesWritten) {
          ({ bytesWritten } = await fh.write(rest, off, rest.length - off));
        }
      }
    };
    try {
      for await (const chunk of body) {
        group.push(chunk);
        groupBytes += chunk.length;
        size += chunk.length;
        if (groupBytes >= WRITE_GROUP_BYTES) await writeGroup();
      }
      if (groupBytes > 0) await writeGroup();
      await fh.sync();
      await fh.close();
      const dir = path.dirname(target);
      if (!this.dirs.has(dir)) {
        // A new folder's own entry must be durable too: sync each parent whose folder we created.
        const first = await mkdir(dir, { recursive: true });
        if (first) {
          for (let d = first; d !== this.root && d.startsWith(this.root); d = path.dirname(d)) {
            await syncDir(path.dirname(d));
          }
        }
        this.dirs.add(dir);
      }
      await rename(tmp, target).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        await mkdir(dir, { recursive: true }); // removed since we last saw it
        await rename(tmp, target);
      });
      await syncDir(dir);
      return { size };
    } catch (err) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const file = this.file(key);
    try {
      await stat(file);
    } catch {
      throw new BlobNotFoundError(key);
    }
    if (range && range.end <= range.start) {
      const { Readable } = await import('node:stream');
      return Readable.from([]);
    }
    return createReadStream(file, range ? { start: range.start, end: range.end - 1 } : {});
  }

  async read(key: string, range: ByteRange): Promise<Uint8Array> {
    // Callback fs calls: a frame request is mostly this, and FileHandle's bookkeeping cost more than the read.
    const file = this.file(key);
    const fd = await new Promise<number>((resolve, reject) =>
      fsOpen(file, 'r', (err, fd) => (err ? reject(new BlobNotFoundError(key)) : resolve(fd))),
    );
    try {
      const out = Buffer.allocUnsafe(Math.max(0, range.end - range.start));
      let off = 0;
      while (off < out.length) {
        const n = await new Promise<number>((resolve, reject) =>
          fsRead(fd, out, off, out.length - off, range.start + off, (err, bytesRead) =>
            err ? reject(err) : resolve(bytesRead),
          ),
        );
        if (n === 0) throw new RangeError(`blob ${key} ends before byte ${range.end}`);
        off += n;
      }
      return out;
    } finally {
      await new Promise<void>((resolve) => fsClose(fd, () => resolve()));
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.file(key), { force: true });
  }

  async *list(prefix = ''): AsyncIterable<string> {
    const walk = async function* (dir: string, rel: string): AsyncGenerator<string> {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : 1));
      for (const e of entries) {
        if (rel === '' && e.name === TMP_DIR) continue;
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) yield* walk(path.join(dir, e.name), key);
        else if (key.startsWith(prefix)) yield key;
      }
    };
    yield* walk(this.root, '');
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
