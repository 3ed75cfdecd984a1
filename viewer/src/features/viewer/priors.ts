/**
 * The patient's other studies (priors), for comparison with the study being read: found with QIDO-RS
 * by the study's PatientID (never by the patient's name), and kept only when they are the same patient
 * by patient-match.ts (the same PatientID exactly, the same IssuerOfPatientID or both none, and no other
 * name or birth date). Studies of the same PatientID that fail that rule are not offered; they are
 * counted, with why, so that the panel can say they exist. The search is not narrowed by the issuer, so
 * that a study of the same PatientID without one (or with one when the current study has none) is
 * counted too.
 * The archive answers only what this user may read; nothing else is asked for or shown. The searches
 * and the series' metadata go with the fetch priority 'low', after the study's first image.
 */
import { type DicomJson, str, Tag, values } from '../../lib/dicom-json';
import {
  DicomwebError,
  retrieveSeriesMetadata,
  searchForSeries,
  searchForStudiesPage,
} from '../../lib/dicomweb-client';
import { buildDisplaySet, type DisplaySet, type SeriesSummary, summarizeSeries } from './display-sets';
import { type MismatchReason, matchPatient, patientIdentity } from './patient-match';
import { seriesOrder, withPaletteData } from './study-loader';

/** Most other studies listed. */
export const PRIORS_LIMIT = 100;
/** Studies asked for per QIDO request. */
export const PRIORS_PAGE = 100;
/** Most studies of the PatientID read (in pages, newest first) to find the ones listed. */
export const PRIORS_MAX_SEARCHED = 500;

export interface StudySummary {
  StudyInstanceUID: string;
  StudyDate: string;
  StudyTime: string;
  StudyDescription: string;
  /** ModalitiesInStudy, as the archive gives them */
  modalities: string[];
  /** the study's QIDO record (patient and study attributes, for the viewport's overlay) */
  record: DicomJson;
}

/** Studies of the same PatientID not taken as the patient's: how many, and how many for each reason. */
export interface Withheld {
  count: number;
  /** studies with that reason (a study may have several) */
  reasons: Record<MismatchReason, number>;
}

export interface PriorStudies {
  /** the patient's other studies, newest first, at most PRIORS_LIMIT */
  studies: StudySummary[];
  /** studies of the same PatientID that are another patient's (another issuer, name or birth date) */
  withheld: Withheld;
  /**
   * the archive has more studies of this PatientID than were looked at or listed: `studies` are the
   * newest ones
   */
  more: boolean;
}

export function summarizeStudy(study: DicomJson): StudySummary {
  return {
    StudyInstanceUID: str(study, Tag.StudyInstanceUID),
    StudyDate: str(study, Tag.StudyDate).trim(),
    StudyTime: str(study, Tag.StudyTime).trim(),
    StudyDescription: str(study, Tag.StudyDescription),
    modalities: values(study, Tag.ModalitiesInStudy).map(String),
    record: study,
  };
}

/** Newest first (by StudyDate, then StudyTime); studies without a date last. */
export function newestFirst(a: StudySummary, b: StudySummary): number {
  const ka = `${a.StudyDate}${a.StudyTime}`;
  const kb = `${b.StudyDate}${b.StudyTime}`;
  if (!a.StudyDate !== !b.StudyDate) return a.StudyDate ? -1 : 1;
  return ka < kb ? 1 : ka > kb ? -1 : 0;
}

/**
 * The patient's other studies that this user may read, newest first (the current one left out). The
 * archive answers /studies newest first (StudyDate, StudyTime, then StudyInstanceUID, descending), so
 * pages are read from offset 0 until it has no more, PRIORS_LIMIT studies of the patient are found and
 * one more, or PRIORS_MAX_SEARCHED studies have been read.
 */
export async function findPriorStudies(current: DicomJson, signal?: AbortSignal): Promise<PriorStudies> {
  const withheld: Withheld = { count: 0, reasons: { issuer: 0, name: 0, birthDate: 0 } };
  const identity = patientIdentity(current);
  if (!identity) return { studies: [], withheld, more: false };
  const currentUID = str(current, Tag.StudyInstanceUID);
  const same: DicomJson[] = [];
  const seen = new Set<string>([currentUID]);
  let offset = 0;
  let more = false;
  for (;;) {
    const page = await searchForStudiesPage(
      { PatientID: identity.PatientID, limit: PRIORS_PAGE, offset },
      signal,
      'low',
    );
    offset += page.studies.length;
    for (const s of page.studies) {
      const uid = str(s, Tag.StudyInstanceUID);
      // A study met twice (one stored between two pages) is counted once.
      if (seen.has(uid)) continue;
      seen.add(uid);
      const m = matchPatient(identity, s);
      if (m.kind === 'same') same.push(s);
      else if (m.kind === 'conflict') {
        withheld.count++;
        for (const r of m.reasons) withheld.reasons[r]++;
      }
    }
    if (!page.more) break;
    if (same.length > PRIORS_LIMIT || offset >= PRIORS_MAX_SEARCHED) {
      more = true;
      break;
    }
  }
  const studies = same.map(summarizeStudy).sort(newestFirst);
  if (studies.length > PRIORS_LIMIT) more = true;
  return { studies: studies.slice(0, PRIORS_LIMIT), withheld, more };
}

/** The series of another study, in the viewer's order (QIDO, low priority). */
export async function priorSeries(studyUID: string, signal?: AbortSignal): Promise<SeriesSummary[]> {
  const series = await searchForSeries(studyUID, signal, 'low').catch((e) => {
    if (e instanceof DicomwebError && e.status === 404) return [] as DicomJson[];
    throw e;
  });
  return seriesOrder(series).map((s) => summarizeSeries(studyUID, s));
}

/** A series' display set (its metadata with WADO-RS, low priority). */
export async function priorDisplaySet(summary: SeriesSummary, signal?: AbortSignal): Promise<DisplaySet> {
  const instances = await retrieveSeriesMetadata(
    summary.StudyInstanceUID,
    summary.SeriesInstanceUID,
    signal,
    'low',
  ).then(withPaletteData);
  return buildDisplaySet(summary, instances);
}
