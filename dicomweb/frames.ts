/**
 * Frame addressing for WADO-RS /frames, computed at write time (PS3.18 §10.4.1.1.5 "Frames", PS3.5 §8 and
 * Annex A.4): for each frame, the byte spans of the stored file that hold it, so retrieval is N ranged reads.
 *
 * - Native pixel data: frame i = [PixelData offset + i × frameSize, frameSize], frameSize =
 *   Rows × Columns × SamplesPerPixel × BitsAllocated / 8 (YBR_FULL_422: 2 samples per pixel, PS3.3 C.7.6.3.1.2).
 *   BitsAllocated 1 (bit-packed, PS3.5 §8.1.1): frames start at bit i × Rows × Columns × SamplesPerPixel; when
 *   that is not a multiple of 8 frames do not start on byte boundaries and spans cannot express them → null
 *   (served from readObjectInMemory(), which re-aligns the bits).
 * - Encapsulated pixel data: the Basic Offset Table when present and consistent; else the Extended Offset
 *   Table (7FE0,0001)/(7FE0,0002); else one fragment per frame when #fragments = #frames; else one frame made
 *   of all fragments when there is one frame; else the fragments that begin with a codestream start marker
 *   (JPEG SOI FFD8, JPEG 2000 SOC FF4F, JP2 signature box) when there are exactly #frames of them; else null.
 * - Deflated data sets: null (offsets are in the inflated stream, not in the stored bytes).
 *
 * Uncompressed frames are served as little endian (PS3.18 §8.7.3.5.2: application/octet-stream is Explicit VR
 * Little Endian); for Explicit VR Big Endian files swapToLittleEndian() converts each frame.
 */
import { inflateRaw } from 'pako';
import { concat } from './bytes';
import { type DicomJsonDataset, type Span, swapped, toDicomJson } from './dicom-json';
import { findElement, type ScannedElement, type ScanResult, scanPart10 } from './part10';

export type { Span } from './dicom-json';

const PIXEL_DATA = '7FE00010';
const FLOAT_PIXEL_DATA = '7FE00008';
const DOUBLE_FLOAT_PIXEL_DATA = '7FE00009';
const EXTENDED_OFFSET_TABLE = '7FE00001';

