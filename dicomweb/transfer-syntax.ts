/**
 * Transfer syntaxes the archive can decode and encode (PS3.5 Annex A), which transcoding pairs are
 * possible for an image, and the WADO-RS content negotiation of frames with transcoding (PS3.18 8.7.3).
 * Pure; no I/O. The codecs themselves run in server/transcode/ (worker threads).
 */
import { frameMediaType, isNativeTransferSyntax, type MediaType, TransferSyntax } from './media-types';
import { notAcceptable } from './status';

export interface SyntaxInfo {
  name: string;
  /** pixel values may differ from the original */
  lossy: boolean;
  /** the worker can decode it */
  decode: boolean;
  /** the worker can encode it */
  encode: boolean;
  /** highest BitsStored the encoder takes */
  maxBits?: number;
  /** why maxBits is lower than the syntax allows (a limit of the encoder, not of the standard) */
  maxBitsNote?: string;
  /** samples of more than 8 bits are encoded only when unsigned and greyscale (the encoder's limit) */
  over8UnsignedGreyOnly?: boolean;
}

/** Every transfer syntax of pixel data known to the transcoder. */
export const SYNTAXES: Record<string, SyntaxInfo> = {
  '1.2.840.10008.1.2': { name: 'Implicit VR Little Endian', lossy: false, decode: true, encode: true },
  '1.2.840.10008.1.2.1': { name: 'Explicit VR Little Endian', lossy: false, decode: true, encode: true },
  '1.2.840.10008.1.2.1.99': {
    name: 'Deflated Explicit VR Little Endian',
    lossy: false,
    decode: true,
    encode: true,
  },
  '1.2.840.10008.1.2.2': { name: 'Explicit VR Big Endian', lossy: false, decode: true, encode: false },
  '1.2.840.10008.1.2.4.50': {
    name: 'JPEG Baseline (8-bit)',
    lossy: true,
    decode: true,
    encode: true,
    maxBits: 8,
  },
  '1.2.840.10008.1.2.4.51': {
    name: 'JPEG Extended (12-bit)',
    lossy: true,
    decode: true,
    encode: true,
    maxBits: 8,
    maxBitsNote:
      'the WebAssembly JPEG encoder makes lossy JPEG from 8-bit samples only; 12-bit JPEG Extended (Process 4) needs DCMTK (dcmcjpeg) on the server, which is not installed; ask for a lossless syntax or JPEG 2000',
  },
  '1.2.840.10008.1.2.4.53': { name: 'JPEG Spectral Selection', lossy: true, decode: true, encode: false },
  '1.2.840.10008.1.2.4.55': { name: 'JPEG Full Progression', lossy: true, decode: true, encode: false },
  '1.2.840.10008.1.2.4.57': { name: 'JPEG Lossless', lossy: false, decode: true, encode: false },
  '1.2.840.10008.1.2.4.70': {
    name: 'JPEG Lossless SV1',
    lossy: false,
    decode: true,
    encode: true,
    maxBits: 16,
  },
  '1.2.840.10008.1.2.4.80': {
    name: 'JPEG-LS Lossless',
    lossy: false,
    decode: true,
    encode: true,
    maxBits: 16,
  },
  '1.2.840.10008.1.2.4.81': {
    name: 'JPEG-LS Near-Lossless',
    lossy: true,
    decode: true,
    encode: true,
    maxBits: 16,
  },
  '1.2.840.10008.1.2.4.90': {
    name: 'JPEG 2000 Lossless',
    lossy: false,
    decode: true,
    encode: true,
    maxBits: 16,
  },
  '1.2.840.10008.1.2.4.91': { name: 'JPEG 2000', lossy: true, decode: true, encode: true, maxBits: 16 },
  '1.2.840.10008.1.2.4.201': {
    name: 'HTJ2K Lossless',
    lossy: false,
    decode: true,
    encode: true,
    maxBits: 16,
  },
  '1.2.840.10008.1.2.4.202': {
    name: 'HTJ2K Lossless RPCL',
    lossy: false,
    decode: true,
    encode: true,
    maxBits: 16,
  },
  '1.2.840.10008.1.2.4.203': { name: 'HTJ2K', lossy: true, decode: true, encode: true, maxBits: 16 },
  '1.2.840.10008.1.2.5': { name: 'RLE Lossless', lossy: false, decode: true, encode: true, maxBits: 16 },
};

/**
 * 12-bit JPEG Extended becomes available when the server finds an encoder for it (DCMTK's dcmcjpeg,
 * server/transcode/dcmtk.ts), for unsigned greyscale samples of at most 12 bits.
 */
export function enableJpegExtended12(): void {
  const ext = SYNTAXES['1.2.840.10008.1.2.4.51'];
  ext.maxBits = 12;
  ext.maxBitsNote = undefined;
  ext.over8UnsignedGreyOnly = true;
}

export const describeSyntax = (uid: string) => `${SYNTAXES[uid]?.name ?? 'transfer syntax'} (${uid})`;

