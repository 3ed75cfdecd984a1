/** Turns a series' metadata (one WADO-RS request) into an ordered stack of `wadors:` image ids. */
import { addInstanceMetadata } from '../../lib/cornerstone';
import { type DicomJson, num, str, Tag } from '../../lib/dicom-json';
import { instanceDocumentUrl, instanceFramesUrl } from '../../lib/dicomweb-client';
import { orderedImages } from './stack-order';

export interface SeriesSummary {
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  SeriesNumber?: number;
  SeriesDescription: string;
  Modality: string;
  NumberOfSeriesRelatedInstances?: number;
}

export interface DisplaySet extends SeriesSummary {
  imageIds: string[];
  FrameOfReferenceUID: string;
  /** Bytes of one decoded frame, for the memory bound of prefetching. */
  frameBytes: number;
  multiFrame: boolean;
  /** The metadata of the instance of imageIds[0]. */
  firstInstance?: DicomJson;
  /** Why nothing can be displayed, when imageIds is empty. */
  unsupported?: boolean;
  /** Encapsulated PDF documents of the series (reports, scanned forms), opened in the browser. */
  documents: { url: string; title: string }[];
}

/** Encapsulated PDF Storage (PS3.4 B.5). */
const ENCAPSULATED_PDF = '1.2.840.10008.5.1.4.1.1.104.1';

export function summarizeSeries(studyUID: string, s: DicomJson): SeriesSummary {
  return {
    StudyInstanceUID: studyUID,
    SeriesInstanceUID: str(s, Tag.SeriesInstanceUID),
    SeriesNumber: num(s, Tag.SeriesNumber),
    SeriesDescription: str(s, Tag.SeriesDescription),
    Modality: str(s, Tag.Modality),
    NumberOfSeriesRelatedInstances: num(s, Tag.NumberOfSeriesRelatedInstances),
  };
}

export function buildDisplaySet(summary: SeriesSummary, instances: DicomJson[]): DisplaySet {
  const ordered = orderedImages(instances);
  const imageIds: string[] = [];
  let multiFrame = false;
  for (const inst of ordered) {
    const sop = str(inst, Tag.SOPInstanceUID);
    const frames = num(inst, Tag.NumberOfFrames) ?? 1;
    if (frames > 1) multiFrame = true;
    addInstanceMetadata(
      `wadors:${instanceFramesUrl(summary.StudyInstanceUID, summary.SeriesInstanceUID, sop, 1)}`,
      inst,
    );
    for (let f = 1; f <= frames; f++) {
      imageIds.push(
        `wadors:${instanceFramesUrl(summary.StudyInstanceUID, summary.SeriesInstanceUID, sop, f)}`,
      );
    }
  }
  const documents = instances
    .filter((inst) => str(inst, '00080016') === ENCAPSULATED_PDF)
    .map((inst) => ({
      url: instanceDocumentUrl(
        summary.StudyInstanceUID,
        summary.SeriesInstanceUID,
        str(inst, Tag.SOPInstanceUID),
      ),
      title: str(inst, '00420010') || summary.SeriesDescription || 'PDF',
    }));
  const first = ordered[0] ?? instances[0];
  const bits = (num(first, '00280100') ?? 16) > 8 ? 2 : 1;
  const spp = num(first, '00280002') ?? 1;
  return {
    ...summary,
    Modality: summary.Modality || str(first, Tag.Modality),
    SeriesDescription: summary.SeriesDescription || str(first, Tag.SeriesDescription),
    NumberOfSeriesRelatedInstances: summary.NumberOfSeriesRelatedInstances ?? instances.length,
    imageIds,
    FrameOfReferenceUID: str(first, Tag.FrameOfReferenceUID),
    frameBytes:
      (num(first, Tag.Rows) ?? 512) * (num(first, Tag.Columns) ?? 512) * Math.max(bits, 2) * spp * 2,
    multiFrame,
    firstInstance: ordered[0],
    unsupported: imageIds.length === 0,
    documents,
  };
}

export function imageIdSeriesUID(imageId: string): string {
  return /\/series\/([^/]+)\//.exec(imageId)?.[1] ?? '';
}