function firstNumber(json: DicomJsonDataset, tag: string): number | undefined {
  const v = json[tag]?.Value?.[0];
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string') {
    const n = Number.parseInt(v, 10);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

function pixelElement(scan: ScanResult): ScannedElement | undefined {
  return (
    findElement(scan.dataset, PIXEL_DATA) ??
    findElement(scan.dataset, FLOAT_PIXEL_DATA) ??
    findElement(scan.dataset, DOUBLE_FLOAT_PIXEL_DATA)
  );
}

/** Number of Frames (0028,0008); 1 for single-frame images, 0 when there is no pixel data. */
export function numberOfFrames(json: DicomJsonDataset): number {
  if (!json[PIXEL_DATA] && !json[FLOAT_PIXEL_DATA] && !json[DOUBLE_FLOAT_PIXEL_DATA]) return 0;
  const n = firstNumber(json, '00280008');
  return n !== undefined && n >= 1 ? Math.floor(n) : 1;
}

/** Image Pixel module attributes needed to cut native pixel data into frames. */
interface PixelGeometry {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bitsAllocated: number;
  frames: number;
  ybr422: boolean;
}

function geometry(json: DicomJsonDataset): PixelGeometry | undefined {
  const rows = firstNumber(json, '00280010');
  const columns = firstNumber(json, '00280011');
  const bitsAllocated = firstNumber(json, '00280100');
  if (!rows || !columns || !bitsAllocated) return undefined;
  const samplesPerPixel = firstNumber(json, '00280002') ?? 1;
  const photometric = json['00280004']?.Value?.[0];
  return {
    rows,
    columns,
    samplesPerPixel,
    bitsAllocated,
    frames: numberOfFrames(json),
    ybr422: photometric === 'YBR_FULL_422',
  };
}

/** Bytes of one native frame; undefined when BitsAllocated is not a whole number of bytes. */
function nativeFrameSize(g: PixelGeometry): number | undefined {
  if (g.bitsAllocated % 8 !== 0) return undefined;
  // YBR_FULL_422 uncompressed: Y1 Y2 Cb Cr per two pixels, i.e. 2 samples per pixel (PS3.3 C.7.6.3.1.2).
  const samples = g.ybr422 && g.samplesPerPixel === 3 ? 2 : g.samplesPerPixel;
  return (g.rows * g.columns * samples * g.bitsAllocated) / 8;
}

/**
 * For each frame, the spans of the file holding its bytes; [] when there is no pixel data; null when the
 * frames are not addressable in the stored bytes (deflated, bit-packed frames off byte boundaries, inconsistent).
 */
export function frameSpans(scan: ScanResult, json: DicomJsonDataset): Span[][] | null {
  const el = pixelElement(scan);
  if (!el) return [];
  if (scan.deflated) return null;
  if (el.fragments) return encapsulatedFrameSpans(scan, el, numberOfFrames(json));
  const g = geometry(json);
  if (!g) return null;
  return nativeFrameSpans(el, g);
}

function nativeFrameSpans(el: ScannedElement, g: PixelGeometry): Span[][] | null {
  if (g.bitsAllocated === 1) {
    const bits = g.rows * g.columns * g.samplesPerPixel;
    if (g.frames > 1 && bits % 8 !== 0) return null;
    const size = Math.ceil(bits / 8);
    if (size * g.frames > el.length) return null;
    return Array.from({ length: g.frames }, (_, i) => [[el.offset + i * (bits / 8), size]]);
  }
  const size = nativeFrameSize(g);
  if (size === undefined || size * g.frames > el.length) return null;
  return Array.from({ length: g.frames }, (_, i) => [[el.offset + i * size, size]]);
}

function u32le(a: Uint8Array, i: number): number {
  return (a[i] | (a[i + 1] << 8) | (a[i + 2] << 16) | (a[i + 3] << 24)) >>> 0;
}

/** Offsets (relative to the first byte of the first fragment Item after the offset table) → frames of fragments. */
function framesFromOffsets(fragments: Span[], offsets: number[]): Span[][] | null {
  if (offsets.length === 0 || offsets[0] !== 0) return null;
  const base = fragments[0][0] - 8;
  const indexByOffset = new Map<number, number>();
  for (let i = 0; i < fragments.length; i++) indexByOffset.set(fragments[i][0] - 8 - base, i);
  const starts: number[] = [];
  for (let k = 0; k < offsets.length; k++) {
    const idx = indexByOffset.get(offsets[k]);
    if (idx === undefined || (k > 0 && idx <= starts[k - 1])) return null;
    starts.push(idx);
  }
  return starts.map((start, k) =>
    fragments.slice(start, k + 1 < starts.length ? starts[k + 1] : fragments.length),
  );
}

function isCodestreamStart(head: number): boolean {
  const marker = head >>> 16;
  return marker === 0xffd8 || marker === 0xff4f || head === 0x0000000c;
}

function encapsulatedFrameSpans(scan: ScanResult, el: ScannedElement, frames: number): Span[][] | null {
  const all = el.fragments ?? [];
  const fragments = all.slice(1);
  const heads = (el.fragmentHeads ?? []).slice(1);
  if (fragments.length === 0 || frames === 0) return null;

  // 1. Basic Offset Table (PS3.5 A.4): one u32 per frame.
  const bot = el.basicOffsetTable;
  if (bot && bot.length >= 4 && bot.length % 4 === 0) {
    const offsets = Array.from({ length: bot.length / 4 }, (_, k) => u32le(bot, k * 4));
    if (offsets.length === frames) {
      const result = framesFromOffsets(fragments, offsets);
      if (result) return result;
    }
  }
  // 2. Extended Offset Table (7FE0,0001): one u64 per frame, one fragment per frame.
  const eot = findElement(scan.dataset, EXTENDED_OFFSET_TABLE)?.value;
  if (eot && eot.length === frames * 8) {
    const offsets: number[] = [];
    for (let k = 0; k < frames; k++) offsets.push(u32le(eot, k * 8) + u32le(eot, k * 8 + 4) * 2 ** 32);
    const result = framesFromOffsets(fragments, offsets);
    if (result) return result;
  }
  // 3. One fragment per frame.
  if (fragments.length === frames) return fragments.map((f) => [f]);
  // 4. A single frame made of all fragments.
  if (frames === 1) return [fragments];
  // 5. Frames start where a codestream starts.
  const starts: number[] = [];
  heads.forEach((h, i) => {
    if (isCodestreamStart(h)) starts.push(i);
  });
  if (starts.length === frames && starts[0] === 0) {
    return starts.map((start, k) =>
      fragments.slice(start, k + 1 < starts.length ? starts[k + 1] : fragments.length),
    );
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------
// Byte order (PS3.5 §7.3): big endian native frames → little endian.

/** A little endian copy of 16-bit big endian words. */
export function swap16ToLittleEndian(bytes: Uint8Array): Uint8Array {
  return swapped(bytes, 2);
}

/** A little endian copy of 32-bit big endian words. */
export function swap32ToLittleEndian(bytes: Uint8Array): Uint8Array {
  return swapped(bytes, 4);
}

/**
 * A little endian copy of a native Explicit VR Big Endian frame. OB data is byte-ordered already; OW data is
 * 16-bit words even when BitsAllocated is 8 (PS3.5 §7.3, so 8-bit OW pairs are swapped); 32/64-bit samples
 * (OL/OF/OD, or OW with BitsAllocated 32) are swapped per sample.
 */
export function swapToLittleEndian(bytes: Uint8Array, bitsAllocated: number, vr = 'OW'): Uint8Array {
  if (vr === 'OB') return bytes.slice();
  const size = bitsAllocated > 16 ? bitsAllocated / 8 : 2;
  return swapped(bytes, size);
}

// ---------------------------------------------------------------------------------------------------------
// Fallback: objects whose frames or bulk data are not addressable as spans of the stored bytes.

export interface InMemoryObject {
  /** Every frame, byte-aligned, little endian (native) or the frame's codestream (encapsulated). */
  frames(): Uint8Array[];
  /** The raw value of a bulk data element by tag path ("7FE00010", "00540016/0/00181078"). */
  bulk(path: string): Uint8Array | undefined;
}

/** Parses a whole Part 10 object held in memory (inflating a deflated data set). Throws Part10Error. */
export function readObjectInMemory(bytes: Uint8Array): InMemoryObject {
  const scan = scanPart10(bytes);
  const data = scan.deflated ? inflateRaw(bytes.subarray(scan.datasetOffset)) : bytes;
  const view = (span: Span) => data.subarray(span[0], span[0] + span[1]);
  let json: DicomJsonDataset | undefined;
  const getJson = () => {
    json ??= toDicomJson(scan, data, { defaultCharset: 'latin1', bulkDataUri: (p) => p }).json;
    return json;
  };

  return {
    frames() {
      const el = pixelElement(scan);
      if (!el) return [];
      const j = getJson();
      if (el.fragments) {
        const spans = encapsulatedFrameSpans(scan, el, numberOfFrames(j));
        if (!spans) throw new Error('frames of this encapsulated pixel data cannot be delimited');
        return spans.map((frame) => concat(frame.map(view)));
      }
      const g = geometry(j);
      if (!g) return [];
      const value = view([el.offset, el.length]);
      if (g.bitsAllocated === 1) return unpackBitFrames(value, g);
      const size = nativeFrameSize(g);
      if (size === undefined) return [];
      const out: Uint8Array[] = [];
      for (let i = 0; i < g.frames && (i + 1) * size <= value.length; i++) {
        const frame = value.subarray(i * size, (i + 1) * size);
        out.push(el.bigEndian ? swapToLittleEndian(frame, g.bitsAllocated, el.vr) : frame);
      }
      return out;
    },
    bulk(path) {
      const el = elementAtPath(scan.dataset, path);
      return el ? view([el.offset, el.length]) : undefined;
    },
  };
}

/** Bit-packed (BitsAllocated 1) frames, each re-aligned to start on a byte (PS3.5 §8.1.1: LSB first). */
function unpackBitFrames(value: Uint8Array, g: PixelGeometry): Uint8Array[] {
  const bits = g.rows * g.columns * g.samplesPerPixel;
  const out: Uint8Array[] = [];
  for (let i = 0; i < g.frames; i++) {
    const start = i * bits;
    if (start + bits > value.length * 8) break;
    const frame = new Uint8Array(Math.ceil(bits / 8));
    if (start % 8 === 0) {
      frame.set(value.subarray(start / 8, start / 8 + frame.length));
      const extra = frame.length * 8 - bits;
      if (extra > 0) frame[frame.length - 1] &= 0xff >> extra;
    } else {
      for (let b = 0; b < bits; b++) {
        const src = start + b;
        if ((value[src >> 3] >> (src & 7)) & 1) frame[b >> 3] |= 1 << (b & 7);
      }
    }
    out.push(frame);
  }
  return out;
}

/** "00540016/0/00181078" → the element (item indices between tags). */
export function elementAtPath(dataset: readonly ScannedElement[], path: string): ScannedElement | undefined {
  const parts = path.toUpperCase().split('/');
  let elements: readonly ScannedElement[] | undefined = dataset;
  for (let k = 0; elements && k < parts.length; k += 2) {
    const el = findElement(elements, parts[k]);
    if (!el || k === parts.length - 1) return el;
    const index = Number(parts[k + 1]);
    elements = Number.isInteger(index) ? el.items?.[index] : undefined;
  }
  return undefined;
}
