/** Reads what the tests compare the screen with from the DICOM files themselves (dicom-parser). */
import { readFile } from 'node:fs/promises';
import dicomParser from 'dicom-parser';

export interface DicomImage {
  path: string;
  sopInstanceUID: string;
  studyInstanceUID: string;
  rows: number;
  columns: number;
  pixelSpacing: [number, number];
  slope: number;
  intercept: number;
  /** Modality value (HU on CT) at column, row. */
  value(col: number, row: number): number;
}

export async function readDicom(path: string): Promise<DicomImage> {
  const bytes = new Uint8Array(await readFile(path));
  const ds = dicomParser.parseDicom(bytes);
  const rows = ds.uint16('x00280010') ?? 0;
  const columns = ds.uint16('x00280011') ?? 0;
  const signed = ds.uint16('x00280103') === 1;
  const bits = ds.uint16('x00280100') ?? 16;
  const px = ds.elements.x7fe00010;
  const slope = Number(ds.string('x00281053') ?? 1) || 1;
  const intercept = Number(ds.string('x00281052') ?? 0) || 0;
  const spacing = (ds.string('x00280030') ?? '1\\1').split('\\').map(Number) as [number, number];
  const view = new DataView(bytes.buffer, bytes.byteOffset + px.dataOffset, px.length);
  return {
    path,
    sopInstanceUID: ds.string('x00080018') ?? '',
    studyInstanceUID: ds.string('x0020000d') ?? '',
    rows,
    columns,
    pixelSpacing: spacing,
    slope,
    intercept,
    value(col, row) {
      const i = row * columns + col;
      const stored =
        bits === 8 ? view.getUint8(i) : signed ? view.getInt16(i * 2, true) : view.getUint16(i * 2, true);
      return stored * slope + intercept;
    },
  };
}

/** Grey level (0–255) of a modality value under a linear VOI range, as the viewer should draw it. */
export function expectedGrey(value: number, voi: { lower: number; upper: number }): number {
  const g = ((value - voi.lower) / (voi.upper - voi.lower)) * 255;
  return Math.max(0, Math.min(255, g));
}

/** Points of a grid whose 5×5 neighbourhood is flat (so screen interpolation cannot change them). */
export function flatPoints(img: DicomImage, count: number, maxSpread = 2): [number, number][] {
  const out: [number, number][] = [];
  const step = Math.floor(Math.min(img.rows, img.columns) / 24);
  for (let r = step; r < img.rows - step && out.length < count * 4; r += step) {
    for (let c = step; c < img.columns - step; c += step) {
      let lo = Number.POSITIVE_INFINITY;
      let hi = Number.NEGATIVE_INFINITY;
      for (let dr = -2; dr <= 2; dr++)
        for (let dc = -2; dc <= 2; dc++) {
          const v = img.value(c + dc, r + dr);
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      if (hi - lo <= maxSpread) out.push([c, r]);
    }
  }
  // spread the choice over the image
  const pick: [number, number][] = [];
  for (let i = 0; i < count && out.length; i++) pick.push(out[Math.floor((i * out.length) / count)]);
  return pick;
}
