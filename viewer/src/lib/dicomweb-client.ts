/**
 * A thin typed DICOMweb data source. Names follow PS3.18 transactions. This is the only module that
 * knows server URLs (the DICOMweb root and the server's demo endpoint).
 */
import { env } from '../config/env';
import { type DicomJson, Tag } from './dicom-json';
import { FRAME_ACCEPT, type FrameBytes, frameFromResponse } from './frame-bytes';

export { FRAME_ACCEPT, type FrameBytes } from './frame-bytes';

export class DicomwebError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly url: string,
  ) {
    super(message);
    this.name = 'DicomwebError';
  }
}

export interface StudySearch {
  PatientName?: string;
  PatientID?: string;
  /** The assigning authority of PatientID (matched exactly, with PatientID). */
  IssuerOfPatientID?: string;
  AccessionNumber?: string;
  /** DICOM range, e.g. '20240101-20240131', '20240101-', '-20240131' or one date. */
  StudyDate?: string;
  ModalitiesInStudy?: string;
  StudyInstanceUID?: string;
  limit?: number;
  offset?: number;
}

const STUDY_FIELDS = [
  Tag.StudyDescription,
  Tag.PatientBirthDate,
  Tag.PatientSex,
  Tag.ModalitiesInStudy,
  Tag.NumberOfStudyRelatedSeries,
  Tag.NumberOfStudyRelatedInstances,
  Tag.InstitutionName,
  Tag.IssuerOfPatientID,
];
const SERIES_FIELDS = [
  Tag.SeriesDescription,
  Tag.SeriesNumber,
  Tag.Modality,
  Tag.NumberOfSeriesRelatedInstances,
  Tag.SeriesDate,
];

/**
 * priority: the fetch priority; requests for what the user has not asked to see yet (the patient's
 * other studies and their series) go 'low', behind those of the study being read.
 */
async function getJson<T>(url: string, signal?: AbortSignal, priority?: RequestPriority): Promise<T> {
  return (await getJsonResponse<T>(url, signal, priority)).body;
}

/** getJson, with the response's headers. */
async function getJsonResponse<T>(
  url: string,
  signal?: AbortSignal,
  priority?: RequestPriority,
): Promise<{ body: T; headers: Headers }> {
  let res: Response;
  try {
    res = await fetch(url, { headers: { Accept: 'application/dicom+json' }, signal, priority });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new DicomwebError(0, (e as Error).message, url);
  }
  if (res.status === 204) return { body: [] as T, headers: res.headers };
  if (!res.ok) {
    let message = res.statusText;
    try {
      const body = await res.text();
      if (body) message = body.slice(0, 300);
    } catch {
      /* keep statusText */
    }
    throw new DicomwebError(res.status, message, url);
  }
  const text = await res.text();
  return { body: (text ? JSON.parse(text) : []) as T, headers: res.headers };
}

/** Turns what a user typed into a QIDO PatientName value: words in order, each a prefix. */
export function patientNameQuery(typed: string): string {
  const t = typed.normalize('NFC').trim();
  if (!t) return '';
  if (/[*?]/.test(t)) return t;
  return `${t
    .split(/[\s^,]+/)
    .filter(Boolean)
    .join('*')}*`;
}

/** An ID as typed, without surrounding spaces: matched exactly (a * or ? typed is the user's wildcard). */
function trimmed(value: string): string {
  return value.trim();
}

/** QIDO-RS: search for studies. */
export async function searchForStudies(
  q: StudySearch,
  signal?: AbortSignal,
  priority?: RequestPriority,
): Promise<DicomJson[]> {
  return getJson<DicomJson[]>(studiesUrl(q), signal, priority);
}

/**
 * QIDO-RS: one page of a search for studies, and whether the archive has more after it: it said so
 * (Warning 299 "There are additional results that can be requested", PS3.18 8.3.4.1, also sent when it
 * lowered a limit larger than its maximum), or the page is as long as the limit asked for.
 */
export async function searchForStudiesPage(
  q: StudySearch,
  signal?: AbortSignal,
  priority?: RequestPriority,
): Promise<{ studies: DicomJson[]; more: boolean }> {
  const { body, headers } = await getJsonResponse<DicomJson[]>(studiesUrl(q), signal, priority);
  const more =
    /additional results/i.test(headers.get('Warning') ?? '') ||
    (q.limit !== undefined && body.length >= q.limit);
  return { studies: body, more: body.length > 0 && more };
}

