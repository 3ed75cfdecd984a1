/**
 * Blob store: where DICOM objects live, byte for byte as received.
 * Deliberately small (Orthanc's IStorageArea has five methods; this has four plus close).
 * Implementations: fs-blob.ts (default, a folder), s3-blob.ts (S3-compatible object storage).
 */
import type { Readable } from 'node:stream';

export interface ByteRange {
  /** first byte, inclusive */
  start: number;
  /** last byte, exclusive */
  end: number;
}

const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;

/**
 * Whether key is a safe blob key: '/'-separated segments of letters, digits, '.', '_' and '-', each
 * starting with a letter or digit (so no '..', no leading '/', nothing that could escape the store).
 */
export function isValidBlobKey(key: string): boolean {
  return KEY_RE.test(key) && !key.split('/').some((s) => s === '.' || s === '..');
}

export class BlobNotFoundError extends Error {
  constructor(key: string) {
    super(`blob not found: ${key}`);
    this.name = 'BlobNotFoundError';
  }
}

export interface BlobStore {
  /**
   * Stores the whole body under key. Atomic: when the promise resolves the object is durable and
   * complete; when it rejects (the body threw, the disk is full) nothing is left under key.
   */
  put(key: string, body: AsyncIterable<Uint8Array>): Promise<{ size: number }>;
  /** Streams the object, or only [start, end) of it. Rejects with BlobNotFoundError. */
  get(key: string, range?: ByteRange): Promise<Readable>;
  /**
   * Reads [start, end) into memory: for small ranges (a frame, a bulk value), where a stream costs more
   * than the bytes. Rejects with BlobNotFoundError, or RangeError when the object is shorter than end.
   */
  read(key: string, range: ByteRange): Promise<Uint8Array>;
  /** Removes the object; removing a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** Every key under prefix (for reindex and fsck). */
  list(prefix?: string): AsyncIterable<string>;
  close?(): Promise<void>;
}
