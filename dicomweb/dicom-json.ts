/**
 * Scanned data set → DICOM JSON Model (PS3.18 Annex F.2), computed once per instance at ingest and stored
 * as a string: keys are 8-hex tags, attributes { vr, Value | InlineBinary | BulkDataURI }.
 *
 * - Strings are decoded per Specific Character Set (charset.ts) to NFC Unicode. Because every value is then
 *   Unicode, (0008,0005) is rewritten to ["ISO_IR 192"] whenever the file declared a character set or any
 *   decoded string is non-ASCII: the JSON (UTF-8 by definition, F.2) and any re-encoding of it must not claim
 *   the original repertoire. A file with no (or an empty) Specific Character Set and only ASCII text keeps it as is.
 * - PN values become { Alphabetic, Ideographic, Phonetic } (F.2.2), empty component groups omitted.
 * - IS/DS and binary numbers become JSON numbers (SV/UV: numbers when safe integers, else strings, F.2.3.1);
 *   an IS/DS that is not a valid number is kept as its string rather than invented or dropped.
 * - AT values are 8-hex strings.
 * - Binary VRs (OB OD OF OL OV OW UN) are InlineBinary (base64, little endian) up to inlineLimit bytes, else
 *   BulkDataURI; Pixel Data (7FE0,0010/0008/0009) is always a BulkDataURI. Bulk spans are returned in `bulk`
 *   keyed by the tag path ("7FE00010", "00540016/0/00181078"). Big endian binary spans in `bulk` are raw
 *   file bytes (the serving side swaps them, see frames.ts).
 * - Group 0002, group lengths (gggg,0000) and Data Set Trailing Padding (FFFC,FFFC) are not included.
 * - (0008,3002) Available Transfer Syntax UID is added with the stored transfer syntax.
 */
import { createDecoder, type DicomStringDecoder, isNonAscii, latin1 } from './charset';
import { BINARY_VRS, type ScannedElement, type ScanResult } from './part10';

export type Span = [offset: number, length: number];

export interface PersonNameJson {
  Alphabetic?: string;
  Ideographic?: string;
  Phonetic?: string;
}

export interface DicomJsonAttribute {
  vr: string;
  Value?: unknown[];
  InlineBinary?: string;
  BulkDataURI?: string;
}

export type DicomJsonDataset = Record<string, DicomJsonAttribute>;

/** The file bytes (or, for a deflated data set, the inflated data set) or a function reading a span of them. */
export type BytesAccessor = Uint8Array | ((offset: number, length: number) => Uint8Array | undefined);

export interface DicomJsonOptions {
  /** WHATWG label used for unlabelled non-UTF-8 text, e.g. 'windows-1258'. */
  defaultCharset: string;
  /** Builds the BulkDataURI of a bulk value from its tag path. */
  bulkDataUri: (path: string) => string;
  /** Binary values up to this many bytes are InlineBinary (default 1024). */
  inlineLimit?: number;
}

export interface DicomJsonResult {
  json: DicomJsonDataset;
  bulk: Record<string, Span>;
}

const PIXEL_DATA_TAGS = new Set(['7FE00010', '7FE00008', '7FE00009']);
/** Text VRs with a single value whose leading spaces are significant (PS3.5 Table 6.2-1). */
const TEXT_VRS = new Set(['LT', 'ST', 'UT']);
const STRING_VRS = new Set([
  ...['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT'],
]);
const NUMBER_SIZE: Record<string, number> = { US: 2, SS: 2, UL: 4, SL: 4, FL: 4, FD: 8, SV: 8, UV: 8 };
/** Word size for byte swapping big endian binary values into little endian InlineBinary. */
const SWAP_SIZE: Record<string, number> = { OW: 2, OF: 4, OL: 4, OD: 8, OV: 8 };

const DS_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const IS_RE = /^[+-]?\d+$/;

interface Context {
  opts: DicomJsonOptions;
  inlineLimit: number;
  read: ((offset: number, length: number) => Uint8Array | undefined) | undefined;
  bulk: Record<string, Span>;
  nonAscii: boolean;
}

