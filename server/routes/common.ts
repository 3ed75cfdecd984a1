/** Small helpers shared by the DICOMweb routes. */
import type { Request } from 'express';
import { badRequest } from '../../dicomweb/status';
import { isAcceptableUID } from '../../dicomweb/uids';
import type { Scope } from '../../storage/index';

export const DICOMWEB_ROOT = '/dicomweb';

/** Absolute DICOMweb root as the client reached it (for RetrieveURL and BulkDataURI). */
export function publicRoot(req: Request): string {
  const configured = req.app.locals.publicUrl as string | undefined;
  if (configured) return `${configured.replace(/\/$/, '')}${DICOMWEB_ROOT}`;
  return `${req.protocol}://${req.get('host') ?? 'localhost'}${DICOMWEB_ROOT}`;
}

function uid(value: unknown, name: string): string {
  if (!isAcceptableUID(value))
    throw badRequest(`${name} "${String(value).slice(0, 80)}" in the URL is not a valid UID`);
  return value;
}

/** The study/series/instance named in the path, validated. */
export function scopeOf(req: Request): Scope {
  const p = req.params as Record<string, string | undefined>;
  const scope: Scope = { StudyInstanceUID: uid(p.study, 'StudyInstanceUID') };
  if (p.series !== undefined) scope.SeriesInstanceUID = uid(p.series, 'SeriesInstanceUID');
  if (p.instance !== undefined) scope.SOPInstanceUID = uid(p.instance, 'SOPInstanceUID');
  return scope;
}

export function describeScope(s: Scope): string {
  if (s.SOPInstanceUID) return `instance ${s.SOPInstanceUID}`;
  if (s.SeriesInstanceUID) return `series ${s.SeriesInstanceUID}`;
  return `study ${s.StudyInstanceUID}`;
}
