/**
 * The behaviour every BlobStore must have (run against the filesystem store and S3 via s3rver).
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

    it('streams a body larger than one multipart part and reads ranges across part boundaries', async () => {
      // 12 MiB: more than one part of an S3 multipart upload (5 and 8 MiB are common part sizes).
      const MiB = 1024 * 1024;
      const data = new Uint8Array(12 * MiB + 5).map((_, i) => (i * 7 + (i >> 12)) & 0xff);
      const { size } = await store.put('big/twelve.dcm', chunksOf(data, 64 * 1024));
      expect(size).toBe(data.length);
      const back = await readAll(await store.get('big/twelve.dcm'));
      expect(back.length).toBe(data.length);
      expect(createHash('sha256').update(back).digest('hex')).toBe(
        createHash('sha256').update(data).digest('hex'),
      );
      for (const boundary of [5 * MiB, 8 * MiB]) {
        const range = { start: boundary - 100, end: boundary + 100 };
        const expected = Buffer.from(data.subarray(range.start, range.end));
        expect(Buffer.from(await store.read('big/twelve.dcm', range)).equals(expected)).toBe(true);
        expect((await readAll(await store.get('big/twelve.dcm', range))).equals(expected)).toBe(true);
      }
      const tail = { start: data.length - 3, end: data.length };
      expect(Buffer.from(await store.read('big/twelve.dcm', tail))).toEqual(Buffer.from(data.subarray(-3)));
      await store.delete('big/twelve.dcm');
    });

    it('leaves nothing behind when a large body fails after several MiB', async () => {
      async function* failingLate(): AsyncGenerator<Uint8Array> {
        for (let i = 0; i < 11 * 16; i++) yield new Uint8Array(64 * 1024).fill(i & 0xff);
        throw new Error('client went away late');
      }
      await expect(store.put('failed-late/x.dcm', failingLate())).rejects.toThrow('client went away late');
      await expect(store.get('failed-late/x.dcm')).rejects.toBeInstanceOf(BlobNotFoundError);
      const keys: string[] = [];
      for await (const k of store.list('failed-late/')) keys.push(k);
      expect(keys).toEqual([]);
    });

    it('stores an empty object', async () => {
      const { size } = await store.put('empty.bin', chunksOf(new Uint8Array(0), 1));
      expect(size).toBe(0);
      expect((await readAll(await store.get('empty.bin'))).length).toBe(0);
      expect((await store.read('empty.bin', { start: 0, end: 0 })).length).toBe(0);
    });

    it('handles ranges at and past the end like a file', async () => {
      const data = Buffer.from('0123456789abcdef');
      await store.put('edge.bin', chunksOf(data, 16));
      // Streams give what exists: a range past the end is cut short, or empty.
      expect((await readAll(await store.get('edge.bin', { start: 10, end: 100 }))).toString()).toBe('abcdef');
      expect((await readAll(await store.get('edge.bin', { start: 20, end: 30 }))).length).toBe(0);
      expect((await readAll(await store.get('edge.bin', { start: 3, end: 3 }))).length).toBe(0);
      // read() promises every byte asked for.
      expect((await store.read('edge.bin', { start: 3, end: 3 })).length).toBe(0);
      await expect(store.read('edge.bin', { start: 16, end: 17 })).rejects.toThrow(RangeError);
      await expect(store.read('edge.bin', { start: 15, end: 17 })).rejects.toThrow(RangeError);
      await expect(store.get('missing.bin')).rejects.toBeInstanceOf(BlobNotFoundError);
      await expect(store.get('missing.bin', { start: 0, end: 4 })).rejects.toBeInstanceOf(BlobNotFoundError);
      await expect(store.read('missing.bin', { start: 0, end: 0 })).rejects.toBeInstanceOf(BlobNotFoundError);
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

    it('lists every key when there are more than one page of them', async () => {
      const expected: string[] = [];
      for (let i = 0; i < 7; i++) {
        const key = `many/s${i % 3}/k${i}`;
        expected.push(key);
        await store.put(key, chunksOf(Buffer.from(String(i)), 1));
      }
      await store.put('manyx/k', chunksOf(Buffer.from('x'), 1));
      const keys: string[] = [];
      for await (const k of store.list('many/')) keys.push(k);
      expect(keys.sort()).toEqual(expected.sort());
      const all: string[] = [];
      for await (const k of store.list()) all.push(k);
      expect(all).toEqual(expect.arrayContaining([...expected, 'manyx/k']));
    });

    it('refuses keys that could escape the store', async () => {
      await expect(store.put('../escape', chunksOf(Buffer.from('x'), 1))).rejects.toThrow();
      await expect(store.put('a/../../escape', chunksOf(Buffer.from('x'), 1))).rejects.toThrow();
      await expect(store.put('/abs', chunksOf(Buffer.from('x'), 1))).rejects.toThrow();
      await expect(store.get('../escape')).rejects.toThrow();
      await expect(store.read('a/../b', { start: 0, end: 1 })).rejects.toThrow();
      await expect(store.delete('../escape')).rejects.toThrow();
    });
  });
}