export function toDicomJson(
  scan: ScanResult,
  bytes: BytesAccessor | undefined,
  opts: DicomJsonOptions,
): DicomJsonResult {
  const read =
    bytes === undefined
      ? undefined
      : typeof bytes === 'function'
        ? bytes
        : (offset: number, length: number) =>
            offset + length <= bytes.length ? bytes.subarray(offset, offset + length) : undefined;
  const ctx: Context = { opts, inlineLimit: opts.inlineLimit ?? 1024, read, bulk: {}, nonAscii: false };
  const decoder = createDecoder(undefined, opts.defaultCharset);
  const entries = convertItem(scan.dataset, decoder, '', ctx);
  // Rewritten (0008,0005) (see header) and (0008,3002) Available Transfer Syntax UID.
  const json: DicomJsonDataset = {};
  let charsetDone = false;
  let tsDone = false;
  const put = (tag: string, attr: DicomJsonAttribute) => {
    json[tag] = attr;
  };
  for (const [tag, attr] of entries) {
    if (!charsetDone && tag >= '00080005') {
      charsetDone = true;
      if (ctx.nonAscii && tag !== '00080005') put('00080005', { vr: 'CS', Value: ['ISO_IR 192'] });
    }
    if (!tsDone && tag >= '00083002') {
      tsDone = true;
      put('00083002', { vr: 'UI', Value: [scan.transferSyntaxUID] });
      if (tag === '00083002') continue;
    }
    if (tag === '00080005' && ctx.nonAscii) put(tag, { vr: 'CS', Value: ['ISO_IR 192'] });
    else put(tag, attr);
  }
  if (!charsetDone && ctx.nonAscii) put('00080005', { vr: 'CS', Value: ['ISO_IR 192'] });
  if (!tsDone) put('00083002', { vr: 'UI', Value: [scan.transferSyntaxUID] });
  return { json, bulk: ctx.bulk };
}

/** Converts one data set or item into [tag, attribute] entries in file order. */
function convertItem(
  elements: readonly ScannedElement[],
  inherited: DicomStringDecoder,
  pathPrefix: string,
  ctx: Context,
): Array<[string, DicomJsonAttribute]> {
  let decoder = inherited;
  // A Specific Character Set in an item applies to that item and the items nested in it (PS3.3 C.12.1.1.2).
  for (const el of elements) {
    if (el.tag === '00080005') {
      const terms = el.value ? latin1(el.value).split('\\') : [];
      if (terms.some((t) => t.trim() !== '')) decoder = createDecoder(terms, ctx.opts.defaultCharset);
      break;
    }
    if (el.tag > '00080005') break;
  }
  const out: Array<[string, DicomJsonAttribute]> = [];
  for (const el of elements) {
    const tag = el.tag;
    if (tag.startsWith('0002') || tag.endsWith('0000') || tag === 'FFFCFFFC' || tag.startsWith('FFFE'))
      continue;
    if (tag === '00080005') {
      out.push([tag, charsetAttribute(el, ctx)]);
      continue;
    }
    out.push([tag, convertElement(el, decoder, pathPrefix + tag, ctx)]);
  }
  return out;
}

/** A declared character set becomes ISO_IR 192: values are now Unicode. An empty one stays empty. */
function charsetAttribute(el: ScannedElement, ctx: Context): DicomJsonAttribute {
  const declared = el.value !== undefined && latin1(el.value).replace(/[\\\s\0]/g, '') !== '';
  if (declared) ctx.nonAscii = true;
  return declared ? { vr: 'CS', Value: ['ISO_IR 192'] } : { vr: 'CS' };
}

function convertElement(
  el: ScannedElement,
  decoder: DicomStringDecoder,
  path: string,
  ctx: Context,
): DicomJsonAttribute {
  const vr = el.vr;
  if (vr === 'SQ') {
    const items = el.items ?? [];
    if (items.length === 0) return { vr };
    return {
      vr,
      Value: items.map((item, i) => Object.fromEntries(convertItem(item, decoder, `${path}/${i}/`, ctx))),
    };
  }
  if (el.fragments || PIXEL_DATA_TAGS.has(el.tag)) {
    return bulkAttribute(el, path, ctx);
  }
  if (el.length === 0) return { vr };
  const binary = BINARY_VRS.has(vr);
  if (binary && el.length > ctx.inlineLimit) return bulkAttribute(el, path, ctx);
  const value = el.value ?? ctx.read?.(el.offset, el.length);
  if (!value) return bulkAttribute(el, path, ctx);
  if (binary) return { vr, InlineBinary: base64(el.bigEndian ? swapped(value, SWAP_SIZE[vr] ?? 1) : value) };
  if (STRING_VRS.has(vr)) return stringAttribute(vr, decoder(value, vr), ctx);
  if (vr === 'AT') return { vr, Value: tags(value, !el.bigEndian) };
  const size = NUMBER_SIZE[vr];
  if (size) return valuesOrEmpty(vr, numbers(vr, value, size, !el.bigEndian));
  // Unknown VR (cannot happen with the scanner's VR set): keep the bytes.
  return { vr: 'UN', InlineBinary: base64(value) };
}

function bulkAttribute(el: ScannedElement, path: string, ctx: Context): DicomJsonAttribute {
  if (el.length === 0 && !el.fragments) return { vr: el.vr };
  ctx.bulk[path] = [el.offset, el.length];
  return { vr: el.vr, BulkDataURI: ctx.opts.bulkDataUri(path) };
}

function valuesOrEmpty(vr: string, values: unknown[]): DicomJsonAttribute {
  return values.length === 0 || (values.length === 1 && values[0] === null) ? { vr } : { vr, Value: values };
}

