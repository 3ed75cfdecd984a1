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
import { fetchFrameOffThread } from '../../lib/frame-fetcher';
import { slots } from '../../lib/slots';
import { acceptForFrame, fastLinkKnown, frameCacheMode, noteStoredSyntax } from '../../lib/transfer-settings';
import { orderedImages } from './stack-order';

export interface StudyRecord {
  study: DicomJson;
  series: DicomJson[];
}

export interface LoadedStudy {
  uid: string;
  record: Promise<StudyRecord>;
  metadata(seriesUID: string): Promise<DicomJson[]>;
  /**
   * Frames fetched ahead, keyed by frame URL: the first slice of the first series as soon as its
   * metadata arrived, then on a fast link the next slices while the viewer starts (fetchAhead).
   */
  framesAhead: Map<string, Promise<FrameBytes | undefined>>;
  firstFrameArrived: boolean;
  /** The next slices' fetch, ready once the first slice has arrived; run once the viewer starts. */
  ahead: { run?: () => void; wanted: boolean };
}

let current: LoadedStudy | null = null;

/**
 * The frame at url if the loader fetched it ahead (once: the bytes are handed over, not kept).
 * The viewer calls this before asking Cornerstone for the image, so on a slow link the first slice
 * travels while the viewer's code is still downloading instead of after it.
 */
export function takePrefetchedFrame(url: string): Promise<FrameBytes | undefined> | undefined {
  const p = current?.framesAhead.get(url);
  if (p) current?.framesAhead.delete(url);
  return p;
}

/** The frame at url if the loader fetched it ahead, left for takePrefetchedFrame (the first view reads it). */
export function peekPrefetchedFrame(url: string): Promise<FrameBytes | undefined> | undefined {
  return current?.framesAhead.get(url);
}

/** The study's first slice has arrived (it can be drawn before Cornerstone has started). */
export function firstFrameArrived(studyUID: string): boolean {
  return current?.uid === studyUID && current.firstFrameArrived;
}

/**
 * The viewer starts its image library (after the first view is on screen): the next slices may be
 * fetched now, or as soon as the first slice has arrived (fetchAhead).
 */
export function viewerStarting(studyUID: string): void {
  if (current?.uid !== studyUID) return;
  current.ahead.wanted = true;
  current.ahead.run?.();
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

/** Slices after the first fetched while the viewer's image library starts (fast links only). */
const EARLY_FRAMES = 24;
const EARLY_IN_FLIGHT = 4;

/**
 * Fetches the frames of the next slices (single-frame instances, in stack order) in the frame-fetch
 * worker while Cornerstone starts (not before the first view is drawn: it would compete with it), when
 * the link is known to be fast (measured on the first slice): the network is otherwise idle for about
 * half a second then. Every slice is registered at once, those still waiting for their turn too, so the
 * prefetch takes their bytes (takePrefetchedFrame) instead of asking for any of them a second time. On a
 * slow link the frames wait for the policy's compressed transfer syntax.
 */
function fetchAhead(
  study: string,
  seriesUID: string,
  images: DicomJson[],
  frames: Map<string, Promise<FrameBytes | undefined>>,
): void {
  if (!fastLinkKnown()) return;
  const turns = slots(EARLY_IN_FLIGHT);
  for (const image of images) {
    const url = instanceFramesUrl(study, seriesUID, str(image, Tag.SOPInstanceUID), 1);
    noteStoredSyntax(url, image);
    const p = turns
      .take()
      .then(() => fetchFrameOffThread(url, acceptForFrame(url), { cache: frameCacheMode() }).promise)
      .catch(() => undefined)
      .finally(() => turns.give());
    frames.set(url, p);
    setTimeout(() => frames.delete(url), 60_000);
  }
}

export function loadStudy(uid: string): LoadedStudy {
  if (current?.uid === uid) return current;
  const metadataPromises = new Map<string, Promise<DicomJson[]>>();
  const framesAhead = new Map<string, Promise<FrameBytes | undefined>>();
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
        framesAhead.set(url, frame);
        frame.then((bytes) => {
          if (!bytes || current?.framesAhead !== framesAhead) return;
          current.firstFrameArrived = true;
          const { ahead } = current;
          ahead.run = () => {
            ahead.run = undefined;
            fetchAhead(uid, seriesUID, orderedImages(instances).slice(1, 1 + EARLY_FRAMES), framesAhead);
          };
          if (ahead.wanted) ahead.run();
        });
        // Not taken within a minute (another series was shown first): let the bytes go.
        setTimeout(() => framesAhead.delete(url), 60_000);
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
  current = { uid, record, metadata, framesAhead, firstFrameArrived: false, ahead: { wanted: false } };
  return current;
}
