/**
 * Cheap Part 10 detection for the importer: 'DICM' at offset 128, then the File Meta Information
 * group (always Explicit VR Little Endian, PS3.10 7.1) for the SOP Class / Instance UIDs.
 */
import { open } from 'node:fs/promises';

export const MEDIA_STORAGE_DIRECTORY_STORAGE = '1.2.840.10008.1.3.10';

export interface Part10Meta {
  mediaStorageSOPClassUID?: string;
  mediaStorageSOPInstanceUID?: string;
  transferSyntaxUID?: string;
}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

function uidString(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return s.replace(/[\0 ]+$/, '').trim();
}

/** Parses file meta elements from a buffer starting at the first (0002,xxxx) element (offset 132). */
export function parseFileMeta(buf: Uint8Array): Part10Meta {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const meta: Part10Meta = {};
  let pos = 0;
  while (pos + 8 <= buf.length) {
    const group = view.getUint16(pos, true);
    if (group !== 0x0002) break;
    const element = view.getUint16(pos + 2, true);
    const vr = String.fromCharCode(buf[pos + 4], buf[pos + 5]);
    let length: number;
    let valueStart: number;
    if (LONG_VRS.has(vr)) {
      if (pos + 12 > buf.length) break;
      length = view.getUint32(pos + 8, true);
      valueStart = pos + 12;
    } else if (/^[A-Z]{2}$/.test(vr)) {
      length = view.getUint16(pos + 6, true);
      valueStart = pos + 8;
    } else {
      break; // not explicit VR: not a conformant meta header
    }
    if (length === 0xffffffff || valueStart + length > buf.length) break;
    const value = buf.subarray(valueStart, valueStart + length);
    if (element === 0x0002) meta.mediaStorageSOPClassUID = uidString(value);
    else if (element === 0x0003) meta.mediaStorageSOPInstanceUID = uidString(value);
    else if (element === 0x0010) meta.transferSyntaxUID = uidString(value);
    pos = valueStart + length;
  }
  return meta;
}

/**
 * Returns the file meta of a Part 10 file, or null when the file has no 'DICM' prefix at 128
 * (not DICOM, or DICOM without preamble, which the importer reports as skipped).
 */
export async function sniffPart10(path: string): Promise<Part10Meta | null> {
  const fh = await open(path, 'r');
  try {
    const head = new Uint8Array(16 * 1024);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (bytesRead < 132) return null;
    if (head[128] !== 0x44 || head[129] !== 0x49 || head[130] !== 0x43 || head[131] !== 0x4d) return null;
    return parseFileMeta(head.subarray(132, bytesRead));
  } finally {
    await fh.close();
  }
}
