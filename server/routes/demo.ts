/**
 * POST /api/demo: stores the synthetic demo study (server/demo.ts) through the same ingest path as
 * STOW-RS, so a new archive has something to show. Idempotent: the demo has fixed UIDs.
 */
import type { Request, Response } from 'express';
import { DicomwebError } from '../../dicomweb/status';
import { demoStudy, demoStudyInstanceUID } from '../demo';
import { type IngestContext, ingestInstance } from '../ingest';
import { publicRoot } from './common';

export function demo(ctx: IngestContext) {
  return async (req: Request, res: Response) => {
    const root = publicRoot(req);
    let stored = 0;
    for (const file of demoStudy()) {
      const r = await ingestInstance(ctx, [file], { publicRoot: root });
      if (!r.ok) throw new DicomwebError(500, `the demo study could not be stored: ${r.failed.message}`);
      stored++;
    }
    res.status(200).json({ StudyInstanceUID: demoStudyInstanceUID(), instances: stored });
  };
}
