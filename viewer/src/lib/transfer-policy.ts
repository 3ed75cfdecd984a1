/**
 * Which transfer syntax the viewer asks the archive for, frame by frame (the WADO-RS Accept header,
 * PS3.18 8.7.3.5), by the link it has to the archive. Pure: no window, no fetch (the frame-fetch
 * worker and the unit tests use it too). Never lossy: a lossless original is never asked for in a
 * lossy syntax, and a lossy one is never transcoded again.
 *
 * - Fast link: frames as stored (`transfer-syntax=*`). The archive sends the stored bytes without any
 *   work; the browser decodes every compressed syntax in its decode workers. A syntax the browser
 *   cannot decode (or decodes wrongly) is asked for decoded (Explicit VR Little Endian).
 * - Slow link: frames stored uncompressed or in RLE (which compresses little: about 1.9:1 on CT) are
 *   asked for in JPEG-LS lossless, then HTJ2K lossless; the archive transcodes them and the browser
 *   decodes them to the same pixels. JPEG-LS goes first: on a real 512×512 CT it compresses 3.3:1
 *   (HTJ2K 2.9:1) and on small MR 4:1 (HTJ2K 2.3:1), for the same encoding time on the archive (about
 *   18 ms per CT slice). Frames already stored compressed come as stored: re-encoding one lossless
 *   syntax into another saves little, and a lossy original cannot be made lossless.
 * Each Accept ends with the stored form, so an image the archive cannot re-encode (more than 16 bits,
 * native YBR_FULL_422, float pixels) still comes, as stored.
 */

export type TransferMode = 'auto' | 'original' | 'lossless';
export const TRANSFER_MODES: readonly TransferMode[] = ['auto', 'original', 'lossless'];
export type LinkClass = 'fast' | 'slow';

export const ExplicitVRLittleEndian = '1.2.840.10008.1.2.1';
export const JpegLsLossless = '1.2.840.10008.1.2.4.80';
export const Htj2kLossless = '1.2.840.10008.1.2.4.201';
const RleLossless = '1.2.840.10008.1.2.5';
/** The stored syntax, whatever it is. */
export const AS_STORED = '*';

/** Pixel data not encapsulated: frames come from the archive as Explicit VR Little Endian. */
const NATIVE = new Set([
  '1.2.840.10008.1.2',
  '1.2.840.10008.1.2.1',
  '1.2.840.10008.1.2.1.99',
  '1.2.840.10008.1.2.2',
]);

/** Pixel data not encapsulated (frames come from a WADO-RS server as Explicit VR Little Endian). */
export function isNativeSyntax(uid: string): boolean {
  return NATIVE.has(uid);
}

/** Compressed syntaxes the viewer decodes itself (dicom-image-loader's decode workers), lossless ones. */
const DECODED_LOSSLESS = new Set([
  '1.2.840.10008.1.2.4.57', // JPEG lossless
  '1.2.840.10008.1.2.4.70', // JPEG lossless, first-order prediction
  '1.2.840.10008.1.2.4.80', // JPEG-LS lossless
  '1.2.840.10008.1.2.4.90', // JPEG 2000 lossless
  '1.2.840.10008.1.2.4.201', // HTJ2K lossless
  '1.2.840.10008.1.2.4.202', // HTJ2K lossless RPCL
  '1.2.840.10008.1.2.4.110', // JPEG XL lossless
  '1.2.840.10008.1.2.4.111', // JPEG XL JPEG recompression
  RleLossless,
]);

/**
 * Compressed syntaxes the viewer decodes itself whose pixels may differ from the original. Not the JPEG
 * processes 2&4, 6&8 and 10&12 (4.51, 4.53, 4.55): dicom-image-loader 5.14 decodes their 12-bit frames
 * with a pdf.js-derived decoder whose level shift is wrong (every value 15 too high out of 4096,
 * measured against dcmtk), so the archive decodes those (libjpeg-turbo) and sends the pixels.
 */
const DECODED_LOSSY = new Set([
  '1.2.840.10008.1.2.4.50', // JPEG baseline
  '1.2.840.10008.1.2.4.81', // JPEG-LS near-lossless
  '1.2.840.10008.1.2.4.91', // JPEG 2000
  '1.2.840.10008.1.2.4.203', // HTJ2K
  '1.2.840.10008.1.2.4.112', // JPEG XL
]);

