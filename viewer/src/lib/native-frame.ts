/**
 * Native (uncompressed) greyscale frames decoded as the image loader's decode worker decodes them
 * (dicom-image-loader 5.14: decodeLittleEndian, then postProcessDecodedPixels without a target
 * buffer): the same typed array, the same smallest and largest values, the same modality LUT applied.
 *
 * The frame-fetch worker runs this on the bytes it has just received and hands the pixels to the page
 * without a copy (see native-image.ts). The loader's own way costs the page's main thread about 2.5 ms
 * per 512×512 slice in copies alone: the bytes cloned into the decode worker's message, the decoded
 * frame cloned back, then copied once more into a typed array of the same type.
 *
 * No dependency on the page or on Cornerstone: the worker and the unit tests import it.
 * tests/viewer/native-frame.test.ts checks it against the loader's own decode.
 */

/** Transfer syntaxes whose frames are the pixels as little endian bytes. */
export const NATIVE_LITTLE_ENDIAN = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']);

/** The modality LUT the loader applies while decoding (its preScale): rescale slope and intercept. */
export interface RescaleParameters {
  rescaleSlope: number;
  rescaleIntercept: number;
  modality?: string;
}

/** What decoding a frame needs to know of its instance. */
export interface NativeFrameParams {
  rows: number;
  columns: number;
  /** 8 or 16 */
  bitsAllocated: number;
  bitsStored?: number;
  /** 0 unsigned, 1 two's complement */
  pixelRepresentation: number;
  /** the modality LUT to apply; undefined when the loader would apply none (slope 1, intercept 0) */
  rescale?: RescaleParameters;
  /** Cornerstone can draw float textures (a non-integer rescale is applied only then) */
  allowFloat: boolean;
}

export type DecodedPixels = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Float32Array;

export interface DecodedFrame {
  pixelData: DecodedPixels;
  /** smallest and largest value, after the modality LUT when it was applied */
  min: number;
  max: number;
  /** the modality LUT that was applied, as the loader records it (image.preScale) */
  preScale?: { enabled: true; scalingParameters: RescaleParameters; scaled: true };
}

/** The typed array the loader picks for values between min and max (getPixelDataTypeFromMinMax). */
function arrayTypeFor(min: number, max: number) {
  if (Number.isInteger(min) && Number.isInteger(max)) {
    if (min >= 0) {
      if (max <= 255) return Uint8Array;
      if (max <= 65535) return Uint16Array;
      if (max <= 4294967295) return Uint32Array;
    } else {
      if (min >= -128 && max <= 127) return Int8Array;
      if (min >= -32768 && max <= 32767) return Int16Array;
    }
  }
  return Float32Array;
}

/** Whether decodeNative can decode a frame of an instance with these attributes. */
export function decodableNative(p: {
  samplesPerPixel?: number;
  photometricInterpretation?: string;
  bitsAllocated?: number;
  modality?: string;
}): boolean {
  return (
    p.samplesPerPixel === 1 &&
    (p.photometricInterpretation === 'MONOCHROME1' || p.photometricInterpretation === 'MONOCHROME2') &&
    (p.bitsAllocated === 8 || p.bitsAllocated === 16) &&
    // PET (SUV) and RT dose scale their values with more than slope and intercept: the loader does it.
    p.modality !== 'PT' &&
    p.modality !== 'RTDOSE'
  );
}

/**
 * The frame's pixels as the loader would decode them, or undefined when this is not such a frame
 * (another transfer syntax, or not the expected number of bytes): the loader then decodes it itself.
 * May change `bytes` in place (sign extension).
 */
export function decodeNative(
  bytes: Uint8Array,
  transferSyntaxUid: string,
  p: NativeFrameParams,
): DecodedFrame | undefined {
  if (!NATIVE_LITTLE_ENDIAN.has(transferSyntaxUid)) return undefined;
  if (p.bitsAllocated !== 8 && p.bitsAllocated !== 16) return undefined;
  const pixels = p.rows * p.columns;
  if (!(pixels > 0) || bytes.length !== pixels * (p.bitsAllocated / 8)) return undefined;

  let raw: Uint8Array | Uint16Array | Int16Array;
  if (p.bitsAllocated === 8) raw = bytes;
  else {
    const aligned = bytes.byteOffset % 2 ? bytes.slice() : bytes;
    raw =
      p.pixelRepresentation === 0
        ? new Uint16Array(aligned.buffer, aligned.byteOffset, pixels)
        : new Int16Array(aligned.buffer, aligned.byteOffset, pixels);
  }
  // Signed values stored in fewer bits than allocated: sign-extended from bitsStored, in place.
  if (p.pixelRepresentation === 1 && p.bitsStored !== undefined) {
    const shift = 32 - p.bitsStored;
    for (let i = 0; i < raw.length; i++) raw[i] = (raw[i] << shift) >> shift;
  }
  let min = raw[0];
  let max = raw[0];
  for (let i = 1; i < raw.length; i++) {
    const v = raw[i];
    if (v < min) min = v;
    else if (v > max) max = v;
  }

  const r = p.rescale;
  const nonInteger =
    r !== undefined && !(Number.isInteger(r.rescaleSlope) && Number.isInteger(r.rescaleIntercept));
  const scale = r !== undefined && (p.allowFloat || !nonInteger);
  if (!scale) {
    const out = new (arrayTypeFor(min, max))(raw.length);
    out.set(raw);
    return { pixelData: out, min, max };
  }
  // The loader's order: the range is scaled end by end (a negative slope swaps them, as there).
  const lo = r.rescaleSlope * min + r.rescaleIntercept;
  const hi = r.rescaleSlope * max + r.rescaleIntercept;
  // Copied first, then scaled in place, as there (a value outside the new type wraps the same way).
  const out = new (arrayTypeFor(lo, hi))(raw.length);
  out.set(raw);
  const { rescaleSlope: slope, rescaleIntercept: intercept } = r;
  for (let i = 0; i < out.length; i++) out[i] = out[i] * slope + intercept;
  return {
    pixelData: out,
    min: lo,
    max: hi,
    preScale: { enabled: true, scalingParameters: { ...r }, scaled: true },
  };
}
