/**
 * The first view: the first slice of a series drawn on a plain 2D canvas from the bytes the study
 * loader fetched ahead, while Cornerstone (its chunk, a WebGL context, the decode workers) is still
 * starting. On a 2-core PC without a GPU that start takes about a second after the slice has
 * arrived; the first view shows the slice at once, as Cornerstone will: fitted to the viewport,
 * through the modality LUT (rescale slope and intercept) and the file's first window (or the
 * image's range, as Cornerstone's default), MONOCHROME1 inverted, and drawn again at the new size if
 * the viewport is resized meanwhile. Cornerstone's own rendering replaces it as soon as it has drawn,
 * and only then can the image be measured or adjusted.
 *
 * Only what is drawn exactly the same way is drawn here: one greyscale sample per pixel, 8 or 16
 * bits, uncompressed (frames of a compressed syntax need the decoders, which come with Cornerstone),
 * no VOI or modality LUT sequence. Anything else waits for Cornerstone, as before.
 */
import { type DicomJson, num, nums, str } from '../../lib/dicom-json';

export interface FirstViewImage {
  rows: number;
  columns: number;
  bitsAllocated: 8 | 16;
  signed: boolean;
  slope: number;
  intercept: number;
  /** The file's first window, if it has one (else the image's range, as Cornerstone's default). */
  window?: { center: number; width: number };
  invert: boolean;
  /** Height over width of one pixel (row spacing / column spacing). */
  pixelAspect: number;
}

/** Frames sent as little-endian samples (PS3.18: uncompressed frames are Explicit VR Little Endian). */
const LITTLE_ENDIAN = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']);

/** What the first view needs of an instance, or undefined when it must wait for Cornerstone. */
export function firstViewImage(instance: DicomJson): FirstViewImage | undefined {
  const photometric = str(instance, '00280004');
  if (photometric !== 'MONOCHROME1' && photometric !== 'MONOCHROME2') return undefined;
  if ((num(instance, '00280002') ?? 1) !== 1) return undefined;
  const bitsAllocated = num(instance, '00280100');
  if (bitsAllocated !== 8 && bitsAllocated !== 16) return undefined;
  // A VOI LUT or modality LUT sequence is applied by Cornerstone; not drawn here.
  if (instance['00283010'] || instance['00283000']) return undefined;
  const rows = num(instance, '00280010') ?? 0;
  const columns = num(instance, '00280011') ?? 0;
  if (rows < 1 || columns < 1) return undefined;
  const center = num(instance, '00281050');
  const width = num(instance, '00281051');
  const spacing = nums(instance, '00280030');
  const [rowSpacing, columnSpacing] =
    spacing.length === 2 && spacing[0] > 0 && spacing[1] > 0 ? spacing : [1, 1];
  return {
    rows,
    columns,
    bitsAllocated,
    signed: num(instance, '00280103') === 1,
    slope: num(instance, '00281053') ?? 1,
    intercept: num(instance, '00281052') ?? 0,
    window: center !== undefined && width !== undefined && width >= 1 ? { center, width } : undefined,
    invert: photometric === 'MONOCHROME1',
    pixelAspect: rowSpacing / columnSpacing,
  };
}

/** The display range of a window (PS3.3 C.11.2.1.2.1, linear), as Cornerstone maps it. */
export function windowRange(center: number, width: number): { lower: number; upper: number } {
  return { lower: center - 0.5 - (width - 1) / 2, upper: center - 0.5 + (width - 1) / 2 };
}

/**
 * The frame as RGBA pixels (grey, opaque), or undefined when the bytes are not the frame the metadata
 * describes (another syntax, another length). Through a lookup table from stored value to grey level:
 * one table entry per possible value instead of arithmetic per pixel.
 */
export function greyPixels(
  image: FirstViewImage,
  pixelData: Uint8Array,
  transferSyntaxUid: string,
): Uint8ClampedArray | undefined {
  if (!LITTLE_ENDIAN.has(transferSyntaxUid)) return undefined;
  const n = image.rows * image.columns;
  const bytes = image.bitsAllocated / 8;
  if (pixelData.length < n * bytes) return undefined;
  // The samples as numbers, without a copy when they are aligned (they are, in a frame body of its own).
  const aligned = pixelData.byteOffset % bytes === 0 ? pixelData : pixelData.slice(0, n * bytes);
  const Samples =
    bytes === 1 ? (image.signed ? Int8Array : Uint8Array) : image.signed ? Int16Array : Uint16Array;
  const samples = new Samples(aligned.buffer as ArrayBuffer, aligned.byteOffset, n);
  const offset = image.signed ? 2 ** (image.bitsAllocated - 1) : 0;
  let lower: number;
  let upper: number;
  if (image.window) {
    ({ lower, upper } = windowRange(image.window.center, image.window.width));
  } else {
    // Cornerstone's default without a window: the range of the modality values.
    let min = samples[0];
    let max = samples[0];
    for (let i = 1; i < n; i++) {
      const v = samples[i];
      if (v < min) min = v;
      else if (v > max) max = v;
    }
    const [a, b] = [min * image.slope + image.intercept, max * image.slope + image.intercept];
    ({ lower, upper } = windowRange((a + b) / 2, Math.max(1, Math.abs(b - a))));
  }
  const range = Math.max(upper - lower, 1e-6);
  // One 32-bit RGBA word per possible stored value: grey in R, G and B, opaque (platform byte order).
  const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  const grey32 = new Uint32Array(2 ** image.bitsAllocated);
  const a = (image.slope * 255) / range;
  const b = ((image.intercept - lower - offset * image.slope) * 255) / range;
  for (let i = 0; i < grey32.length; i++) {
    let g = Math.round(i * a + b);
    g = Math.max(0, Math.min(255, g));
    if (image.invert) g = 255 - g;
    grey32[i] = little
      ? 0xff000000 | (g << 16) | (g << 8) | g
      : ((g << 24) | (g << 16) | (g << 8) | 0xff) >>> 0;
  }
  const out = new Uint8ClampedArray(n * 4);
  const rgba = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) rgba[i] = grey32[samples[i] + offset];
  return out;
}