/** What transcoding needs to know about an image (from its DICOM JSON). */
export interface ImageInfo {
  Rows: number;
  Columns: number;
  BitsAllocated: number;
  BitsStored: number;
  PixelRepresentation: number;
  SamplesPerPixel: number;
  PhotometricInterpretation: string;
  PlanarConfiguration: number;
  NumberOfFrames: number;
  RescaleSlope: number;
  RescaleIntercept: number;
  WindowCenter?: number;
  WindowWidth?: number;
  VOILUTFunction?: string;
  /** PixelData has VR OF/OD (float pixel data) */
  floatPixels: boolean;
  /** a Modality LUT Sequence replaces the rescale (read it for rendering) */
  modalityLutSequence?: boolean;
}

type JsonAttr = { vr?: string; Value?: unknown[] };

/** The image attributes of one instance's DICOM JSON (PS3.18 F.2), or undefined without pixel data. */
export function imageInfo(doc: Record<string, JsonAttr>): ImageInfo | undefined {
  const num = (tag: string): number | undefined => {
    const v = doc[tag]?.Value?.[0];
    const n = typeof v === 'string' ? Number(v) : (v as number | undefined);
    return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
  };
  const rows = num('00280010');
  const cols = num('00280011');
  if (!rows || !cols) return undefined;
  const bitsAllocated = num('00280100') ?? 16;
  return {
    Rows: rows,
    Columns: cols,
    BitsAllocated: bitsAllocated,
    BitsStored: num('00280101') ?? bitsAllocated,
    PixelRepresentation: num('00280103') ?? 0,
    SamplesPerPixel: num('00280002') ?? 1,
    PhotometricInterpretation: String(doc['00280004']?.Value?.[0] ?? 'MONOCHROME2').trim(),
    PlanarConfiguration: num('00280006') ?? 0,
    NumberOfFrames: num('00280008') ?? 1,
    RescaleSlope: num('00281053') ?? 1,
    RescaleIntercept: num('00281052') ?? 0,
    WindowCenter: num('00281050'),
    WindowWidth: num('00281051'),
    VOILUTFunction: doc['00281056']?.Value?.[0] as string | undefined,
    floatPixels: ['7FE00008', '7FE00009'].some((t) => doc[t] !== undefined),
    modalityLutSequence: doc['00283000']?.Value?.length ? true : undefined,
  };
}

/** Why `stored` cannot be turned into `target` for this image, or undefined when it can. */
export function transcodeRefusal(
  stored: string,
  target: string,
  image: ImageInfo | undefined,
): string | undefined {
  if (stored === target) return undefined;
  const from = SYNTAXES[stored];
  const to = SYNTAXES[target];
  if (!to) return `transcoding to ${target} is not supported`;
  if (!from?.decode) return `pixel data stored in ${describeSyntax(stored)} cannot be decoded here`;
  if (!image) return 'the instance has no image pixel data';
  if (image.floatPixels) return 'float pixel data has no compressed transfer syntax';
  if (isNativeTransferSyntax(target)) {
    return to.encode || target === TransferSyntax.ExplicitVRLittleEndian
      ? undefined
      : `transcoding to ${describeSyntax(target)} is not supported`;
  }
  if (from.lossy && !to.lossy) {
    return (
      `the instance is stored lossy in ${describeSyntax(stored)}: a lossless transfer syntax ` +
      `(${describeSyntax(target)}) cannot give back the original pixels`
    );
  }
  if (!to.encode) return `encoding into ${describeSyntax(target)} is not supported`;
  if (image.BitsAllocated === 1)
    return 'bit-packed (1-bit) pixel data has no compressed transfer syntax here';
  if (to.maxBits && image.BitsStored > to.maxBits) {
    return (
      `${describeSyntax(target)} takes at most ${to.maxBits} bits per sample; this image has ${image.BitsStored}` +
      (to.maxBitsNote ? ` (${to.maxBitsNote})` : '')
    );
  }
  if (to.over8UnsignedGreyOnly && image.BitsStored > 8) {
    if (image.PixelRepresentation !== 0)
      return `${describeSyntax(target)} is made here from unsigned samples only (JPEG codes unsigned samples; this image's are signed)`;
    if (image.SamplesPerPixel !== 1)
      return `${describeSyntax(target)} is made here from greyscale samples only when they have more than 8 bits`;
  }
  if (image.SamplesPerPixel !== 1 && image.SamplesPerPixel !== 3) {
    return `${image.SamplesPerPixel} samples per pixel cannot be encoded`;
  }
  if (image.SamplesPerPixel === 3 && /^YBR_(FULL_422|PARTIAL)/.test(image.PhotometricInterpretation)) {
    // Stored subsampled: only a decoder that converts to RGB gives full-resolution samples to encode.
    if (isNativeTransferSyntax(stored))
      return `${image.PhotometricInterpretation} pixel data is not re-encoded (convert to RGB first)`;
  }
  return undefined;
}

