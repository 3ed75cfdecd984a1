/**
 * The behaviour every BlobStore must have (run against the filesystem store and, later, S3).
 * Hono-style shared conformance suite: each backend calls runBlobContract with its factory.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobNotFoundError, type BlobStore } from '../../storage/blob';

async function readAll(s: AsyncIterable<Uint8Array | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c));
  return Buffer.concat(chunks);
}

async function* chunksOf(buf: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

export function runBlobContract(name: string, open: () => Promise<BlobStore & { close?(): Promise<void> }>) {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    beforeAll(async () => {
      store = await open();
    });
    afterAll(async () => {
      await store.close?.();
    });

    it('stores a streamed body and returns it byte for byte', async () => {
      const data = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 31) & 0xff);
      const { size } = await store.put('ab/cd/one.dcm', chunksOf(data, 65536));
      expect(size).toBe(data.length);
      const back = await readAll(await store.get('ab/cd/one.dcm'));
      expect(createHash('sha256').update(back).digest('hex')).toBe(
        createHash('sha256').update(data).digest('hex'),
      );
    });

    it('reads a byte range [start, end)', async () => {
      const data = Buffer.from('0123456789abcdef');
      await store.put('range.bin', chunksOf(data, 3));
      expect((await readAll(await store.get('range.bin', { start: 4, end: 10 }))).toString()).toBe('456789');
      expect((await readAll(await store.get('range.bin', { start: 15, end: 16 }))).toString()).toBe('f');
      expect(Buffer.from(await store.read('range.bin', { start: 2, end: 7 })).toString()).toBe('23456');
      await expect(store.read('range.bin', { start: 10, end: 20 })).rejects.toThrow(RangeError);
      await expect(store.read('missing.bin', { start: 0, end: 1 })).rejects.toBeInstanceOf(BlobNotFoundError);
    });

    it('leaves nothing behind when the body fails midway', async () => {
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield new Uint8Array(1000);
        throw new Error('client went away');
      }
      await expect(store.put('failed/x.dcm', failing())).rejects.toThrow('client went away');
      await expect(store.get('failed/x.dcm')).rejects.toBeInstanceOf(BlobNotFoundError);
      const keys: string[] = [];
      for await (const k of store.list('failed/')) keys.push(k);
      expect(keys).toEqual([]);
    });

    it('replaces an object atomically and deletes idempotently', async () => {
      await store.put('re.bin', chunksOf(Buffer.from('first'), 2));
      await store.put('re.bin', chunksOf(Buffer.from('second'), 2));
      expect((await readAll(await store.get('re.bin'))).toString()).toBe('second');
      await store.delete('re.bin');
      await store.delete('re.bin');
      await expect(store.get('re.bin')).rejects.toBeInstanceOf(BlobNotFoundError);
    });

    it('lists keys under a prefix', async () => {
      await store.put('list/a/1', chunksOf(Buffer.from('1'), 1));
      await store.put('list/b/2', chunksOf(Buffer.from('2'), 1));
      const keys: string[] = [];
      for await (const k of store.list('list/')) keys.push(k);
      expect(keys.sort()).toEqual(['list/a/1', 'list/b/2']);
    });

    it('refuses keys that could escape the store', async () => {
      await expect(store.put('../escape', chunksOf(Buffer.from('x'), 1))).rejects.toThrow();
      await expect(store.put('a/../../escape', chunksOf(Buffer.from('x'), 1))).rejects.toThrow();
    });
  });
}