function studiesUrl(q: StudySearch): string {
  const p = new URLSearchParams();
  if (q.PatientName) {
    p.set('PatientName', patientNameQuery(q.PatientName));
    p.set('fuzzymatching', 'true');
  }
  if (q.PatientID) p.set('PatientID', trimmed(q.PatientID));
  if (q.IssuerOfPatientID) p.set('IssuerOfPatientID', q.IssuerOfPatientID.trim());
  if (q.AccessionNumber) p.set('AccessionNumber', trimmed(q.AccessionNumber));
  if (q.StudyDate) p.set('StudyDate', q.StudyDate);
  if (q.ModalitiesInStudy) p.set('ModalitiesInStudy', q.ModalitiesInStudy);
  if (q.StudyInstanceUID) p.set('StudyInstanceUID', q.StudyInstanceUID);
  for (const f of STUDY_FIELDS) p.append('includefield', f);
  if (q.limit !== undefined) p.set('limit', String(q.limit));
  if (q.offset) p.set('offset', String(q.offset));
  return `${env.dicomwebRoot}/studies?${p}`;
}

/** QIDO-RS: search for series of a study. */
export async function searchForSeries(
  studyUID: string,
  signal?: AbortSignal,
  priority?: RequestPriority,
): Promise<DicomJson[]> {
  const p = new URLSearchParams();
  for (const f of SERIES_FIELDS) p.append('includefield', f);
  return getJson<DicomJson[]>(`${env.dicomwebRoot}/studies/${studyUID}/series?${p}`, signal, priority);
}

/** WADO-RS: every instance's metadata of one series, in one request. */
export async function retrieveSeriesMetadata(
  studyUID: string,
  seriesUID: string,
  signal?: AbortSignal,
  priority?: RequestPriority,
): Promise<DicomJson[]> {
  return getJson<DicomJson[]>(
    `${env.dicomwebRoot}/studies/${studyUID}/series/${seriesUID}/metadata`,
    signal,
    priority,
  );
}

/** URL of an Encapsulated PDF instance rendered as its document (the archive answers application/pdf). */
export function instanceDocumentUrl(studyUID: string, seriesUID: string, sopUID: string): string {
  return `${env.dicomwebRoot}/studies/${studyUID}/series/${seriesUID}/instances/${sopUID}/rendered?accept=application/pdf`;
}

/** URL of WADO-RS RetrieveInstanceFrames for one frame (1-based). */
export function instanceFramesUrl(
  studyUID: string,
  seriesUID: string,
  sopUID: string,
  frame: number,
): string {
  return `${env.dicomwebRoot}/studies/${studyUID}/series/${seriesUID}/instances/${sopUID}/frames/${frame}`;
}

/**
 * WADO-RS RetrieveInstanceFrames for one frame, with fetch (used before Cornerstone has loaded);
 * `accept` names the transfer syntaxes wanted (default: as stored).
 */
export async function retrieveFrame(
  url: string,
  accept: string = FRAME_ACCEPT,
  signal?: AbortSignal,
  priority: RequestPriority = 'high',
): Promise<FrameBytes | undefined> {
  const res = await fetch(url, { headers: { Accept: accept }, signal, priority });
  if (!res.ok) throw new DicomwebError(res.status, res.statusText, url);
  return frameFromResponse(res.headers.get('Content-Type') ?? '', new Uint8Array(await res.arrayBuffer()));
}

/** WADO-RS RetrieveBulkData: the bytes of a value the metadata gave as a BulkDataURI. */
export async function retrieveBulkData(uri: string, signal?: AbortSignal): Promise<Uint8Array> {
  const url = new URL(uri, `${env.dicomwebRoot}/`).href;
  const res = await fetch(url, {
    headers: { Accept: 'application/octet-stream, multipart/related; type="application/octet-stream"' },
    signal,
  });
  if (!res.ok) throw new DicomwebError(res.status, res.statusText, url);
  const body = new Uint8Array(await res.arrayBuffer());
  const part = frameFromResponse(res.headers.get('Content-Type') ?? 'application/octet-stream', body);
  if (!part) throw new DicomwebError(res.status, 'unreadable bulk data response', url);
  return part.pixelData;
}

/** The server's demo loader (not DICOMweb): generates and stores the demo study. */
export async function loadDemoStudy(): Promise<string> {
  const url = `${env.apiRoot}/demo`;
  const res = await fetch(url, { method: 'POST' });
  if (!res.ok) throw new DicomwebError(res.status, (await res.text()).slice(0, 300) || res.statusText, url);
  const body = (await res.json()) as { StudyInstanceUID?: string };
  if (!body.StudyInstanceUID) throw new DicomwebError(res.status, 'no StudyInstanceUID in reply', url);
  return body.StudyInstanceUID;
}
