/**
 * The archive configured for S3 (PACS_BLOB_STORE=s3://..., PACS_S3_FORCE_PATH_STYLE=true) against s3rver:
 * STOW puts the objects in the bucket, WADO reads them back from it. The connection comes from the
 * standard AWS variables, which the AWS SDK reads itself, so this test sets them in process.env.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../server/config';
import { S3BlobStore } from '../../storage/s3-blob';
import { startServer, type TestServer } from '../helpers/server';
import { startS3rver, type TestS3 } from '../helpers/s3rver';
import { getJson, value } from './dicomweb';

const BUCKET = 'pacs-e2e';
const AWS = ['AWS_ENDPOINT_URL_S3', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const;

describe('archive on S3 storage', () => {
  let s3: TestS3;
  let server: TestServer;
  const saved: Record<string, string | undefined> = {};
  beforeAll(async () => {
    s3 = await startS3rver([BUCKET]);
    for (const k of AWS) saved[k] = process.env[k];
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    });
    server = await startServer({
      env: { PACS_BLOB_STORE: `s3://${BUCKET}/archive`, PACS_S3_FORCE_PATH_STYLE: 'true' },
    });
  });
  afterAll(async () => {
    await server?.close();
    await s3?.close();
    for (const k of AWS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  it('stores instances in the bucket and serves them from it', async () => {
    expect((await fetch(`${server.baseUrl}/api/demo`, { method: 'POST' })).ok).toBe(true);
    const { json: studies } = await getJson(`${server.dicomweb}/studies`);
    expect(studies.length).toBeGreaterThan(0);
    const study = value(studies[0], '0020000D') as string;
    const { json: instances } = await getJson(`${server.dicomweb}/studies/${study}/instances`);
    const series = value(instances[0], '0020000E') as string;
    const sop = value(instances[0], '00080018') as string;

    const store = await S3BlobStore.open({ url: `s3://${BUCKET}/archive`, forcePathStyle: true });
    try {
      const keys: string[] = [];
      for await (const k of store.list()) keys.push(k);
      expect(keys.length).toBeGreaterThanOrEqual(instances.length);
    } finally {
      await store.close();
    }
    const frame = await fetch(
      `${server.dicomweb}/studies/${study}/series/${series}/instances/${sop}/frames/1`,
      {
        headers: { Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' },
      },
    );
    expect(frame.status).toBe(200);
    expect((await frame.arrayBuffer()).byteLength).toBeGreaterThan(1000);
  });

  it('refuses a malformed PACS_BLOB_STORE at start-up', () => {
    expect(() => loadConfig({ PACS_BLOB_STORE: 'minio://bucket' })).toThrow(ConfigError);
    expect(() => loadConfig({ PACS_S3_FORCE_PATH_STYLE: 'yes' })).toThrow(ConfigError);
    expect(loadConfig({ PACS_BLOB_STORE: 's3://b-1/p/q', PACS_S3_FORCE_PATH_STYLE: 'true' })).toMatchObject({
      blobStore: 's3://b-1/p/q',
      s3ForcePathStyle: true,
    });
  });
});
