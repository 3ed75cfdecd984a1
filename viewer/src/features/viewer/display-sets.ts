/** Turns a series' metadata (one WADO-RS request) into an ordered stack of `wadors:` image ids. */
import { addInstanceMetadata } from '../../lib/cornerstone';
import { type DicomJson, num, nums, str, Tag } from '../../lib/dicom-json';
import { instanceFramesUrl } from '../../lib/dicomweb-client';

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
  /** Why nothing can be displayed, when imageIds is empty. */
  unsupported?: boolean;
}

// SOP classes without pixel data the viewer can show (SR, PDF, SEG/RT, waveforms, KOS, PR).
const NON_IMAGE_SOP = /^1\.2\.840\.10008\.5\.1\.4\.1\.1\.(88\.|104\.|66\.|481\.[^1]|9\.|11\.)/;

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

function sliceOrder(instances: DicomJson[]): DicomJson[] {
  const iop = nums(instances[0], Tag.ImageOrientationPatient);
  const allHavePos = instances.every((i) => nums(i, Tag.ImagePositionPatient).length === 3);
  if (iop.length === 6 && allHavePos && instances.length > 1) {
    const n = [
      iop[1] * iop[5] - iop[2] * iop[4],
      iop[2] * iop[3] - iop[0] * iop[5],
      iop[0] * iop[4] - iop[1] * iop[3],
    ];
    const d = (i: DicomJson) => {
      const p = nums(i, Tag.ImagePositionPatient);
      return p[0] * n[0] + p[1] * n[1] + p[2] * n[2];
    };
    const withD = instances.map((i) => ({ i, d: d(i) }));
    const distinct = new Set(withD.map((x) => x.d.toFixed(3)));
    // Only a true stack (one image per position) is ordered by position; head first, as radiologists read.
    if (distinct.size === instances.length) return withD.sort((a, b) => b.d - a.d).map((x) => x.i);
  }
  return [...instances].sort((a, b) => (num(a, Tag.InstanceNumber) ?? 0) - (num(b, Tag.InstanceNumber) ?? 0));
}

export function buildDisplaySet(summary: SeriesSummary, instances: DicomJson[]): DisplaySet {
  const images = instances.filter(
    (i) => num(i, Tag.Rows) !== undefined && !NON_IMAGE_SOP.test(str(i, Tag.SOPClassUID)),
  );
  const ordered = sliceOrder(images);
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
    unsupported: imageIds.length === 0,
  };
}

export function imageIdSeriesUID(imageId: string): string {
  return /\/series\/([^/]+)\//.exec(imageId)?.[1] ?? '';
}
