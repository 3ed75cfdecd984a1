/**
 * The viewer's decode of native greyscale frames (viewer/src/lib/native-frame.ts) gives what the image
 * loader's own decode worker gives for the same bytes: same typed array, same values, same smallest
 * and largest value, same record of the modality LUT. The reference is dicom-image-loader's worker
 * module itself, run here in Node.
 */
import { resolve } from 'node:path';
import dicomParser from 'dicom-parser';
import { describe, expect, it } from 'vitest';
import {
  type DecodedFrame,
  decodableNative,
  decodeNative,
  type NativeFrameParams,
} from '../../viewer/src/lib/native-frame';
import { readSample, SAMPLES_MISSING, sampleFiles, samplesPresent } from '../samples';

const LOADER_WORKER = resolve(
  __dirname,
  '../../node_modules/@cornerstonejs/dicom-image-loader/dist/esm/decodeImageFrameWorker.js',
);
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

interface LoaderFrame {
  pixelData: ArrayLike<number> & { constructor: { name: string } };
  smallestPixelValue: number;
  largestPixelValue: number;
  preScale?: unknown;
}

/** What the loader's decode worker makes of these bytes, with the options createImage gives it. */
async function loaderDecode(bytes: Uint8Array, ts: string, p: NativeFrameParams): Promise<LoaderFrame> {
  const worker = await import(LOADER_WORKER);
  const imageFrame = {
    rows: p.rows,
    columns: p.columns,
    bitsAllocated: p.bitsAllocated,
    bitsStored: p.bitsStored,
    pixelRepresentation: p.pixelRepresentation,
    samplesPerPixel: 1,
    photometricInterpretation: 'MONOCHROME2',
  };
  const preScale = p.rescale ? { enabled: true, scalingParameters: p.rescale } : { enabled: false };
  return worker.decodeImageFrame(
    imageFrame,
    ts,
    bytes.slice(),
    {},
    { preScale, allowFloatRendering: p.allowFloat },
  );
}

async function expectSameAsLoader(bytes: Uint8Array, p: NativeFrameParams, ts = EXPLICIT_LE) {
  const expected = await loaderDecode(bytes, ts, p);
  const ours = decodeNative(bytes.slice(), ts, p) as DecodedFrame;
  expect(ours).toBeDefined();
  expect(ours.pixelData.constructor.name).toBe(expected.pixelData.constructor.name);
  expect(ours.pixelData.length).toBe(expected.pixelData.length);
  const bytesOf = (a: ArrayLike<number>) => {
    const v = a as unknown as Uint8Array;
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  };
  // Buffer.equals: a deep toEqual of a 7 MB frame takes minutes.
  expect(bytesOf(ours.pixelData).equals(bytesOf(expected.pixelData))).toBe(true);
  expect(ours.min).toBe(expected.smallestPixelValue);
  expect(ours.max).toBe(expected.largestPixelValue);
  expect(ours.preScale).toEqual(expected.preScale);
  return ours;
}

/** Deterministic pseudo-random values in [lo, hi], as little endian bytes of the given width. */
function frameOf(n: number, lo: number, hi: number, bytesPer: 1 | 2, seed = 7): Uint8Array {
  const out = new Uint8Array(n * bytesPer);
  const view = new DataView(out.buffer);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const v = lo + (s % (hi - lo + 1));
    if (bytesPer === 1) out[i] = v & 0xff;
    else view.setUint16(i * 2, v & 0xffff, true);
  }
  return out;
}

const base = { rows: 16, columns: 20, allowFloat: true };

