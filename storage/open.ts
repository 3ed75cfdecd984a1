/**
 * Opens the configured storage: the blob store (a folder by default, or S3-compatible object storage)
 * and the index (SQLite).
 */
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

export interface StorageOptions {
  dataDir: string;
  /** '' or absent: the filesystem store under dataDir/blobs; s3://bucket/prefix: S3-compatible storage. */
  blobStore?: string;
  s3ForcePathStyle?: boolean;
}

export async function openStorage(opts: StorageOptions): Promise<Storage> {
  await mkdir(opts.dataDir, { recursive: true });
  const blobs: BlobStore = opts.blobStore
    ? // Loaded only when configured: the embedded default does not pay for the AWS SDK at start-up.
      await (await import('./s3-blob')).S3BlobStore.open({
        url: opts.blobStore,
        forcePathStyle: opts.s3ForcePathStyle,
      })
    : await FsBlobStore.open(path.join(opts.dataDir, 'blobs'));
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
