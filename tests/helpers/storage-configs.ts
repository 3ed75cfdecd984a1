/**
 * The storage combinations the project supports, for tests that must pass on each: the embedded default
 * (folder + SQLite) and S3 + PostgreSQL against real servers started here (s3rver over HTTP, a throwaway
 * PostgreSQL cluster).
 */
import { startPostgres } from './postgres';
import { startS3rver } from './s3rver';

export interface StorageBackends {
  /** Variables for the archive (in-process startServer({ env }) or a server process). */
  env: Record<string, string>;
  close(): Promise<void>;
}

export interface StorageConfig {
  name: string;
  start(): Promise<StorageBackends>;
}

const AWS = ['AWS_ENDPOINT_URL_S3', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const;

export const EMBEDDED: StorageConfig = {
  name: 'filesystem + SQLite',
  start: async () => ({ env: {}, close: async () => {} }),
};

export const S3_POSTGRES: StorageConfig = {
  name: 'S3 + PostgreSQL',
  async start() {
    const bucket = 'pacs-test';
    const [s3, pg] = await Promise.all([startS3rver([bucket]), startPostgres()]);
    const aws = {
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    };
    // The AWS SDK reads these itself; an archive started in this process needs them in process.env.
    const saved = Object.fromEntries(AWS.map((k) => [k, process.env[k]]));
    Object.assign(process.env, aws);
    return {
      env: {
        ...aws,
        PACS_BLOB_STORE: `s3://${bucket}/archive`,
        PACS_S3_FORCE_PATH_STYLE: 'true',
        DATABASE_URL: await pg.createDatabase(),
      },
      async close() {
        for (const k of AWS) {
          if (saved[k] === undefined) delete process.env[k];
          else process.env[k] = saved[k];
        }
        await Promise.all([s3.close(), pg.close()]);
      },
    };
  },
};

export const STORAGE_CONFIGS: StorageConfig[] = [EMBEDDED, S3_POSTGRES];
