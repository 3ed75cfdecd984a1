/**
 * Which instances of a series are images and in which order they stack — shared by the display sets
 * and by the study loader (which fetches the first slice before Cornerstone has loaded), so it must
 * not import Cornerstone.
 */
import { type DicomJson, num, nums, str, Tag } from '../../lib/dicom-json';

// SOP classes without pixel data the viewer can show (SR, PDF, SEG/RT, waveforms, KOS, PR).
const NON_IMAGE_SOP = /^1\.2\.840\.10008\.5\.1\.4\.1\.1\.(88\.|104\.|66\.|481\.[^1]|9\.|11\.)/;

/** The instances of a series that carry displayable images, in stack order. */
export function orderedImages(instances: DicomJson[]): DicomJson[] {
  return sliceOrder(
    instances.filter((i) => num(i, Tag.Rows) !== undefined && !NON_IMAGE_SOP.test(str(i, Tag.SOPClassUID))),
  );
}

export function sliceOrder(instances: DicomJson[]): DicomJson[] {
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