/** The media types of frames, and their default transfer syntax when the Accept has none. */
const DEFAULT_SYNTAX_OF_TYPE: Record<string, string> = {
  'image/jpeg': '1.2.840.10008.1.2.4.70',
  'image/jls': '1.2.840.10008.1.2.4.80',
  'image/jp2': '1.2.840.10008.1.2.4.90',
  'image/jphc': '1.2.840.10008.1.2.4.201',
  'image/dicom-rle': '1.2.840.10008.1.2.5',
  'application/octet-stream': TransferSyntax.ExplicitVRLittleEndian,
};

export interface FrameTranscoding {
  multipart: boolean;
  /** Content-Type of each frame part */
  partType: string;
  /** transfer syntax of the frames sent */
  syntax: string;
  /** frames must be transcoded from the stored syntax */
  transcode: boolean;
  /** chosen for transfer-syntax=* because the caller offered it (`preferred`) instead of the stored one */
  preferred?: boolean;
}

function typeMatches(range: string, type: string): boolean {
  if (range === '*/*' || range === type) return true;
  return range.endsWith('/*') && type.startsWith(range.slice(0, -1));
}

/**
 * WADO-RS frames (and pixel bulk data) with transcoding: the first acceptable media range whose
 * transfer syntax this image can be given in. application/octet-stream without a transfer-syntax is
 * Explicit VR Little Endian (decoded pixels, PS3.18 8.7.3.5.2); transfer-syntax=* is the stored syntax.
 * A wildcard (*\/*) without a syntax keeps the stored syntax. 406 with every reason when nothing fits.
 * With image null (not read yet), a choice that needs transcoding returns needsImage instead.
 * `preferred`: a syntax the caller can send without transcoding (a copy made at ingest), chosen for
 * transfer-syntax=* instead of the stored one when the media range allows its media type.
 */
export function negotiateFrameSyntax(
  accept: MediaType[],
  stored: string,
  image: ImageInfo | undefined | null,
  opts: { preferred?: string } = {},
): FrameTranscoding & { needsImage?: boolean } {
  const storedNative = isNativeTransferSyntax(stored);
  const storedSyntax = storedNative ? TransferSyntax.ExplicitVRLittleEndian : stored;
  const reasons: string[] = [];
  for (const m of accept) {
    let type = m.type;
    let multipart = false;
    if (type === 'multipart/related' || type === 'multipart/*') {
      multipart = true;
      type = (m.params.type ?? 'application/octet-stream').toLowerCase();
    } else if (type === '*/*') {
      multipart = true;
    }
    const ts = m.params['transfer-syntax'];
    let target: string | undefined;
    let preferred = false;
    if (
      ts === '*' &&
      opts.preferred &&
      (type === 'application/octet-stream' || typeMatches(type, frameMediaType(opts.preferred)))
    ) {
      target = opts.preferred;
      preferred = true;
    } else if (ts === '*' || (ts === undefined && (type === '*/*' || type === 'image/*')))
      target = storedSyntax;
    else if (ts !== undefined)
      target = isNativeTransferSyntax(ts) ? TransferSyntax.ExplicitVRLittleEndian : ts;
    else if (
      typeMatches(type, frameMediaType(storedSyntax)) &&
      frameMediaType(storedSyntax) !== 'application/octet-stream'
    )
      target = storedSyntax; // image/jpeg for a JPEG-stored frame: as stored
    else target = DEFAULT_SYNTAX_OF_TYPE[type];
    if (!target) continue;
    if (ts && isNativeTransferSyntax(ts) && ts !== TransferSyntax.ExplicitVRLittleEndian) {
      reasons.push(
        `frames are never sent in ${describeSyntax(ts)}; ask for ${TransferSyntax.ExplicitVRLittleEndian}`,
      );
      continue;
    }
    const partBase = frameMediaType(target);
    if (!typeMatches(type, partBase) && !(ts !== undefined && type === 'application/octet-stream')) {
      reasons.push(`${describeSyntax(target)} is sent as ${partBase}, not ${type}`);
      continue;
    }
    const partType =
      type === 'application/octet-stream' || partBase === 'application/octet-stream'
        ? `application/octet-stream; transfer-syntax=${target}`
        : `${partBase}; transfer-syntax=${target}`;
    const choice = { multipart, partType, syntax: target, transcode: target !== storedSyntax };
    if (preferred) return { ...choice, preferred };
    // image === null: not read yet; the caller reads it and negotiates again when a transcode is chosen.
    if (image === null && target !== storedSyntax) return { ...choice, needsImage: true };
    const refusal = transcodeRefusal(storedSyntax, target, image ?? undefined);
    if (refusal) {
      reasons.push(refusal);
      continue;
    }
    return choice;
  }
  throw notAcceptable(
    `cannot send the frames of this instance (stored in ${describeSyntax(stored)}) in any accepted form` +
      (reasons.length ? `: ${[...new Set(reasons)].join('; ')}` : ''),
  );
}
