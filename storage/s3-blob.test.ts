/**
 * The blob contract against a real S3 server over HTTP (s3rver in a child process, on a free port, in a
 * temporary folder; see tests/helpers/s3rver.ts), plus what only S3 has: prefixes, paging, multipart abort.
 */
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBlobContract } from '../tests/contract/blob-contract';
import { startS3rver, type TestS3 } from '../tests/helpers/s3rver';
import { BlobNotFoundError } from './blob';
import { parseS3Url, S3BlobStore, type S3BlobStoreOptions } from './s3-blob';

const BUCKET = 'pacs-test';
let s3: TestS3;

beforeAll(async () => {
  s3 = await startS3rver([BUCKET]);
});

afterAll(async () => {
  await s3?.close();
});

function options(url: string): S3BlobStoreOptions {
  return {
    url,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    // Pages of 2 keys, so every list() in the contract goes through ListObjectsV2 continuation tokens.
    listPageSize: 2,
  };
}

runBlobContract('S3 (s3rver)', () => S3BlobStore.open(options(`s3://${BUCKET}/pacs/blobs`)));

describe('S3BlobStore specifics', () => {
  it('parses s3:// locations', () => {
    expect(parseS3Url('s3://bucket')).toEqual({ bucket: 'bucket', prefix: '' });
    expect(parseS3Url('s3://my.bucket-1/a/b/')).toEqual({ bucket: 'my.bucket-1', prefix: 'a/b' });
    expect(() => parseS3Url('http://bucket/x')).toThrow();
    expect(() => parseS3Url('s3://B/x')).toThrow();
    expect(() => parseS3Url('s3://bucket/../x')).toThrow();
  });

  it('fails at open when the bucket does not exist', async () => {
    await expect(S3BlobStore.open(options('s3://no-such-bucket'))).rejects.toThrow(/no-such-bucket/);
  });

  it('keeps objects under its prefix and lists them without it', async () => {
    const store = await S3BlobStore.open(options(`s3://${BUCKET}/tenant-a`));
    const other = await S3BlobStore.open(options(`s3://${BUCKET}/tenant-b`));
    try {
      await store.put(
        'x/1.dcm',
        (async function* () {
          yield Buffer.from('one');
        })(),
      );
      const raw = await store.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'tenant-a/' }));
      expect(raw.Contents?.map((o) => o.Key)).toEqual(['tenant-a/x/1.dcm']);
      const keys: string[] = [];
      for await (const k of store.list()) keys.push(k);
      expect(keys).toEqual(['x/1.dcm']);
      await expect(other.get('x/1.dcm')).rejects.toBeInstanceOf(BlobNotFoundError);
    } finally {
      await store.close();
      await other.close();
    }
  });

  it('aborts the multipart upload of a failed body, leaving no parts', async () => {
    const store = await S3BlobStore.open(options(`s3://${BUCKET}/abort`));
    try {
      const before = s3.aborted.length;
      async function* failing(): AsyncGenerator<Uint8Array> {
        for (let i = 0; i < 20 * 16; i++) yield new Uint8Array(64 * 1024).fill(7);
        throw new Error('client went away');
      }
      await expect(store.put('x.dcm', failing())).rejects.toThrow('client went away');
      expect(s3.aborted.length).toBe(before + 1);
      expect(await s3.hasDir(s3.aborted[s3.aborted.length - 1])).toBe(false);
      await expect(store.get('x.dcm')).rejects.toBeInstanceOf(BlobNotFoundError);
    } finally {
      await store.close();
    }
  });
});