/**
 * Where the image lies on a canvas of this size, fitted and centred: the canvas position of the image's
 * top-left corner and the canvas pixels per image column.
 */
export function placement(
  width: number,
  height: number,
  image: Pick<FirstViewImage, 'rows' | 'columns' | 'pixelAspect'>,
): { left: number; top: number; scale: number } {
  const worldHeight = image.rows * image.pixelAspect;
  const scale = Math.min(width / image.columns, height / worldHeight);
  return { left: (width - image.columns * scale) / 2, top: (height - worldHeight * scale) / 2, scale };
}

/**
 * Draws the frame on canvas, fitted and centred as Cornerstone fits a stack image (the whole image
 * in view, square pixels in millimetres), at the canvas's device resolution. False when the bytes
 * cannot be drawn here.
 */
export function drawFirstView(
  canvas: HTMLCanvasElement,
  image: FirstViewImage,
  pixelData: Uint8Array,
  transferSyntaxUid: string,
): boolean {
  const pixels = greyPixels(image, pixelData, transferSyntaxUid);
  if (!pixels || canvas.clientWidth < 1 || canvas.clientHeight < 1) return false;
  const { rows, columns } = image;
  const source = document.createElement('canvas');
  source.width = columns;
  source.height = rows;
  // A canvas in main memory: the pixels are put once and read by drawImage (again on each resize).
  const sourceContext = source.getContext('2d', { willReadFrequently: true });
  if (!sourceContext) return false;
  sourceContext.putImageData(new ImageData(pixels as Uint8ClampedArray<ArrayBuffer>, columns, rows), 0, 0);
  sources.set(canvas, { source, image });
  return repaintFirstView(canvas, true);
}

/** The decoded first slice of each first-view canvas, kept to draw it again when the canvas is resized. */
const sources = new WeakMap<HTMLCanvasElement, { source: HTMLCanvasElement; image: FirstViewImage }>();

/**
 * Draws the canvas's first slice again at the canvas's present size (the window or the layout changed
 * before the image library took over), so it stays fitted and undistorted; nothing to do when the size
 * has not changed, unless `always`. False when there is nothing to draw or no room.
 */
export function repaintFirstView(canvas: HTMLCanvasElement, always = false): boolean {
  const drawn = sources.get(canvas);
  const cssWidth = canvas.clientWidth;
  const cssHeight = canvas.clientHeight;
  if (!drawn || cssWidth < 1 || cssHeight < 1) return false;
  const { source, image } = drawn;
  const ratio = window.devicePixelRatio || 1;
  const [width, height] = [Math.round(cssWidth * ratio), Math.round(cssHeight * ratio)];
  if (!always && canvas.width === width && canvas.height === height) return true;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d');
  if (!context) return false;
  context.fillStyle = '#000';
  context.fillRect(0, 0, canvas.width, canvas.height);
  const p = placement(canvas.width, canvas.height, image);
  context.imageSmoothingEnabled = true;
  context.drawImage(source, p.left, p.top, image.columns * p.scale, image.rows * p.scale * image.pixelAspect);
  return true;
}

/** Forgets the canvas's first slice (the image library has drawn over it). */
export function forgetFirstView(canvas: HTMLCanvasElement): void {
  sources.delete(canvas);
}

/** Each viewport's first view: when it was drawn (performance.now()) and what, for the tests and the benchmark. */
export const firstViewsDrawn = new Map<string, { drawnAt: number; imageId: string; image: FirstViewImage }>();

let settle: () => void = () => undefined;
let settled: Promise<void> = Promise.resolve();

/** A new page: firstViewSettled() waits again for a first view to be drawn or given up. */
export function resetFirstView(): void {
  firstViewsDrawn.clear();
  settled = new Promise((resolve) => {
    settle = resolve;
  });
}

/** The first view has been drawn, or will not be (nothing that it can draw, or no bytes). */
export function settleFirstView(): void {
  settle();
}

export function firstViewSettled(): Promise<void> {
  return settled;
}
