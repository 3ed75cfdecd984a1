/**
 * Filesystem blob store (the embedded default): one file per object under a root folder.
 * put() writes a temporary file, fsyncs it, renames it into place and fsyncs the folder, so an object
 * is either absent or complete and durable (no half-written object after a crash or a failed upload).
 */
import fs, { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BlobNotFoundError, type BlobStore, type ByteRange, isValidBlobKey } from './blob';

const TMP_DIR = '.tmp';
const WRITE_GROUP_BYTES = 1024 * 1024;
/** Folder descriptors kept open: the 256 folders of newBlobKey() and then some. */
const DIR_FDS = 320;

/** A callback fs call as a promise. */
function fsCall<T>(
  call: (cb: (err: NodeJS.ErrnoException | null, value?: T) => void) => unknown,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    call((err, value) => (err ? reject(err) : resolve(value as T)));
  });
}

export class FsBlobStore implements BlobStore {
  /** Folders known to exist. */
  private readonly dirs = new Set<string>();
  /** Open descriptors of folders, for their fsync after a rename (insertion order: oldest first). */
  private readonly dirFds = new Map<string, { fd: number; users: number; retired: boolean }>();

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
    // Callback fs calls rather than FileHandle: an instance is about seven calls, and on a busy archive
    // the bookkeeping of a FileHandle and its promises cost the event loop more than the calls themselves.
    const target = this.file(key);
    const tmp = path.join(this.root, TMP_DIR, `${randomUUID()}.part`);
    const fd = await fsCall<number>((cb) => fs.open(tmp, 'wx', cb));
    let closed = false;
    let size = 0;
    // Network chunks are small (16-64 KiB): write them in groups of about 1 MiB.
    let group: Uint8Array[] = [];
    let groupBytes = 0;
    const writeGroup = async () => {
      const chunks = group;
      const total = groupBytes;
      group = [];
      groupBytes = 0;
      let written = await fsCall<number>((cb) => fs.writev(fd, chunks, cb));
      if (written < total) {
        // A short write (rare on files): finish the rest one buffer at a time.
        const rest = Buffer.concat(chunks).subarray(written);
        for (let off = 0; off < rest.length; off += written) {
          written = await fsCall<number>((cb) => fs.write(fd, rest, off, rest.length - off, null, cb));
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
      await fsCall<void>((cb) => fs.fsync(fd, cb));
      closed = true;
      await fsCall<void>((cb) => fs.close(fd, cb));
      const dir = path.dirname(target);
      if (!this.dirs.has(dir)) await this.makeFolder(dir);
      await fsCall<void>((cb) => fs.rename(tmp, target, cb)).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        // The folder was removed since we last saw it: forget its descriptor, make it again.
        await this.retire(dir);
        await this.makeFolder(dir);
        await fsCall<void>((cb) => fs.rename(tmp, target, cb));
      });
      // The new name must be durable before the object is acknowledged.
      await this.syncFolder(dir);
      return { size };
    } catch (err) {
      if (!closed) await fsCall<void>((cb) => fs.close(fd, cb)).catch(() => {});
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** Creates a folder (and its parents) durably: each parent whose entry we added is synced. */
  private async makeFolder(dir: string): Promise<void> {
    const first = await mkdir(dir, { recursive: true });
    if (first) {
      for (let d = first; d !== this.root && d.startsWith(this.root); d = path.dirname(d)) {
        await syncDir(path.dirname(d));
      }
    }
    this.dirs.add(dir);
  }

  /**
   * fsync of a folder through a descriptor kept open for the folder's next objects (opening and closing
   * it for each object was two more calls per object). At most DIR_FDS are kept, the oldest given up first;
   * a descriptor given up is closed once no fsync is using it.
   */
  private async syncFolder(dir: string): Promise<void> {
    let h = this.dirFds.get(dir);
    if (!h) {
      const fd = await fsCall<number>((cb) => fs.open(dir, 'r', cb));
      h = this.dirFds.get(dir); // another put may have opened it meanwhile
      if (h) fs.close(fd, () => {});
      else {
        h = { fd, users: 0, retired: false };
        this.dirFds.set(dir, h);
        if (this.dirFds.size > DIR_FDS) void this.retire(this.dirFds.keys().next().value as string);
      }
    }
    const handle = h;
    handle.users++;
    try {
      await fsCall<void>((cb) => fs.fsync(handle.fd, cb));
    } finally {
      handle.users--;
      if (handle.retired && handle.users === 0) fs.close(handle.fd, () => {});
    }
  }

  private retire(dir: string): Promise<void> {
    const h = this.dirFds.get(dir);
    if (!h) return Promise.resolve();
    this.dirFds.delete(dir);
    h.retired = true;
    if (h.users > 0) return Promise.resolve(); // closed by the last fsync using it
    return new Promise((resolve) => fs.close(h.fd, () => resolve()));
  }

  async close(): Promise<void> {
    await Promise.all([...this.dirFds.keys()].map((dir) => this.retire(dir)));
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
    const fd = await fsCall<number>((cb) => fs.open(file, 'r', cb)).catch(() => {
      throw new BlobNotFoundError(key);
    });
    try {
      const out = Buffer.allocUnsafe(Math.max(0, range.end - range.start));
      let off = 0;
      while (off < out.length) {
        const n = await fsCall<number>((cb) =>
          fs.read(fd, out, off, out.length - off, range.start + off, cb),
        );
        if (n === 0) throw new RangeError(`blob ${key} ends before byte ${range.end}`);
        off += n;
      }
      return out;
    } finally {
      // Not awaited: the bytes are read, and waiting for the close would hold the answer for one more
      // trip through the thread pool and the event loop. The descriptor is not used after this line.
      fs.close(fd, () => {});
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
