/**
 * The storage configurations the reliability tests (crash, storage faults) run on, each with the
 * external services it needs started here and under the test's control (stop, start again):
 * - filesystem + SQLite: the embedded default, nothing to start;
 * - S3 + SQLite: a real s3rver that can be stopped and restarted on the same port and folder;
 * - S3 + PostgreSQL: the same s3rver and a throwaway PostgreSQL cluster (tests/helpers/postgres.ts),
 *   skipped with a message where the PostgreSQL server binaries are not installed.
 */
import { fsck, type MaintenanceReport } from '../../server/maintenance';
import { REPO_ROOT } from '../../scripts/lib/archive-process';
import { postgresBinDir } from '../../scripts/lib/pg-cluster';
import { loadConfig } from '../../server/config';
import { startPostgres } from './postgres';
import { runTs } from './process';
import { startRestartableS3rver } from './s3rver-restartable';

export interface Service {
  stop(): Promise<void>;
  start(): Promise<void>;
  /**
   * Undefined while the service serves (or was stopped by the test); else what went wrong with it by
   * itself (died, not answering), so that a test can tell the service's failure from the archive's.
   */
  fault(): Promise<string | undefined>;
}

export interface StorageSetup {
  /** Variables for the archive (besides PACS_DATA_DIR). */
  env: Record<string, string>;
  /** The external services, by name ('s3', 'postgres'), to stop and start during a test. */
  services: Record<string, Service>;
  close(): Promise<void>;
}

export interface ReliabilityStorage {
  name: string;
  /** Why this configuration cannot run in this checkout or on this machine; undefined when it can. */
  unavailable?: string;
  start(): Promise<StorageSetup>;
}

const BUCKET = 'pacs-reliability';

export const FS_SQLITE: ReliabilityStorage = {
  name: 'filesystem + SQLite',
  start: async () => ({ env: {}, services: {}, close: async () => {} }),
};

export const S3_SQLITE: ReliabilityStorage = {
  name: 'S3 (s3rver) + SQLite',
  async start() {
    const s3 = await startRestartableS3rver([BUCKET]);
    return { env: s3.env(BUCKET), services: { s3 }, close: () => s3.close() };
  },
};

/** Why a PostgreSQL cluster cannot be started here (no server binaries), or undefined. */
function postgresMissing(): string | undefined {
  try {
    postgresBinDir();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export const S3_POSTGRES: ReliabilityStorage = {
  name: 'S3 (s3rver) + PostgreSQL',
  unavailable: postgresMissing(),
  async start() {
    const [s3, pg] = await Promise.all([startRestartableS3rver([BUCKET]), startPostgres()]);
    return {
      env: { ...s3.env(BUCKET), DATABASE_URL: await pg.createDatabase() },
      services: { s3, postgres: pg },
      close: async () => {
        await Promise.all([s3.close(), pg.close()]);
      },
    };
  },
};

const ALL = [FS_SQLITE, S3_SQLITE, S3_POSTGRES];

/**
 * The configurations a test runs on: the embedded default and the scaled one (S3 + PostgreSQL, or
 * S3 + SQLite where PostgreSQL is not installed). PACS_RELIABILITY_STORAGE=all runs all three.
 */
export function reliabilityStorages(): ReliabilityStorage[] {
  if (process.env.PACS_RELIABILITY_STORAGE === 'all') return ALL;
  return [FS_SQLITE, S3_POSTGRES.unavailable ? S3_SQLITE : S3_POSTGRES];
}

/** The configurations with an object store (for the S3 fault test), same rule. */
export function s3Storages(): ReliabilityStorage[] {
  if (process.env.PACS_RELIABILITY_STORAGE === 'all') return [S3_SQLITE, S3_POSTGRES];
  return [S3_POSTGRES.unavailable ? S3_SQLITE : S3_POSTGRES];
}

const AWS = ['AWS_ENDPOINT_URL_S3', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'];

/**
 * `npm run fsck` (or with repair `npm run fsck -- --repair`) on a stopped archive's storage, in this
 * process. The AWS SDK reads its settings from process.env: they are set for the call only.
 */
export async function fsckStorage(
  dataDir: string,
  env: Record<string, string>,
  repair = false,
): Promise<MaintenanceReport> {
  const saved = Object.fromEntries(AWS.map((k) => [k, process.env[k]]));
  for (const k of AWS) if (env[k] !== undefined) process.env[k] = env[k];
  try {
    return await fsck(loadConfig({ ...env, PACS_DATA_DIR: dataDir }), { repair });
  } finally {
    for (const k of AWS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

/** `npm run fsck [-- --repair]` itself, as a process (what an operator runs): exit code and output. */
export async function fsckCommand(
  dataDir: string,
  env: Record<string, string>,
  repair = false,
): Promise<{ code: number | null; output: string }> {
  return runTs('scripts/maintenance.ts', ['fsck', ...(repair ? ['--repair'] : [])], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, PACS_DATA_DIR: dataDir },
  });
}
