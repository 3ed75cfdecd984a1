import { describe, expect, it } from 'vitest';
import {
  type FirstViewImage,
  firstViewImage,
  greyPixels,
  placement,
  windowRange,
} from '../../viewer/src/features/viewer/first-view';

const EVRLE = '1.2.840.10008.1.2.1';

/** DICOM JSON of a greyscale instance (the attributes the first view reads). */
function instance(over: Record<string, unknown> = {}) {
  const v = (vr: string, ...Value: unknown[]) => ({ vr, Value });
  return {
    '00280002': v('US', 1),
    '00280004': v('CS', 'MONOCHROME2'),
    '00280010': v('US', 2),
    '00280011': v('US', 3),
    '00280030': v('DS', 0.5, 0.25),
    '00280100': v('US', 16),
    '00280103': v('US', 1),
    '00281050': v('DS', 40, 400),
    '00281051': v('DS', 80, 2000),
    '00281052': v('DS', -1024),
    '00281053': v('DS', 1),
    ...over,
  } as Parameters<typeof firstViewImage>[0];
}

/** Grey levels (R of each RGBA pixel) of little-endian samples. */
function greys(image: FirstViewImage, samples: number[], syntax = EVRLE): number[] | undefined {
  const bytes =
    image.bitsAllocated === 16
      ? new Uint8Array((image.signed ? Int16Array : Uint16Array).from(samples).buffer)
      : Uint8Array.from(samples.map((s) => s & 0xff));
  const out = greyPixels(image, bytes, syntax);
  return out && Array.from({ length: samples.length }, (_, i) => out[4 * i]);
}

describe('first view', () => {
  it('reads the geometry, the modality LUT and the first window of a greyscale instance', () => {
    expect(firstViewImage(instance())).toEqual({
      rows: 2,
      columns: 3,
      bitsAllocated: 16,
      signed: true,
      slope: 1,
      intercept: -1024,
      window: { center: 40, width: 80 },
      invert: false,
      pixelAspect: 2,
    });
  });

  it('leaves to Cornerstone what it does not draw the same way', () => {
    const v = (vr: string, ...Value: unknown[]) => ({ vr, Value });
    expect(firstViewImage(instance({ '00280004': v('CS', 'RGB'), '00280002': v('US', 3) }))).toBeUndefined();
    expect(firstViewImage(instance({ '00280004': v('CS', 'PALETTE COLOR') }))).toBeUndefined();
    expect(firstViewImage(instance({ '00280100': v('US', 32) }))).toBeUndefined();
    expect(firstViewImage(instance({ '00283010': { vr: 'SQ', Value: [{}] } }))).toBeUndefined();
    expect(firstViewImage(instance({ '00283000': { vr: 'SQ', Value: [{}] } }))).toBeUndefined();
    const image = firstViewImage(instance())!;
    // compressed frames need the decoders; a frame shorter than the image is not this image
    expect(greys(image, [0, 0, 0, 0, 0, 0], '1.2.840.10008.1.2.4.80')).toBeUndefined();
    expect(greyPixels(image, new Uint8Array(10), EVRLE)).toBeUndefined();
  });

  it('maps modality values through the window as Cornerstone does (linear, PS3.3 C.11.2.1.2.1)', () => {
    expect(windowRange(40, 80)).toEqual({ lower: 0, upper: 79 });
    const image = firstViewImage(instance())!;
    // stored + (-1024) = HU: below the window, its bottom, 39 HU (39/79 of the way), its top, above
    expect(greys(image, [1000, 1024, 1063, 1103, 1200, -2000])).toEqual([0, 0, 126, 255, 255, 0]);
  });

  it('inverts MONOCHROME1, and without a window spans the range of the values', () => {
    const v = (vr: string, ...Value: unknown[]) => ({ vr, Value });
    const mono1 = firstViewImage(instance({ '00280004': v('CS', 'MONOCHROME1') }))!;
    expect(greys(mono1, [1000, 1024, 1103, 1200, 0, 0])).toEqual([255, 255, 0, 0, 255, 255]);
    const noWindow = firstViewImage(
      instance({
        '00281050': undefined,
        '00281051': undefined,
        '00280103': v('US', 0),
        '00281052': v('DS', 0),
      }),
    )!;
    expect(noWindow.window).toBeUndefined();
    const g = greys(noWindow, [100, 200, 300, 400, 500, 600])!;
    expect(g[0]).toBe(0);
    expect(g[5]).toBeGreaterThanOrEqual(254);
    expect(g).toEqual([...g].sort((a, b) => a - b));
  });

  it('reads 8-bit samples and samples that do not start at an even byte', () => {
    const v = (vr: string, ...Value: unknown[]) => ({ vr, Value });
    const eight = firstViewImage(
      instance({ '00280100': v('US', 8), '00280103': v('US', 0), '00281052': v('DS', 0) }),
    )!;
    expect(greys(eight, [0, 40, 79, 120, 255, 1])).toEqual([0, 129, 255, 255, 255, 3]);
    const image = firstViewImage(instance())!;
    const odd = new Uint8Array(13);
    odd.set(new Uint8Array(Int16Array.from([1000, 1024, 1103, 1200, 0, 0]).buffer), 1);
    const out = greyPixels(image, odd.subarray(1), EVRLE)!;
    expect([0, 1, 2, 3].map((i) => out[4 * i])).toEqual([0, 0, 255, 255]);
  });

  it('fits the image in the canvas, centred, with pixels as wide and high as their spacing', () => {
    // 3 columns × 2 rows of 0.25 mm × 0.5 mm pixels: 0.75 mm × 1 mm, on a 300 × 300 canvas
    expect(placement(300, 300, { rows: 2, columns: 3, pixelAspect: 2 })).toEqual({
      left: 37.5,
      top: 0,
      scale: 75,
    });
    expect(placement(600, 100, { rows: 10, columns: 10, pixelAspect: 1 })).toEqual({
      left: 250,
      top: 0,
      scale: 10,
    });
  });
});
