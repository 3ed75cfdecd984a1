/** DELETE of a study, series or instance: index rows first (so nothing points at a missing blob), then blobs. */
import type { Request, Response } from 'express';
import { notFound } from '../../dicomweb/status';
import type { BlobStore } from '../../storage/blob';
import type { Index } from '../../storage/index';
import type { Logger } from '../log';
import { deleteStoredBlob } from '../transcode/copies';
import { describeScope, scopeOf } from './common';

export function deleteResource(ctx: { blobs: BlobStore; index: Index; log: Logger }) {
  return async (req: Request, res: Response) => {
    const scope = scopeOf(req);
    const keys = await ctx.index.deleteInstances(scope);
    if (keys.length === 0) throw notFound(`${describeScope(scope)} is not in the archive`);
    for (const key of keys) {
      await deleteStoredBlob(ctx.blobs, key).catch((err) =>
        ctx.log.error('cannot delete blob', { err, key }),
      );
    }
    ctx.log.info('deleted', { ...scope, instances: keys.length });
    res.status(204).end();
  };
}
