/**
 * GET /api/statistics (administrators): how much the archive holds, where, and the free space of its
 * local disks (server/disk.ts). Counts and bytes come from the index (Index.statistics: indexes only).
 */
import type { Request, Response } from 'express';
import type { Index, IndexStatistics } from '../../storage/index';
import { sqliteIndexFile } from '../../storage/open';
import { type Config, storageOptions } from '../config';
import { type DiskSpace, diskSpace, localDisks } from '../disk';

/** The answer of GET /api/statistics. */
export interface Statistics extends IndexStatistics {
  blobStore: { kind: 'filesystem' | 's3'; location: string | undefined };
  index: { kind: 'sqlite' | 'postgresql'; location: string | undefined; disk?: DiskSpace };
  disk: DiskSpace | null;
}

export function statistics(ctx: { index: Index; config: Config }) {
  return async (_req: Request, res: Response) => {
    const { config } = ctx;
    const warn = config.diskWarnPercent;
    const opts = storageOptions(config);
    const disks = await localDisks(opts);
    const [counts, blobDisk, indexDisk] = await Promise.all([
      ctx.index.statistics(),
      disks.blobs === undefined ? null : diskSpace(disks.blobs, warn),
      disks.index === undefined ? null : diskSpace(disks.index, warn),
    ]);
    const answer: Statistics = {
      ...counts,
      blobStore: config.blobStore
        ? // s3://bucket/prefix: the credentials are the AWS variables', never in it
          { kind: 's3', location: config.blobStore }
        : { kind: 'filesystem', location: disks.blobs },
      index: config.databaseUrl
        ? { kind: 'postgresql', location: databaseLocation(config.databaseUrl) }
        : // its own disk only when not on the blobs' file system (or the blobs are in S3)
          { kind: 'sqlite', location: sqliteIndexFile(opts), ...(indexDisk && { disk: indexDisk }) },
      disk: blobDisk,
    };
    res.json(answer);
  };
}

/** postgresql://host:port/database: no user, no password, no parameters. */
function databaseLocation(url: string): string {
  const u = new URL(url);
  return `postgresql://${u.host}${u.pathname}`;
}
