/**
 * Opens the configured storage: the blob store (a folder by default, or S3-compatible object storage)
 * and the index (SQLite in the data folder by default, or PostgreSQL).
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
  /** '' or absent: the SQLite index dataDir/index.sqlite; postgres://…: the PostgreSQL index in that database. */
  databaseUrl?: string;
}

/** The folder of the filesystem blob store; undefined for S3. */
export function blobFolder(opts: StorageOptions): string | undefined {
  return opts.blobStore ? undefined : path.join(opts.dataDir, 'blobs');
}

/** The file of the SQLite index; undefined for PostgreSQL. */
export function sqliteIndexFile(opts: StorageOptions): string | undefined {
  return opts.databaseUrl ? undefined : path.join(opts.dataDir, 'index.sqlite');
}

export async function openStorage(opts: StorageOptions): Promise<Storage> {
  await mkdir(opts.dataDir, { recursive: true });
  const blobs: BlobStore = opts.blobStore
    ? // Loaded only when configured: the embedded default does not pay for the AWS SDK at start-up.
      await (await import('./s3-blob')).S3BlobStore.open({
        url: opts.blobStore,
        forcePathStyle: opts.s3ForcePathStyle,
      })
    : await FsBlobStore.open(blobFolder(opts) as string);
  let index: Index;
  try {
    index = opts.databaseUrl
      ? // Loaded only when configured, like the S3 store.
        await (await import('./pg-index')).openPgIndex(opts.databaseUrl)
      : await openSqliteIndex(sqliteIndexFile(opts) as string);
  } catch (err) {
    await blobs.close?.();
    throw err;
  }
  return {
    blobs,
    index,
    close: async () => {
      await index.close();
      await blobs.close?.();
    },
  };
}
