/**
 * S3-compatible blob store (AWS S3, MinIO, Ceph RGW, ...): one object per blob under s3://bucket/prefix.
 * Connection settings come from the standard AWS variables, read by the SDK itself (AWS_REGION,
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3, profiles, ...); options given here win.
 *
 * put() streams the body with a multipart upload (parts of PART_SIZE, at most QUEUE_SIZE in flight, so
 * memory stays bounded whatever the object's size); a body smaller than one part is a single PutObject.
 * An S3 object appears only when its upload completes, so a failed put leaves no object; the parts of
 * a failed multipart upload are discarded with AbortMultipartUpload. (A process killed mid-upload can
 * still leave parts: give the bucket a lifecycle rule that aborts incomplete multipart uploads.)
 * get() and read() of a range are ranged GETs of those bytes only, never a whole-object download.
 */
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { BlobNotFoundError, type BlobStore, type ByteRange, isValidBlobKey } from './blob';

const PART_SIZE = 8 * 1024 * 1024;
const QUEUE_SIZE = 4;

export interface S3BlobStoreOptions {
  /** s3://bucket or s3://bucket/prefix */
  url: string;
  /** Path-style addressing (http://host/bucket/key), which MinIO and most on-premise stores need. */
  forcePathStyle?: boolean;
  /** Endpoint URL; absent, the SDK reads AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (absent too: AWS). */
  endpoint?: string;
  /** Region; absent, the SDK reads AWS_REGION or the profile. */
  region?: string;
  /** Credentials; absent, the SDK's default chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ...). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Multipart part size in bytes (at least 5 MiB). */
  partSize?: number;
  /** Parts uploaded at once by one put(). */
  queueSize?: number;
  /** Keys per ListObjectsV2 page (at most 1000; smaller only to exercise paging in tests). */
  listPageSize?: number;
}

/** Splits s3://bucket/prefix; the prefix loses its leading and trailing slashes. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new Error(`"${url}" is not an S3 location (expected s3://bucket or s3://bucket/prefix)`);
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix !== '' && !isValidBlobKey(prefix)) throw new Error(`"${url}": invalid prefix "${prefix}"`);
  return { bucket: m[1], prefix };
}

export class S3BlobStore implements BlobStore {
  readonly client: S3Client;
  readonly bucket: string;
  /** Prepended to every key: '' or 'prefix/'. */
  readonly base: string;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly listPageSize: number;

  constructor(opts: S3BlobStoreOptions) {
    const { bucket, prefix } = parseS3Url(opts.url);
    this.bucket = bucket;
    this.base = prefix ? `${prefix}/` : '';
    this.partSize = opts.partSize ?? PART_SIZE;
    this.queueSize = opts.queueSize ?? QUEUE_SIZE;
    this.listPageSize = Math.min(1000, opts.listPageSize ?? 1000);
    const config: S3ClientConfig = { forcePathStyle: opts.forcePathStyle ?? false };
    if (opts.endpoint) config.endpoint = opts.endpoint;
    if (opts.region) config.region = opts.region;
    if (opts.credentials) config.credentials = opts.credentials;
    this.client = new S3Client(config);
  }

  /** Creates the store and checks that the bucket answers, so a wrong setting fails at start-up. */
  static async open(opts: S3BlobStoreOptions): Promise<S3BlobStore> {
    const store = new S3BlobStore(opts);
    try {
      await store.client.send(new HeadBucketCommand({ Bucket: store.bucket }));
    } catch (err) {
      store.client.destroy();
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      throw new Error(
        `S3 bucket "${store.bucket}" is not usable${status ? ` (HTTP ${status})` : ''}: ${(err as Error).message || (err as Error).name}`,
        { cause: err },
      );
    }
    return store;
  }

  private objectKey(key: string): string {
    if (!isValidBlobKey(key)) throw new Error(`invalid blob key "${key}"`);
    return this.base + key;
  }

  async put(key: string, body: AsyncIterable<Uint8Array>): Promise<{ size: number }> {
    const Key = this.objectKey(key);
    let size = 0;
    let bodyFailed = false;
    let bodyError: unknown;
    const counted = async function* (): AsyncGenerator<Uint8Array> {
      try {
        for await (const chunk of body) {
          size += chunk.byteLength;
          yield chunk;
        }
      } catch (err) {
        bodyFailed = true;
        bodyError = err;
        throw err;
      }
    };
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: Readable.from(counted(), { objectMode: false }) },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      // The body's own failure is the cause, even when aborting the multipart upload failed after it.
      if (bodyFailed) throw bodyError;
      throw err;
    }
    return { size };
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const Key = this.objectKey(key);
    if (range && range.end <= range.start) {
      await this.head(key, Key);
      return Readable.from([]);
    }
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key, Range: range ? httpRange(range) : undefined }),
      );
      if (!(res.Body instanceof Readable)) throw new Error(`S3 GetObject ${Key}: no body stream`);
      return res.Body;
    } catch (err) {
      // Like a file: a range that starts past the end streams nothing.
      if (range && isInvalidRange(err)) return Readable.from([]);
      throw this.mapError(err, key);
    }
  }

  async read(key: string, range: ByteRange): Promise<Uint8Array> {
    const Key = this.objectKey(key);
    if (!Number.isInteger(range.start) || !Number.isInteger(range.end) || range.start < 0)
      throw new RangeError(`invalid range [${range.start}, ${range.end}) of blob ${key}`);
    if (range.end <= range.start) {
      await this.head(key, Key);
      return new Uint8Array(0);
    }
    let bytes: Uint8Array;
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key, Range: httpRange(range) }),
      );
      if (!res.Body) throw new Error(`S3 GetObject ${Key}: no body`);
      bytes = await res.Body.transformToByteArray();
    } catch (err) {
      if (isInvalidRange(err)) throw new RangeError(`blob ${key} ends before byte ${range.end}`);
      throw this.mapError(err, key);
    }
    if (bytes.length < range.end - range.start)
      throw new RangeError(`blob ${key} ends before byte ${range.end}`);
    return bytes;
  }

  async delete(key: string): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      if (!(this.mapError(err, key) instanceof BlobNotFoundError)) throw err;
    }
  }

  async *list(prefix = ''): AsyncIterable<string> {
    let ContinuationToken: string | undefined;
    do {
      const res = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.base + prefix,
          MaxKeys: this.listPageSize,
          ContinuationToken,
        }),
      );
      for (const o of res.Contents ?? []) if (o.Key) yield o.Key.slice(this.base.length);
      ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private async head(key: string, Key: string): Promise<void> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      throw this.mapError(err, key);
    }
  }

  private mapError(err: unknown, key: string): unknown {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NoSuchBucket') return err;
    if (e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404)
      return new BlobNotFoundError(key);
    return err;
  }
}

function httpRange(range: ByteRange): string {
  return `bytes=${range.start}-${range.end - 1}`;
}

function isInvalidRange(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'InvalidRange' || e.$metadata?.httpStatusCode === 416;
}
