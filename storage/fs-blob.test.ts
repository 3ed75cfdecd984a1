import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runBlobContract } from '../tests/contract/blob-contract';
import { FsBlobStore } from './fs-blob';

const dirs: string[] = [];
async function freshStore(): Promise<{ dir: string; store: FsBlobStore }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pacs-blob-'));
  dirs.push(dir);
  return { dir, store: await FsBlobStore.open(dir) };
}

runBlobContract('filesystem', async () => {
  const { store } = await freshStore();
  const close = store.close.bind(store);
  return Object.assign(store, {
    close: async () => {
      await close();
      for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
    },
  });
});

describe('FsBlobStore folders', () => {
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  const openFds = () => readdirSync('/proc/self/fd').length;
  const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) % 251);
  async function* once(b: Uint8Array) {
    yield b;
  }

  it.runIf(process.platform === 'linux')(
    'stores objects in more folders than it keeps open, and closes every folder it opened',
    async () => {
      const before = openFds();
      const { dir, store } = await freshStore();
      const keys = Array.from({ length: 400 }, (_, i) => `f${i}/obj-${i}.dcm`);
      for (const [i, key] of keys.entries()) await store.put(key, once(bytes(100 + i)));
      // Some folders twice, after their descriptor was given up for newer ones.
      for (const i of [0, 1, 399]) await store.put(`f${i}/again.dcm`, once(bytes(3000 + i)));
      for (const [i, key] of keys.entries())
        expect(Buffer.from(await readFile(path.join(dir, key))).equals(Buffer.from(bytes(100 + i)))).toBe(
          true,
        );
      expect(Buffer.from(await store.read('f399/again.dcm', { start: 0, end: 3399 }))).toEqual(
        Buffer.from(bytes(3399)),
      );
      await store.close();
      expect(openFds()).toBe(before);
    },
  );

  it('stores into a folder removed since its last object', async () => {
    const { dir, store } = await freshStore();
    await store.put('ab/one.dcm', once(bytes(10)));
    await store.delete('ab/one.dcm');
    await rm(path.join(dir, 'ab'), { recursive: true });
    await store.put('ab/two.dcm', once(bytes(20)));
    expect(Buffer.from(await readFile(path.join(dir, 'ab/two.dcm')))).toEqual(Buffer.from(bytes(20)));
    await store.close();
  });
});
