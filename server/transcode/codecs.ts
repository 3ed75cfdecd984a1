/**
 * Frame decoding and encoding with the WebAssembly codecs of dcmjs-codecs (libjpeg-turbo, CharLS,
 * OpenJPEG, OpenJPH, an RLE codec). Runs inside a worker thread (worker.ts), never on the event loop.
 */
import * as dcmjsCodecsNs from 'dcmjs-codecs';
import { jpegLsPlanar } from '../../dicomweb/codestream';
import type { ImageInfo } from '../../dicomweb/transfer-syntax';

type Lib = typeof import('dcmjs-codecs');
const lib: Lib = ((dcmjsCodecsNs as unknown as { default?: Lib }).default ?? dcmjsCodecsNs) as Lib;
const { NativeCodecs, Context } = lib;

let ready: Promise<void> | undefined;
export function initCodecs(): Promise<void> {
  ready ??= NativeCodecs.initializeAsync();
  return ready;
}

type Ctx = InstanceType<typeof Context>;

function context(image: ImageInfo, photometric: string, planar: number): Ctx {
  return new Context({
    width: image.Columns,
    height: image.Rows,
    bitsAllocated: image.BitsAllocated,
    bitsStored: image.BitsStored,
    samplesPerPixel: image.SamplesPerPixel,
    pixelRepresentation: image.PixelRepresentation,
    planarConfiguration: planar,
    photometricInterpretation: photometric,
  });
}

export interface Pixels {
  /** native little-endian samples */
  data: Uint8Array;
  /** PhotometricInterpretation of `data` (a decoder may convert YBR to RGB) */
  photometric: string;
  /** PlanarConfiguration of `data` */
  planar: number;
}

const JPEG = new Set([
  '1.2.840.10008.1.2.4.50',
  '1.2.840.10008.1.2.4.51',
  '1.2.840.10008.1.2.4.53',
  '1.2.840.10008.1.2.4.55',
  '1.2.840.10008.1.2.4.57',
  '1.2.840.10008.1.2.4.70',
]);
const JPEG_LS = new Set(['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81']);
const J2K = new Set(['1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91']);
const HTJ2K = new Set(['1.2.840.10008.1.2.4.201', '1.2.840.10008.1.2.4.202', '1.2.840.10008.1.2.4.203']);
const RLE = '1.2.840.10008.1.2.5';

export function isEncapsulated(ts: string): boolean {
  return JPEG.has(ts) || JPEG_LS.has(ts) || J2K.has(ts) || HTJ2K.has(ts) || ts === RLE;
}

function expectedLength(image: ImageInfo): number {
  return image.Rows * image.Columns * image.SamplesPerPixel * Math.ceil(image.BitsAllocated / 8);
}

/** Decodes one frame of `ts` into native pixels; native frames are returned as they are. */
export function decodeFrame(ts: string, image: ImageInfo, frame: Uint8Array): Pixels {
  const pi = image.PhotometricInterpretation;
  if (!isEncapsulated(ts)) return { data: frame, photometric: pi, planar: image.PlanarConfiguration };
  let ctx = context(image, pi, image.PlanarConfiguration);
  ctx.setEncodedBuffer(frame);
  let photometric = pi;
  let planar = image.PlanarConfiguration;
  if (JPEG.has(ts)) {
    // YBR is turned into RGB; an RGB image (no colour transform in its JPEG) stays as it is.
    const ybrToRgb = pi.startsWith('YBR');
    ctx = NativeCodecs.decodeJpeg(ctx, { convertColorspaceToRgb: ybrToRgb });
    if (image.SamplesPerPixel === 3 && ybrToRgb) {
      photometric = 'RGB';
      planar = 0;
    }
  } else if (JPEG_LS.has(ts)) {
    ctx = NativeCodecs.decodeJpegLs(ctx, {});
    // CharLS gives the samples of a frame coded one component per scan (interleave mode 0) plane by
    // plane, though the frame declares PlanarConfiguration 0 (PS3.5 8.2.3).
    planar = jpegLsPlanar(frame) ? 1 : 0;
  } else if (J2K.has(ts)) {
    ctx = NativeCodecs.decodeJpeg2000(ctx, {});
    if (/^YBR_(RCT|ICT)$/.test(pi)) photometric = 'RGB';
    planar = 0;
  } else if (HTJ2K.has(ts)) {
    ctx = NativeCodecs.decodeHtJpeg2000(ctx, {});
    if (/^YBR_(RCT|ICT)$/.test(pi)) photometric = 'RGB';
    planar = 0;
  } else {
    ctx = NativeCodecs.decodeRle(ctx, {});
  }
  const data = ctx.getDecodedBuffer();
  const want = expectedLength(image);
  if (!data || data.length < want) {
    throw new Error(
      `the ${image.Columns}x${image.Rows} frame could not be decoded: ${data?.length ?? 0} of ${want} bytes`,
    );
  }
  const exact = data.length === want ? data : data.subarray(0, want);
  // Decoded pixels come in the layout the image declares.
  if (planar === 1 && image.PlanarConfiguration === 0 && image.SamplesPerPixel > 1)
    return { data: interleave(exact, image), photometric, planar: 0 };
  return { data: exact, photometric, planar };
}

