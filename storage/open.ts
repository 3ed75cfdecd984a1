/** Opens the configured storage: the blob store and the index (embedded defaults: a folder and SQLite). */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { BlobStore } from './blob';
import { FsBlobStore } from './fs-blob';
import type { Index } from './index';
import { openSqliteIndex } from './sqlite-index';

export interface Storage {
  blobs: BlobStore;
  index: Index;
  close(): Promise<void>;
}

export async function openStorage(opts: { dataDir: string }): Promise<Storage> {
  await mkdir(opts.dataDir, { recursive: true });
  const blobs: BlobStore = await FsBlobStore.open(path.join(opts.dataDir, 'blobs'));
  const index = await openSqliteIndex(path.join(opts.dataDir, 'index.sqlite'));
  return {
    blobs,
    index,
    close: async () => {
      await index.close();
      await blobs.close?.();
    },
  };
}