describe('decodeNative agrees with the image loader', () => {
  it('CT: 12 of 16 bits unsigned, slope 1, intercept -1024 (HU in Int16)', async () => {
    const p = { ...base, bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 0 };
    const f = await expectSameAsLoader(frameOf(320, 0, 4095, 2), {
      ...p,
      rescale: { rescaleSlope: 1, rescaleIntercept: -1024, modality: 'CT' },
    });
    expect(f.pixelData).toBeInstanceOf(Int16Array);
    expect(f.preScale?.scaled).toBe(true);
  });

  it('signed 16 bits without a modality LUT', async () => {
    await expectSameAsLoader(frameOf(320, 0, 65535, 2), {
      ...base,
      bitsAllocated: 16,
      bitsStored: 16,
      pixelRepresentation: 1,
    });
  });

  it('signed values in 12 of 16 bits are sign-extended (high bits set or not)', async () => {
    const f = await expectSameAsLoader(frameOf(320, 0, 65535, 2, 3), {
      ...base,
      bitsAllocated: 16,
      bitsStored: 12,
      pixelRepresentation: 1,
      rescale: { rescaleSlope: 1, rescaleIntercept: -1024, modality: 'MR' },
    });
    expect(f.min).toBeGreaterThanOrEqual(-2048 - 1024);
    expect(f.max).toBeLessThanOrEqual(2047 - 1024);
  });

  it('a fractional rescale gives floats where float textures render, raw values where not', async () => {
    const p = {
      ...base,
      bitsAllocated: 16,
      bitsStored: 16,
      pixelRepresentation: 0,
      rescale: { rescaleSlope: 2.5, rescaleIntercept: -10.25, modality: 'MR' },
    };
    const float = await expectSameAsLoader(frameOf(320, 0, 65535, 2), p);
    expect(float.pixelData).toBeInstanceOf(Float32Array);
    const raw = await expectSameAsLoader(frameOf(320, 0, 65535, 2), { ...p, allowFloat: false });
    expect(raw.preScale).toBeUndefined();
  });

  it('a negative slope, and values that leave the range of the chosen type', async () => {
    await expectSameAsLoader(frameOf(320, 0, 4095, 2), {
      ...base,
      bitsAllocated: 16,
      bitsStored: 12,
      pixelRepresentation: 0,
      rescale: { rescaleSlope: -1, rescaleIntercept: 100, modality: 'CT' },
    });
    await expectSameAsLoader(frameOf(320, 0, 65535, 2), {
      ...base,
      bitsAllocated: 16,
      bitsStored: 16,
      pixelRepresentation: 0,
      rescale: { rescaleSlope: 1, rescaleIntercept: -32768, modality: 'CT' },
    });
  });

  it('8 bits, with and without a modality LUT; implicit VR; bytes at an odd offset', async () => {
    const p = { ...base, bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 0 };
    await expectSameAsLoader(frameOf(320, 0, 255, 1), p);
    await expectSameAsLoader(frameOf(320, 0, 255, 1), {
      ...p,
      rescale: { rescaleSlope: 4, rescaleIntercept: -3, modality: 'OT' },
    });
    const p16 = { ...base, bitsAllocated: 16, bitsStored: 16, pixelRepresentation: 0 };
    await expectSameAsLoader(frameOf(320, 0, 60000, 2), p16, '1.2.840.10008.1.2');
    const odd = new Uint8Array(641);
    odd.set(frameOf(320, 0, 60000, 2), 1);
    const expected = await loaderDecode(odd.subarray(1), EXPLICIT_LE, p16);
    const ours = decodeNative(odd.slice().subarray(1), EXPLICIT_LE, p16);
    expect(Array.from(ours?.pixelData ?? [])).toEqual(Array.from(expected.pixelData));
  });

  it('leaves to the loader what it cannot decode: compressed syntaxes, a frame of the wrong size, colour, PET', () => {
    const p = { ...base, bitsAllocated: 16, bitsStored: 16, pixelRepresentation: 0 };
    expect(decodeNative(frameOf(320, 0, 100, 2), '1.2.840.10008.1.2.4.80', p)).toBeUndefined();
    expect(decodeNative(frameOf(319, 0, 100, 2), EXPLICIT_LE, p)).toBeUndefined();
    expect(decodeNative(frameOf(320, 0, 100, 2), '1.2.840.10008.1.2.2', p)).toBeUndefined();
    const grey = { samplesPerPixel: 1, photometricInterpretation: 'MONOCHROME2', bitsAllocated: 16 };
    expect(decodableNative({ ...grey, modality: 'CT' })).toBe(true);
    expect(decodableNative({ ...grey, samplesPerPixel: 3, photometricInterpretation: 'RGB' })).toBe(false);
    expect(decodableNative({ ...grey, photometricInterpretation: 'PALETTE COLOR' })).toBe(false);
    expect(decodableNative({ ...grey, modality: 'PT' })).toBe(false);
    expect(decodableNative({ ...grey, bitsAllocated: 32 })).toBe(false);
  });
});

if (!samplesPresent) console.warn(SAMPLES_MISSING);

describe.skipIf(!samplesPresent)('decodeNative on the native greyscale samples', () => {
  it('agrees with the image loader on every one', async () => {
    let checked = 0;
    for (const file of sampleFiles()) {
      let ds: dicomParser.DataSet;
      try {
        ds = dicomParser.parseDicom(readSample(file));
      } catch {
        continue; // not DICOM, or malformed on purpose
      }
      const ts = ds.string('x00020010') ?? '1.2.840.10008.1.2';
      const px = ds.elements.x7fe00010;
      const attrs = {
        samplesPerPixel: ds.uint16('x00280002'),
        photometricInterpretation: ds.string('x00280004'),
        bitsAllocated: ds.uint16('x00280100'),
        modality: ds.string('x00080060'),
      };
      const frames = Number(ds.string('x00280008') ?? 1);
      if (!px || px.encapsulatedPixelData || frames !== 1 || !decodableNative(attrs)) continue;
      if (ts !== '1.2.840.10008.1.2' && ts !== EXPLICIT_LE) continue;
      const slope = Number(ds.string('x00281053') ?? 1);
      const intercept = Number(ds.string('x00281052') ?? 0);
      const p: NativeFrameParams = {
        rows: ds.uint16('x00280010') ?? 0,
        columns: ds.uint16('x00280011') ?? 0,
        bitsAllocated: attrs.bitsAllocated ?? 16,
        bitsStored: ds.uint16('x00280101'),
        pixelRepresentation: ds.uint16('x00280103') ?? 0,
        rescale:
          slope === 1 && intercept === 0
            ? undefined
            : { rescaleSlope: slope, rescaleIntercept: intercept, modality: attrs.modality },
        allowFloat: true,
      };
      const bytes = new Uint8Array(ds.byteArray.buffer, ds.byteArray.byteOffset + px.dataOffset, px.length);
      if (bytes.length !== p.rows * p.columns * (p.bitsAllocated / 8)) continue;
      await expectSameAsLoader(bytes, p, ts);
      checked++;
    }
    expect(checked).toBeGreaterThan(10);
  });
});