/** Trims DICOM padding: trailing spaces/NULs always, leading spaces except for LT/ST/UT/UC. */
function trimValue(s: string, vr: string): string {
  let end = s.length;
  while (end > 0) {
    const c = s.charCodeAt(end - 1);
    if (c !== 0x20 && c !== 0) break;
    end--;
  }
  let start = 0;
  if (!TEXT_VRS.has(vr) && vr !== 'UC') {
    while (start < end && s.charCodeAt(start) === 0x20) start++;
  }
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

function stringAttribute(vr: string, text: string, ctx: Context): DicomJsonAttribute {
  if (!ctx.nonAscii && isNonAscii(text)) ctx.nonAscii = true;
  // LT, ST, UT and UR have VM 1: a backslash is part of the text (PS3.5 §6.2).
  const raw = TEXT_VRS.has(vr) || vr === 'UR' ? [text] : text.split('\\');
  const values: unknown[] = raw.map((s) => {
    const v = trimValue(s, vr);
    if (v === '') return null;
    switch (vr) {
      case 'PN':
        return personName(v);
      case 'DS':
        return DS_RE.test(v) ? Number(v) : v;
      case 'IS':
        return IS_RE.test(v) ? Number(v) : v;
      default:
        return v;
    }
  });
  return valuesOrEmpty(vr, values);
}

/** PS3.5 §6.2.1: up to three component groups separated by '=': alphabetic, ideographic, phonetic. */
function personName(value: string): PersonNameJson | null {
  const groups = value.split('=');
  const pn: PersonNameJson = {};
  const alphabetic = trimValue(groups[0] ?? '', 'PN');
  const ideographic = trimValue(groups[1] ?? '', 'PN');
  const phonetic = trimValue(groups[2] ?? '', 'PN');
  if (alphabetic) pn.Alphabetic = alphabetic;
  if (ideographic) pn.Ideographic = ideographic;
  if (phonetic) pn.Phonetic = phonetic;
  return alphabetic || ideographic || phonetic ? pn : null;
}

function numbers(vr: string, value: Uint8Array, size: number, little: boolean): unknown[] {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const count = Math.floor(value.length / size);
  const out: unknown[] = new Array(count);
  for (let k = 0, o = 0; k < count; k++, o += size) {
    switch (vr) {
      case 'US':
        out[k] = view.getUint16(o, little);
        break;
      case 'SS':
        out[k] = view.getInt16(o, little);
        break;
      case 'UL':
        out[k] = view.getUint32(o, little);
        break;
      case 'SL':
        out[k] = view.getInt32(o, little);
        break;
      case 'FL':
        out[k] = view.getFloat32(o, little);
        break;
      case 'FD':
        out[k] = view.getFloat64(o, little);
        break;
      case 'SV':
        out[k] = bigToJson(view.getBigInt64(o, little));
        break;
      default:
        out[k] = bigToJson(view.getBigUint64(o, little));
    }
  }
  return out;
}

function bigToJson(n: bigint): number | string {
  return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(n)
    : n.toString();
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).toUpperCase().padStart(2, '0'));

/** AT: pairs of (group, element) as 8-hex strings (F.2.3). */
function tags(value: Uint8Array, little: boolean): string[] {
  const out: string[] = [];
  for (let o = 0; o + 4 <= value.length; o += 4) {
    const g = little ? value[o] | (value[o + 1] << 8) : (value[o] << 8) | value[o + 1];
    const e = little ? value[o + 2] | (value[o + 3] << 8) : (value[o + 2] << 8) | value[o + 3];
    out.push(HEX[g >> 8] + HEX[g & 0xff] + HEX[e >> 8] + HEX[e & 0xff]);
  }
  return out;
}

/** A little endian copy of big endian words of `size` bytes (trailing partial word copied as is). */
export function swapped(bytes: Uint8Array, size: number): Uint8Array {
  // A copy even when given a Node Buffer (whose slice() is a view on the same memory).
  const out = new Uint8Array(bytes);
  if (size <= 1) return out;
  const whole = bytes.length - (bytes.length % size);
  for (let o = 0; o < whole; o += size) {
    for (let k = 0; k < size; k++) out[o + k] = bytes[o + size - 1 - k];
  }
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** RFC 4648 base64 (no Buffer: browser-safe). */
export function base64(bytes: Uint8Array): string {
  let out = '';
  const n = bytes.length;
  let i = 0;
  for (; i + 2 < n; i += 3) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64[v >> 18] + B64[(v >> 12) & 63] + B64[(v >> 6) & 63] + B64[v & 63];
  }
  if (i < n) {
    const v = (bytes[i] << 16) | ((i + 1 < n ? bytes[i + 1] : 0) << 8);
    out += B64[v >> 18] + B64[(v >> 12) & 63] + (i + 1 < n ? B64[(v >> 6) & 63] : '=') + '=';
  }
  return out;
}
