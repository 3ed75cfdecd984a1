/**
 * The patient's other studies (priors), for comparison with the study being read: found with QIDO-RS
 * by the study's PatientID, and its IssuerOfPatientID when it has one, never by the patient's name.
 * The archive answers only what this user may read; nothing else is asked for or shown. The searches
 * and the series' metadata go with the fetch priority 'low', after the study's first image.
 */
import { type DicomJson, str, Tag, values } from '../../lib/dicom-json';
import {
  DicomwebError,
  retrieveSeriesMetadata,
  searchForSeries,
  searchForStudies,
} from '../../lib/dicomweb-client';
import { buildDisplaySet, type DisplaySet, type SeriesSummary, summarizeSeries } from './display-sets';
import { seriesOrder, withPaletteData } from './study-loader';

/** Most other studies listed (the QIDO limit). */
export const PRIORS_LIMIT = 100;

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

/** The patient of a study, as priors are matched: PatientID, and IssuerOfPatientID when it has one. */
export interface PatientKey {
  PatientID: string;
  IssuerOfPatientID: string;
}

export function patientKey(study: DicomJson): PatientKey | undefined {
  const PatientID = str(study, Tag.PatientID).trim();
  // A study without a PatientID belongs to no known patient: it has no priors.
  if (!PatientID) return undefined;
  return { PatientID, IssuerOfPatientID: str(study, Tag.IssuerOfPatientID).trim() };
}

/**
 * Whether a study found belongs to the patient: the same PatientID exactly (the archive's match may
 * be wider, e.g. a PatientID holding * or ?), and the same issuer when the current study names one.
 */
export function samePatient(key: PatientKey, study: DicomJson): boolean {
  if (str(study, Tag.PatientID).trim() !== key.PatientID) return false;
  return !key.IssuerOfPatientID || str(study, Tag.IssuerOfPatientID).trim() === key.IssuerOfPatientID;
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

/** The patient's other studies that this user may read, newest first (the current one left out). */
export async function findPriorStudies(current: DicomJson, signal?: AbortSignal): Promise<StudySummary[]> {
  const key = patientKey(current);
  if (!key) return [];
  const currentUID = str(current, Tag.StudyInstanceUID);
  const found = await searchForStudies(
    {
      PatientID: key.PatientID,
      IssuerOfPatientID: key.IssuerOfPatientID || undefined,
      limit: PRIORS_LIMIT,
    },
    signal,
    'low',
  );
  return found
    .filter((s) => samePatient(key, s) && str(s, Tag.StudyInstanceUID) !== currentUID)
    .map(summarizeStudy)
    .sort(newestFirst);
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
