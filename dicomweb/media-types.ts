/**
 * Media types and transfer syntaxes of DICOMweb (PS3.18 8.7): parsing Content-Type and Accept,
 * and choosing what to send for each resource. Pure; no I/O.
 */
import { DicomwebError, notAcceptable } from './status';

export interface MediaType {
  /** lower-cased "type/subtype" */
  type: string;
  /** lower-cased parameter names, unquoted values */
  params: Record<string, string>;
  q: number;
}

/** Transfer syntaxes (PS3.5 Annex A, PS3.6 Table A-1). */
export const TransferSyntax = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  EncapsulatedUncompressedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.98',
} as const;

const NATIVE = new Set<string>([
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.DeflatedExplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
]);

/** true when pixel data is not encapsulated (frames are raw pixels). */
export function isNativeTransferSyntax(uid: string): boolean {
  return NATIVE.has(uid);
}

/** PS3.18 Table 8.7.3-5 (bulk/frame media types for compressed transfer syntaxes). */
const FRAME_MEDIA_TYPE: Record<string, string> = {
  '1.2.840.10008.1.2.4.50': 'image/jpeg',
  '1.2.840.10008.1.2.4.51': 'image/jpeg',
  '1.2.840.10008.1.2.4.57': 'image/jpeg',
  '1.2.840.10008.1.2.4.70': 'image/jpeg',
  '1.2.840.10008.1.2.4.80': 'image/jls',
  '1.2.840.10008.1.2.4.81': 'image/jls',
  '1.2.840.10008.1.2.4.90': 'image/jp2',
  '1.2.840.10008.1.2.4.91': 'image/jp2',
  '1.2.840.10008.1.2.4.92': 'image/jpx',
  '1.2.840.10008.1.2.4.93': 'image/jpx',
  '1.2.840.10008.1.2.4.201': 'image/jphc',
  '1.2.840.10008.1.2.4.202': 'image/jphc',
  '1.2.840.10008.1.2.4.203': 'image/jphc',
  '1.2.840.10008.1.2.5': 'image/dicom-rle',
  '1.2.840.10008.1.2.4.100': 'video/mpeg',
  '1.2.840.10008.1.2.4.101': 'video/mpeg',
  '1.2.840.10008.1.2.4.102': 'video/mp4',
  '1.2.840.10008.1.2.4.103': 'video/mp4',
  '1.2.840.10008.1.2.4.104': 'video/mp4',
  '1.2.840.10008.1.2.4.105': 'video/mp4',
  '1.2.840.10008.1.2.4.106': 'video/mp4',
  '1.2.840.10008.1.2.4.107': 'video/H265',
  '1.2.840.10008.1.2.4.108': 'video/H265',
};