/** Lossless syntaxes the viewer cannot decode but the archive may (JPEG 2000 part 2 lossless). */
const OTHER_LOSSLESS = new Set(['1.2.840.10008.1.2.4.92']);

/** Pixels of this transfer syntax may differ from the original (lossy compression; unknown ones too). */
export function isLossySyntax(uid: string): boolean {
  return !(NATIVE.has(uid) || DECODED_LOSSLESS.has(uid) || OTHER_LOSSLESS.has(uid));
}

/**
 * JPEG baseline labelled RGB was coded without a colour transform (PS3.5 8.2.1); dicom-image-loader's
 * libjpeg-turbo transforms it from YCbCr all the same (wrong colours), so the archive decodes it.
 */
function decodedWrongly(stored: string, photometric: string | undefined): boolean {
  return stored === '1.2.840.10008.1.2.4.50' && photometric === 'RGB';
}

/**
 * The transfer syntaxes to ask for, best first (AS_STORED is the stored one), for frames stored in
 * `stored` (undefined when the archive did not say: DICOM JSON AvailableTransferSyntaxUID is optional)
 * with this PhotometricInterpretation.
 */
export function preferredSyntaxes(
  stored: string | undefined,
  link: LinkClass,
  photometric?: string,
): string[] {
  const compressedLossless = [JpegLsLossless, Htj2kLossless];
  if (stored === undefined || NATIVE.has(stored) || stored === RleLossless) {
    return link === 'slow' ? [...compressedLossless, AS_STORED] : [AS_STORED];
  }
  if ((DECODED_LOSSLESS.has(stored) || DECODED_LOSSY.has(stored)) && !decodedWrongly(stored, photometric))
    return [AS_STORED];
  // The browser cannot decode it: the archive decodes it (or re-encodes it losslessly on a slow link).
  if (OTHER_LOSSLESS.has(stored) && link === 'slow')
    return [...compressedLossless, ExplicitVRLittleEndian, AS_STORED];
  return [ExplicitVRLittleEndian, AS_STORED];
}

/** PS3.18 Table 8.7.3-5: the media type of a frame in a multipart/related body. */
function partMediaType(syntax: string): string {
  if (syntax === JpegLsLossless) return 'image/jls';
  if (syntax === Htj2kLossless) return 'image/jphc';
  return 'application/octet-stream';
}

/**
 * The Accept header of a frame request: each syntax first as one single-part body (nothing to scan for
 * a boundary; this archive offers it), then as multipart/related (the form every WADO-RS server has),
 * in order of preference with decreasing q-values.
 */
export function acceptHeader(syntaxes: string[]): string {
  const ranges = [
    ...syntaxes.map((s) => `application/octet-stream; transfer-syntax=${s}`),
    ...syntaxes.map((s) => `multipart/related; type="${partMediaType(s)}"; transfer-syntax=${s}`),
  ];
  return ranges.map((r, i) => (i === 0 ? r : `${r}; q=${(1 - i / 20).toFixed(2)}`)).join(', ');
}

/** The Accept header for one frame stored in `stored`, on a link of class `link`. */
export function frameAccept(stored: string | undefined, link: LinkClass, photometric?: string): string {
  return acceptHeader(preferredSyntaxes(stored, link, photometric));
}

/** The link class a mode gives, `measured` being what `auto` found. */
export function effectiveLink(mode: TransferMode, measured: LinkClass): LinkClass {
  if (mode === 'original') return 'fast';
  if (mode === 'lossless') return 'slow';
  return measured;
}

/** One response body received: its size on the wire and when it started and finished arriving (ms). */
export interface TransferSample {
  bytes: number;
  start: number;
  end: number;
}

/**
 * The arrival of a response body from a Resource Timing entry (times made absolute with the timeline's
 * origin, so that the page's and a worker's entries compare); undefined for one served from cache.
 */