/** Planes (all of sample 1, then 2, ...) to pixels (samples side by side), for 8- or 16-bit samples. */
function interleave(planes: Uint8Array, image: ImageInfo): Uint8Array {
  const bytes = Math.ceil(image.BitsAllocated / 8);
  const spp = image.SamplesPerPixel;
  const pixels = image.Rows * image.Columns;
  const out = new Uint8Array(planes.length);
  for (let s = 0; s < spp; s++)
    for (let p = 0; p < pixels; p++)
      for (let b = 0; b < bytes; b++) out[(p * spp + s) * bytes + b] = planes[(s * pixels + p) * bytes + b];
  return out;
}

export interface EncodeOptions {
  /** JPEG baseline quality (1-100) */
  quality?: number;
}

/** Lossy JPEG (DCT) syntaxes the IJG encoder makes: Baseline, and Extended from 8-bit samples. */
const JPEG_LOSSY_ENCODE = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51']);

/**
 * The 8-bit samples the lossy JPEG encoder takes: it reads one byte per sample and accepts BitsStored 8
 * only, so samples of fewer bits are declared as 8, and 16-bit words holding at most 8 bits are packed.
 */
function eightBitSamples(image: ImageInfo, px: Pixels): { image: ImageInfo; data: Uint8Array } {
  let data = px.data;
  if (image.BitsAllocated === 16) {
    data = new Uint8Array(data.length >> 1);
    for (let i = 0; i < data.length; i++) data[i] = px.data[i * 2];
  }
  return { image: { ...image, BitsAllocated: 8, BitsStored: 8 }, data };
}

/** Encodes native pixels into one frame of `ts` (an encapsulated syntax). */
export function encodeFrame(ts: string, image: ImageInfo, px: Pixels, opts: EncodeOptions = {}): Uint8Array {
  if (!isEncapsulated(ts)) return px.data;
  if (JPEG_LOSSY_ENCODE.has(ts)) {
    if (image.BitsStored > 8)
      throw new Error(`lossy JPEG takes at most 8 bits per sample, not ${image.BitsStored}`);
    // JPEG Extended (Process 2) from 8-bit samples: the IJG encoder writes a sequential DCT codestream
    // with Huffman coding, which is what Process 2 is (its frame header is SOF0 when its tables fit baseline).
    const eight = eightBitSamples(image, px);
    let ctx = context(eight.image, px.photometric, px.planar);
    ctx.setDecodedBuffer(eight.data);
    // A YBR_FULL source goes into JPEG as YBR (the encoder's own transform is for RGB).
    ctx = NativeCodecs.encodeJpeg(ctx, { lossy: true, quality: opts.quality ?? 90 });
    const out = ctx.getEncodedBuffer();
    if (!out || out.length === 0) throw new Error(`encoding into ${ts} produced nothing`);
    return out;
  }
  let ctx = context(image, px.photometric, px.planar);
  ctx.setDecodedBuffer(px.data);
  if (JPEG.has(ts)) {
    ctx = NativeCodecs.encodeJpeg(ctx, { lossy: false, predictor: 1, pointTransform: 0 });
  } else if (ts === '1.2.840.10008.1.2.4.80') {
    ctx = NativeCodecs.encodeJpegLs(ctx, { lossy: false });
  } else if (ts === '1.2.840.10008.1.2.4.81') {
    ctx = NativeCodecs.encodeJpegLs(ctx, { lossy: true, allowedLossyError: 2 });
  } else if (ts === '1.2.840.10008.1.2.4.90') {
    ctx = NativeCodecs.encodeJpeg2000(ctx, { lossy: false });
  } else if (ts === '1.2.840.10008.1.2.4.91') {
    ctx = NativeCodecs.encodeJpeg2000(ctx, { lossy: true, rate: 10 });
  } else if (ts === '1.2.840.10008.1.2.4.203') {
    ctx = NativeCodecs.encodeHtJpeg2000(ctx, { lossy: true });
  } else if (HTJ2K.has(ts)) {
    ctx = NativeCodecs.encodeHtJpeg2000(ctx, { lossy: false });
  } else {
    ctx = NativeCodecs.encodeRle(ctx, {});
  }
  const out = ctx.getEncodedBuffer();
  if (!out || out.length === 0) throw new Error(`encoding into ${ts} produced nothing`);
  return out;
}
