/**
 * The two Part 10 operations the DIMSE gateway needs, pure (bytes in, bytes out):
 * - a C-STORE carries a data set, not a file: `fileMetaInformation` makes the preamble, "DICM" and File
 *   Meta Information (PS3.10 7.1) that turn the received data set bytes, unchanged, into a Part 10 file;
 * - sending a stored file over DIMSE is the reverse: `readFileMeta` finds where its data set starts.
 */

export interface FileMeta {
  MediaStorageSOPClassUID: string;
  MediaStorageSOPInstanceUID: string;
  TransferSyntaxUID: string;
  ImplementationClassUID: string;
  ImplementationVersionName?: string;
  /** The AE that sent the data set (PS3.10 7.1: SourceApplicationEntityTitle). */
  SourceApplicationEntityTitle?: string;
}

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);

/** Even-length value: UIDs padded with NUL, other strings with a space (PS3.5 6.2). */
function padded(value: string, vr: string): Uint8Array {
  const bytes = ascii(value);
  if (bytes.length % 2 === 0) return bytes;
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  out[bytes.length] = vr === 'UI' ? 0 : 0x20;
  return out;
}

/** One Explicit VR Little Endian element of group 0002. */
function element(elementNumber: number, vr: string, value: Uint8Array): Uint8Array {
  const long = vr === 'OB';
  const out = new Uint8Array((long ? 12 : 8) + value.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, 0x0002, true);
  view.setUint16(2, elementNumber, true);
  out[4] = vr.charCodeAt(0);
  out[5] = vr.charCodeAt(1);
  if (long) view.setUint32(8, value.length, true);
  else view.setUint16(6, value.length, true);
  out.set(value, long ? 12 : 8);
  return out;
}

/** The 128-byte preamble, "DICM" and the File Meta Information group, with its group length. */
export function fileMetaInformation(meta: FileMeta): Uint8Array {
  const elements = [
    element(0x0001, 'OB', Uint8Array.of(0, 1)),
    element(0x0002, 'UI', padded(meta.MediaStorageSOPClassUID, 'UI')),
    element(0x0003, 'UI', padded(meta.MediaStorageSOPInstanceUID, 'UI')),
    element(0x0010, 'UI', padded(meta.TransferSyntaxUID, 'UI')),
    element(0x0012, 'UI', padded(meta.ImplementationClassUID, 'UI')),
  ];
  if (meta.ImplementationVersionName)
    elements.push(element(0x0013, 'SH', padded(meta.ImplementationVersionName, 'SH')));
  if (meta.SourceApplicationEntityTitle)
    elements.push(element(0x0016, 'AE', padded(meta.SourceApplicationEntityTitle, 'AE')));
  const groupLength = elements.reduce((n, e) => n + e.length, 0);
  const lengthValue = new Uint8Array(4);
  new DataView(lengthValue.buffer).setUint32(0, groupLength, true);
  const parts = [new Uint8Array(128), ascii('DICM'), element(0x0000, 'UL', lengthValue), ...elements];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const LONG_VRS = new Set([
  'OB',
  'OD',
  'OF',
  'OL',
  'OV',
  'OW',
  'SQ',
  'SV',
  'UC',
  'UN',
  'UR',
  'UT',
  'UV',
]);

export interface FileMetaRead {
  MediaStorageSOPClassUID?: string;
  MediaStorageSOPInstanceUID?: string;
  TransferSyntaxUID?: string;
  SourceApplicationEntityTitle?: string;
  /** Offset of the first byte of the data set (after the File Meta Information). */
  datasetOffset: number;
}

function text(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return s.replace(/[\0 ]+$/, '').trim();
}

/**
 * Reads the File Meta Information of a Part 10 file (its first bytes: the whole group must be inside).
 * Returns undefined when the bytes are not a Part 10 file ("DICM" at 128 and a readable group 0002).
 */
export function readFileMeta(file: Uint8Array): FileMetaRead | undefined {
  if (file.length < 132 || text(file.subarray(128, 132)) !== 'DICM') return undefined;
  return readMetaGroup(file, 132);
}

/**
 * Reads a File Meta Information group that starts at `start` (132 in a Part 10 file; 0 in a file whose
 * preamble and "DICM" are missing). Undefined when the group cannot be read whole.
 */
export function readMetaGroup(file: Uint8Array, start: number): FileMetaRead | undefined {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const meta: FileMetaRead = { datasetOffset: start };
  let pos = start;
  while (pos + 8 <= file.length && view.getUint16(pos, true) === 0x0002) {
    const elementNumber = view.getUint16(pos + 2, true);
    const vr = String.fromCharCode(file[pos + 4], file[pos + 5]);
    if (!/^[A-Z]{2}$/.test(vr)) return undefined;
    let length: number;
    let valueStart: number;
    if (LONG_VRS.has(vr)) {
      if (pos + 12 > file.length) return undefined;
      length = view.getUint32(pos + 8, true);
      valueStart = pos + 12;
    } else {
      length = view.getUint16(pos + 6, true);
      valueStart = pos + 8;
    }
    if (length === 0xffffffff || valueStart + length > file.length) return undefined;
    const value = file.subarray(valueStart, valueStart + length);
    if (elementNumber === 0x0002) meta.MediaStorageSOPClassUID = text(value);
    else if (elementNumber === 0x0003) meta.MediaStorageSOPInstanceUID = text(value);
    else if (elementNumber === 0x0010) meta.TransferSyntaxUID = text(value);
    else if (elementNumber === 0x0016) meta.SourceApplicationEntityTitle = text(value);
    pos = valueStart + length;
  }
  if (pos + 8 > file.length && pos !== file.length) return undefined;
  meta.datasetOffset = pos;
  return meta;
}