export function resourceSample(
  e: Pick<
    PerformanceResourceTiming,
    'initiatorType' | 'encodedBodySize' | 'transferSize' | 'responseStart' | 'responseEnd'
  >,
  timeOrigin: number,
): TransferSample | undefined {
  if (e.initiatorType !== 'fetch' && e.initiatorType !== 'xmlhttprequest') return undefined;
  // A cached (or revalidated) body did not cross the link.
  if (!e.encodedBodySize || e.transferSize < e.encodedBodySize || !e.responseStart) return undefined;
  return { bytes: e.transferSize, start: timeOrigin + e.responseStart, end: timeOrigin + e.responseEnd };
}

/** Below this the link is slow (Mbit/s), above FAST_ABOVE_MBPS fast again; in between it keeps its class. */
export const SLOW_BELOW_MBPS = 50;
export const FAST_ABOVE_MBPS = 100;
/** Bodies smaller than this say more about latency than throughput, and are not counted. */
const MIN_SAMPLE_BYTES = 16 * 1024;
/**
 * Taken off each body's arrival time: the delay a busy PC adds between the bytes arriving and the
 * browser timing them. Measured on loopback with headless Chromium on 2 cores while the viewer starts
 * (its chunk, WebGL, the decode workers): 0.5-3 ms per body, which made small frames (18 kB MR slices)
 * look like a 50 Mbit/s link and the viewer ask a loopback archive for compressed frames. A slow link
 * still shows: 18 kB take 7 ms at 20 Mbit/s, and a 512 kB CT slice 210 ms.
 */
export const TIMING_SLACK_MS = 2.5;
/** No estimate before this many bytes were measured. */
const MIN_MEASURED_BYTES = 256 * 1024;
const WINDOW = 24;

/**
 * Throughput of the link to the archive from the bodies received lately: their bytes over the time
 * during which at least one was arriving (the union of their arrival intervals), so that requests in
 * parallel are not counted as a slower link. Arrival starts at the first byte of the response, so the
 * archive's own time (transcoding, reading) is not counted either, and each is counted TIMING_SLACK_MS
 * shorter.
 */
export class LinkEstimator {
  private samples: TransferSample[] = [];
  private cls: LinkClass | undefined;

  record(sample: TransferSample): void {
    if (sample.bytes < MIN_SAMPLE_BYTES || !(sample.end >= sample.start)) return;
    this.samples.push({ ...sample, end: Math.max(sample.start, sample.end - TIMING_SLACK_MS) });
    if (this.samples.length > WINDOW) this.samples.shift();
    const mbps = this.mbps();
    if (mbps === undefined) return;
    if (mbps < SLOW_BELOW_MBPS) this.cls = 'slow';
    else if (mbps > FAST_ABOVE_MBPS) this.cls = 'fast';
    else this.cls ??= 'fast';
  }

  /** Mbit/s, or undefined before enough was measured. */
  mbps(): number | undefined {
    let bytes = 0;
    for (const s of this.samples) bytes += s.bytes;
    if (bytes < MIN_MEASURED_BYTES) return undefined;
    const sorted = [...this.samples].sort((a, b) => a.start - b.start);
    let busy = 0;
    let from = sorted[0].start;
    let to = sorted[0].end;
    for (const s of sorted.slice(1)) {
      if (s.start > to) {
        busy += to - from;
        from = s.start;
        to = s.end;
      } else to = Math.max(to, s.end);
    }
    busy += to - from;
    return (bytes * 8) / 1000 / Math.max(busy, 1);
  }

  /** The class measured, or undefined before enough was measured. */
  linkClass(): LinkClass | undefined {
    return this.cls;
  }
}

/** What the Network Information API says (Chromium; absent elsewhere). */
export interface ConnectionHints {
  effectiveType?: string;
  /** Mbit/s, as estimated by the browser (Chromium caps it at 10) */
  downlink?: number;
  saveData?: boolean;
}

/**
 * The class the browser's own estimate gives, before anything was measured; undefined if it says
 * nothing. Only save-data and a 2g/3g effective type count: Chromium's downlink is capped at 10 Mbit/s
 * and, before it has seen traffic, a default (1.35 in headless Chromium 156 on loopback).
 */
export function hintedLink(c: ConnectionHints | undefined): LinkClass | undefined {
  if (!c) return undefined;
  if (c.saveData) return 'slow';
  if (c.effectiveType && ['slow-2g', '2g', '3g'].includes(c.effectiveType)) return 'slow';
  return undefined;
}
