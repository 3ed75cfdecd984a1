/**
 * Fetches what the viewer needs of a study, started as soon as the route is known (before the
 * Cornerstone chunk has arrived): the study's QIDO record, its series, and each series' metadata in
 * one request per series — the series shown first is asked first.
 */
import { type DicomJson, inlineWords, littleEndianWords, num, str, Tag } from '../../lib/dicom-json';
import {
  DicomwebError,
  type FrameBytes,
  instanceFramesUrl,
  retrieveBulkData,
  retrieveFrame,
  retrieveSeriesMetadata,
  searchForSeries,
  searchForStudies,
} from '../../lib/dicomweb-client';
import { acceptForFrame, noteStoredSyntax } from '../../lib/transfer-settings';
import { orderedImages } from './stack-order';

export interface StudyRecord {
  study: DicomJson;
  series: DicomJson[];
}

export interface LoadedStudy {
  uid: string;
  record: Promise<StudyRecord>;
  metadata(seriesUID: string): Promise<DicomJson[]>;
  /** The first slice of the first series, fetched as soon as its metadata arrived, keyed by frame URL. */
  firstFrames: Map<string, Promise<FrameBytes | undefined>>;
  firstFrameArrived: boolean;
}

let current: LoadedStudy | null = null;

/**
 * The frame at url if the loader fetched it ahead (once: the bytes are handed over, not kept).
 * The viewer calls this before asking Cornerstone for the image, so on a slow link the first slice
 * travels while the viewer's code is still downloading instead of after it.
 */
export function takePrefetchedFrame(url: string): Promise<FrameBytes | undefined> | undefined {
  const p = current?.firstFrames.get(url);
  if (p) current?.firstFrames.delete(url);
  return p;
}

/** The frame at url if the loader fetched it ahead, left for takePrefetchedFrame (the first view reads it). */
export function peekPrefetchedFrame(url: string): Promise<FrameBytes | undefined> | undefined {
  return current?.firstFrames.get(url);
}

/** The study's first slice has arrived (it can be drawn before Cornerstone has started). */
export function firstFrameArrived(studyUID: string): boolean {
  return current?.uid === studyUID && current.firstFrameArrived;
}

/** Image series first (by SeriesNumber), non-image ones (SR, PR, KO, documents) last. */
export function seriesOrder(series: DicomJson[]): DicomJson[] {
  const nonImage = new Set(['SR', 'PR', 'KO', 'DOC', 'SEG', 'RTSTRUCT', 'RTPLAN', 'RTDOSE', 'ECG']);
  return [...series].sort((a, b) => {
    const na = nonImage.has(str(a, Tag.Modality)) ? 1 : 0;
    const nb = nonImage.has(str(b, Tag.Modality)) ? 1 : 0;
    if (na !== nb) return na - nb;
    return (num(a, Tag.SeriesNumber) ?? 1e9) - (num(b, Tag.SeriesNumber) ?? 1e9);
  });
}

const PALETTE_DATA = ['00281201', '00281202', '00281203'];

/**
 * Palette colour lookup table data as numbers: the archive sends these OW values as InlineBinary or a
 * BulkDataURI, and the image loader reads only a Value list (it draws nothing without them).
 */
export async function withPaletteData(instances: DicomJson[]): Promise<DicomJson[]> {
  await Promise.all(
    instances
      .filter((inst) => str(inst, '00280004') === 'PALETTE COLOR')
      .flatMap((inst) =>
        PALETTE_DATA.map(async (tag) => {
          const attr = inst[tag];
          if (!attr || attr.Value) return;
          const words =
            inlineWords(attr) ??
            (attr.BulkDataURI ? littleEndianWords(await retrieveBulkData(attr.BulkDataURI)) : undefined);
          if (words) inst[tag] = { vr: 'US', Value: words };
        }),
      ),
  );
  return instances;
}

export function loadStudy(uid: string): LoadedStudy {
  if (current?.uid === uid) return current;
  const metadataPromises = new Map<string, Promise<DicomJson[]>>();
  const firstFrames = new Map<string, Promise<FrameBytes | undefined>>();
  const metadata = (seriesUID: string) => {
    let p = metadataPromises.get(seriesUID);
    if (!p) {
      p = retrieveSeriesMetadata(uid, seriesUID).then(withPaletteData);
      p.catch(() => metadataPromises.delete(seriesUID));
      metadataPromises.set(seriesUID, p);
    }
    return p;
  };
  const record = (async () => {
    const [studies, series] = await Promise.all([
      searchForStudies({ StudyInstanceUID: uid, limit: 1 }),
      searchForSeries(uid).catch((e) => {
        if (e instanceof DicomwebError && e.status === 404) return [] as DicomJson[];
        throw e;
      }),
    ]);
    if (studies.length === 0) throw new DicomwebError(404, 'study not found', uid);
    const ordered = seriesOrder(series);
    // Ask for the first series' metadata at once; the others follow after it.
    const first = ordered[0];
    if (first) {
      const seriesUID = str(first, Tag.SeriesInstanceUID);
      const p = metadata(seriesUID);
      p.then((instances) => {
        const image = orderedImages(instances)[0];
        if (!image) return;
        const url = instanceFramesUrl(uid, seriesUID, str(image, Tag.SOPInstanceUID), 1);
        noteStoredSyntax(url, image);
        const frame = retrieveFrame(url, acceptForFrame(url)).catch(() => undefined);
        firstFrames.set(url, frame);
        frame.then((bytes) => {
          if (bytes && current?.firstFrames === firstFrames) current.firstFrameArrived = true;
        });
        // Not taken within a minute (another series was shown first): let the bytes go.
        setTimeout(() => firstFrames.delete(url), 60_000);
      }).catch(() => undefined);
      p.finally(() => {
        for (const s of ordered.slice(1)) metadata(str(s, Tag.SeriesInstanceUID)).catch(() => undefined);
      }).catch(() => undefined);
    }
    return { study: studies[0], series: ordered };
  })();
  record.catch(() => {
    if (current?.record === record) current = null;
  });
  current = { uid, record, metadata, firstFrames, firstFrameArrived: false };
  return current;
}