export function frameMediaType(transferSyntaxUID: string): string {
  return FRAME_MEDIA_TYPE[transferSyntaxUID] ?? 'application/octet-stream';
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\/[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Splits on `sep` outside double quotes. */
function splitOutsideQuotes(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '"' && s[i - 1] !== '\\') quoted = !quoted;
    if (c === sep && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Parses one media type with parameters; returns undefined when malformed. */
export function parseMediaType(value: string): MediaType | undefined {
  const [head, ...rest] = splitOutsideQuotes(value, ';');
  const type = head.trim().toLowerCase();
  if (!TOKEN.test(type)) return undefined;
  const params: Record<string, string> = {};
  let q = 1;
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq <= 0) {
      if (p.trim() === '') continue;
      return undefined;
    }
    const name = p.slice(0, eq).trim().toLowerCase();
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    if (name === 'q') {
      q = Number(v);
      if (!Number.isFinite(q) || q < 0 || q > 1) return undefined;
    } else params[name] = v;
  }
  return { type, params, q };
}

/** Parses an Accept header into media ranges, best first (q, then order). An absent header is "*\/*". */
export function parseAccept(header: string | undefined): MediaType[] {
  if (!header || header.trim() === '') return [{ type: '*/*', params: {}, q: 1 }];
  const out: MediaType[] = [];
  for (const item of splitOutsideQuotes(header, ',')) {
    if (item.trim() === '') continue;
    const mt = parseMediaType(item);
    if (!mt) throw new DicomwebError(400, `malformed Accept header value "${item.trim()}"`);
    if (mt.q > 0) out.push(mt);
  }
  return out
    .map((m, i) => ({ m, i }))
    .sort((a, b) => b.m.q - a.m.q || a.i - b.i)
    .map(({ m }) => m);
}

function typeMatches(range: string, type: string): boolean {
  if (range === '*/*' || range === type) return true;
  return range.endsWith('/*') && type.startsWith(range.slice(0, -1));
}

/** Transfer syntax requested by a media range: '*' (any), a UID, or undefined (the default for the type). */
function requestedSyntax(m: MediaType): string | undefined {
  return m.params['transfer-syntax'];
}

export type InstanceRendering = { multipart: boolean };

/**
 * WADO-RS instances (study/series/instance retrieval): multipart/related; type="application/dicom",
 * or a single application/dicom for one instance. Every acceptable rendering, best first: the caller
 * serves the first it can (a transfer syntax it cannot transcode to passes to the next, PS3.18 8.7.8.1:
 * the highest priority *supported* media type). A syntax of '*' (or none) means as stored.
 */
export function negotiateInstances(
  accept: MediaType[],
  single: boolean,
): (InstanceRendering & { syntax?: string })[] {
  const out: (InstanceRendering & { syntax?: string })[] = [];
  for (const m of accept) {
    let rendering: (InstanceRendering & { syntax?: string }) | undefined;
    if (m.type === 'multipart/related') {
      const t = (m.params.type ?? 'application/dicom').toLowerCase();
      if (t === 'application/dicom' || t === '*/*')
        rendering = { multipart: true, syntax: requestedSyntax(m) };
    } else if (m.type === '*/*' || m.type === 'multipart/*') {
      rendering = { multipart: true, syntax: requestedSyntax(m) };
    } else if (m.type === 'application/dicom' && single) {
      rendering = { multipart: false, syntax: requestedSyntax(m) };
    }
    if (rendering && !out.some((r) => r.multipart === rendering.multipart && r.syntax === rendering.syntax))
      out.push(rendering);
  }
  if (out.length === 0)
    throw notAcceptable(
      `cannot produce any of the accepted media types; this resource is available as multipart/related; type="application/dicom"${single ? ' or application/dicom' : ''}`,
    );
  return out;
}

/** WADO-RS metadata: application/dicom+json (application/json accepted as an alias). */
export function negotiateMetadata(accept: MediaType[]): string {
  for (const m of accept) {
    if (typeMatches(m.type, 'application/dicom+json')) return 'application/dicom+json';
    if (m.type === 'application/json') return 'application/json';
  }
  throw notAcceptable('metadata is available as application/dicom+json only (XML is not supported)');
}

/** QIDO-RS: application/dicom+json (application/json accepted as an alias). */
export const negotiateSearch = negotiateMetadata;

export interface FrameRendering {
  multipart: boolean;
  /** Content-Type of each frame part */
  partType: string;
}

/**
 * WADO-RS frames and bulk data of an object stored in `stored` transfer syntax. Without transcoding
 * (a later feature), native pixels are sent as application/octet-stream (explicit VR little endian), and
 * compressed pixels only in their stored syntax: the client must accept it (by its image/* type, or
 * transfer-syntax=* or the stored UID). Anything else is 406 with a reason.
 */
export function negotiateFrames(accept: MediaType[], stored: string): FrameRendering {
  const native = isNativeTransferSyntax(stored);
  const compressedType = frameMediaType(stored);
  const syntaxParam = native ? '' : `; transfer-syntax=${stored}`;
  for (const m of accept) {
    let type = m.type;
    let multipart = false;
    if (type === 'multipart/related' || type === 'multipart/*') {
      multipart = true;
      type = (m.params.type ?? 'application/octet-stream').toLowerCase();
    } else if (type === '*/*') {
      multipart = true;
    }
    const ts = requestedSyntax(m);
    if (native) {
      if (!typeMatches(type, 'application/octet-stream') && type !== '*/*') continue;
      if (ts && ts !== '*' && ts !== TransferSyntax.ExplicitVRLittleEndian) continue;
      return { multipart, partType: 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1' };
    }
    if (ts === '*' || ts === stored) {
      if (typeMatches(type, 'application/octet-stream')) {
        return { multipart, partType: `application/octet-stream${syntaxParam}` };
      }
      if (typeMatches(type, compressedType))
        return { multipart, partType: `${compressedType}${syntaxParam}` };
      continue;
    }
    // image/jpeg, image/jp2... (or a wildcard) without a syntax: the stored syntax is that type's default.
    if (ts === undefined && type !== 'application/octet-stream' && typeMatches(type, compressedType)) {
      return { multipart, partType: `${compressedType}${syntaxParam}` };
    }
  }
  throw notAcceptable(
    native
      ? 'frames of this instance are available as application/octet-stream (explicit VR little endian) only'
      : `frames of this instance are stored in transfer syntax ${stored} and transcoding is not supported yet; ` +
          `accept ${compressedType} or multipart/related; type="application/octet-stream"; transfer-syntax=*`,
  );
}
