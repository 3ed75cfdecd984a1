/**
 * Work-arounds for defects of dicom-image-loader 5.14 in decoding frames, applied to the frame bytes
 * and metadata the viewer gives it (pure: the page's loader glue in cornerstone.ts applies them).
 *
 * - Native YBR_FULL_422: the loader checks the length of such a frame against the size of a frame
 *   subsampled in both directions (4:2:0), so it never converts a real 4:2:2 frame (two bytes a pixel)
 *   and draws garbage. The viewer expands each frame to YBR_FULL (one Cb and Cr per pixel, PS3.3
 *   C.7.6.3.1.2) and tells the loader the image is YBR_FULL, which it converts to RGB itself.
 * - Colour JPEG-LS whose components are coded in separate scans (interleave mode 0): CharLS gives the
 *   samples plane by plane and the loader reads them as pixel-interleaved. The viewer reads the
 *   interleave mode from the codestream and tells the loader the planar configuration of the output.
 */

/** Y1 Y2 Cb Cr for each pair of pixels of a row (an odd last pixel: Y Cb Cr) → Y Cb Cr for each pixel. */
export function expandYbrFull422(data: Uint8Array, rows: number, columns: number): Uint8Array {
  const out = new Uint8Array(rows * columns * 3);
  let i = 0;
  let o = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c += 2) {
      const pair = c + 1 < columns;
      const y1 = data[i++];
      const y2 = pair ? data[i++] : 0;
      const cb = data[i++];
      const cr = data[i++];
      out[o++] = y1;
      out[o++] = cb;
      out[o++] = cr;
      if (pair) {
        out[o++] = y2;
        out[o++] = cb;
        out[o++] = cr;
      }
    }
  }
  return out;
}

/** Bytes of one native YBR_FULL_422 frame of 8-bit samples. */
export function ybrFull422Length(rows: number, columns: number): number {
  return rows * (4 * Math.floor(columns / 2) + 3 * (columns % 2));
}
