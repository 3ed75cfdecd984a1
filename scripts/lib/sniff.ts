/**
 * Cheap DICOM detection for the importer, from a file's first bytes: 'DICM' at offset 128, then the File
 * Meta Information group (always Explicit VR Little Endian, PS3.10 7.1) for the SOP Class / Instance
 * UIDs; or a DICOM data set stored without that Part 10 header, and the header that makes it one.
 */
import { open } from 'node:fs/promises';
import { constants, inflateRawSync } from 'node:zlib';
import dicomParser from 'dicom-parser';
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from '../../server/dimse/library';
import {
  type FileMetaRead,
  fileMetaInformation,
  LONG_VRS,
  readFileMeta,
  readMetaGroup,
} from '../../server/dimse/part10';

export const MEDIA_STORAGE_DIRECTORY_STORAGE = '1.2.840.10008.1.3.10';

export interface Part10Meta {
  mediaStorageSOPClassUID?: string;
  mediaStorageSOPInstanceUID?: string;
  transferSyntaxUID?: string;
  /**
   * SOP Instance UID (0008,0018) of the data set itself, when it could be read from the file's first
   * bytes. It can differ from the header's (0002,0003): the archive stores the instance under this one
   * and names it so in its STOW-RS response.
   */
  sopInstanceUID?: string;
}

/** The importer's view of a meta group read by the DIMSE gateway's reader (server/dimse/part10.ts). */
function part10Meta(m: FileMetaRead): Part10Meta {
  return {
    mediaStorageSOPClassUID: m.MediaStorageSOPClassUID,
    mediaStorageSOPInstanceUID: m.MediaStorageSOPInstanceUID,
    transferSyntaxUID: m.TransferSyntaxUID,
  };
}

/**
 * What the importer makes of a file:
 * - `part10`: a Part 10 file, sent as it is;
 * - `header-added`: a DICOM data set stored without its Part 10 header (old equipment and some CD
 *   writers do this; PS3.10 requires it on media, STOW-RS in every part). `prefix` is what makes it a
 *   Part 10 file when sent before the file's bytes from `skip`, which are sent unchanged: the preamble
 *   and "DICM" when only those are missing, else File Meta Information made from the data set's own SOP
 *   Class and Instance UIDs and its transfer syntax (that of an incomplete meta group before it, or
 *   Implicit or Explicit VR Little Endian told apart by the first element), as DCMTK's `dcmconv` would;
 * - `unstorable`: a data set without a Part 10 header that lacks what a header needs (an ACR-NEMA file
 *   without SOP UIDs, a big-endian data set), with the reason;
 * - `not-dicom`.
 */
export type SniffedFile =
  | { kind: 'part10'; meta: Part10Meta }
  | {
      kind: 'header-added';
      meta: Part10Meta;
      /** Sent first; then the file from `skip` (the bytes of an incomplete meta group are replaced). */
      prefix: Uint8Array;
      skip: number;
      /** preamble: only it and "DICM" were added; file meta: a whole group made (none, or an incomplete one). */
      missing: 'preamble' | 'file meta';
    }
  | { kind: 'unstorable'; reason: string }
  | { kind: 'not-dicom' };

export async function sniffDicomFile(path: string): Promise<SniffedFile> {
  const fh = await open(path, 'r');
  let head: Uint8Array;
  try {
    const buf = new Uint8Array(HEAD_BYTES);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  return sniffHead(head);
}

/** How much of a file is read to recognise it (the File Meta Information, or a data set's first group). */
const HEAD_BYTES = 16 * 1024;

const DICM = [0x44, 0x49, 0x43, 0x4d];
const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1.99';
const EXPLICIT_VR_BIG_ENDIAN = '1.2.840.10008.1.2.2';
const ALL_VRS = new Set([
  ...LONG_VRS,
  ...['AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FD', 'FL', 'IS', 'LO', 'LT', 'PN', 'SH', 'SL', 'SS', 'ST'],
  ...['TM', 'UI', 'UL', 'US'],
]);
const UID = /^[0-9]+(\.[0-9]+)*$/;

/** sniffDicomFile on the first bytes of a file (exported for tests). */
export function sniffHead(head: Uint8Array): SniffedFile {
  if (head.length >= 132 && DICM.every((b, i) => head[128 + i] === b)) {
    const m = readFileMeta(head);
    // A meta group that cannot be read is sent all the same: the archive says what is wrong with it.
    if (!m) return { kind: 'part10', meta: {} };
    const meta = part10Meta(m);
    const sopInstanceUID = dataSetSOPInstanceUID(head.subarray(m.datasetOffset), m.TransferSyntaxUID);
    return { kind: 'part10', meta: sopInstanceUID ? { ...meta, sopInstanceUID } : meta };
  }
  if (head.length < 8) return { kind: 'not-dicom' };
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const group = view.getUint16(0, true);
  const element = view.getUint16(2, true);
  const explicit = ALL_VRS.has(String.fromCharCode(head[4], head[5]));
  if (group === 0x0002 && explicit) {
    // File Meta Information without the preamble and "DICM" before it.
    const metaGroup = readMetaGroup(head, 0);
    const meta = metaGroup && part10Meta(metaGroup);
    const syntax = meta?.transferSyntaxUID;
    if (!metaGroup || !meta || !syntax || !UID.test(syntax)) return { kind: 'not-dicom' };
    // A whole group begins with its length, (0002,0000).
    if (element === 0x0000 && meta.mediaStorageSOPClassUID && meta.mediaStorageSOPInstanceUID) {
      const prefix = new Uint8Array(132);
      prefix.set(DICM, 128);
      const sopInstanceUID = dataSetSOPInstanceUID(head.subarray(metaGroup.datasetOffset), syntax);
      return {
        kind: 'header-added',
        meta: sopInstanceUID ? { ...meta, sopInstanceUID } : meta,
        prefix,
        skip: 0,
        missing: 'preamble',
      };
    }
    // An incomplete group (only the transfer syntax, say): a whole one in its place.
    return withFileMeta(head, metaGroup.datasetOffset, syntax, meta);
  }
  // A bare data set: its first element is of group 0008 (Identifying).
  if (group === 0x0008 && element <= 0x0018)
    return withFileMeta(head, 0, explicit ? EXPLICIT_VR_LITTLE_ENDIAN : IMPLICIT_VR_LITTLE_ENDIAN);
  if (view.getUint16(0, false) === 0x0008 && view.getUint16(2, false) <= 0x0018)
    return {
      kind: 'unstorable',
      reason: 'a big-endian DICOM data set without a Part 10 header: convert it with dcmconv first',
    };
  return { kind: 'not-dicom' };
}

/**
 * The data set at head[start...] in transfer syntax `syntax`, given File Meta Information made from its
 * own SOP Class and Instance UIDs (or those of the incomplete meta group before it, when start > 0).
 */
function withFileMeta(head: Uint8Array, start: number, syntax: string, known: Part10Meta = {}): SniffedFile {
  if (syntax === DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN || syntax === EXPLICIT_VR_BIG_ENDIAN)
    return {
      kind: 'unstorable',
      reason: `a DICOM data set in ${syntax === EXPLICIT_VR_BIG_ENDIAN ? 'big endian' : 'deflate'} without a complete Part 10 header: convert it with dcmconv first`,
    };
  let dataSet: dicomParser.DataSet | undefined;
  const bytes = head.subarray(start);
  try {
    // dicom-parser reads a data set without a Part 10 header when given its transfer syntax.
    dataSet = dicomParser.parseDicom(bytes, { TransferSyntaxUID: syntax, untilTag: 'x00080018' });
  } catch (err) {
    // Cut at HEAD_BYTES, or damaged further on: what was read before that is enough.
    dataSet = (err as { dataSet?: dicomParser.DataSet }).dataSet;
  }
  // Two elements read in a row from a start that looked like one: a data set, not a text that happened
  // to begin with the bytes of a tag.
  if (!dataSet || Object.keys(dataSet.elements).filter((t) => !t.startsWith('x0002')).length < 2)
    return start > 0
      ? { kind: 'unstorable', reason: 'a Part 10 header without its preamble, and no data set after it' }
      : { kind: 'not-dicom' };
  const uid = (tag: string) => dataSet.string(tag)?.replace(/\0+$/, '').trim();
  const sopClassUID = known.mediaStorageSOPClassUID || uid('x00080016');
  const sopInstanceUID = known.mediaStorageSOPInstanceUID || uid('x00080018');
  const lacking = [
    ...(sopClassUID && UID.test(sopClassUID) ? [] : ['SOP Class UID']),
    ...(sopInstanceUID && UID.test(sopInstanceUID) ? [] : ['SOP Instance UID']),
  ];
  if (!sopClassUID || !sopInstanceUID || lacking.length > 0)
    return {
      kind: 'unstorable',
      reason: `a DICOM data set without a Part 10 header and without a valid ${lacking.join(' or ')}${
        lacking.length === 2 ? ' (an ACR-NEMA file?)' : ''
      }: it cannot be stored`,
    };
  const ownUID = uid('x00080018');
  const meta: Part10Meta = {
    mediaStorageSOPClassUID: sopClassUID,
    mediaStorageSOPInstanceUID: sopInstanceUID,
    transferSyntaxUID: syntax,
    ...(ownUID ? { sopInstanceUID: ownUID } : {}),
  };
  const prefix = fileMetaInformation({
    MediaStorageSOPClassUID: sopClassUID,
    MediaStorageSOPInstanceUID: sopInstanceUID,
    TransferSyntaxUID: syntax,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: IMPLEMENTATION_VERSION_NAME,
  });
  return { kind: 'header-added', meta, prefix, skip: start, missing: 'file meta' };
}

/**
 * The SOP Instance UID (0008,0018) of the data set at the start of `bytes` (a file's first bytes after
 * its File Meta Information), in transfer syntax `syntax`; undefined when it is not among those bytes or
 * cannot be read. A deflated data set is inflated as far as those bytes go.
 */
export function dataSetSOPInstanceUID(bytes: Uint8Array, syntax: string | undefined): string | undefined {
  if (!syntax) return undefined;
  let data = bytes;
  let readAs = syntax;
  if (syntax === DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN) {
    try {
      // A cut-off stream: what inflates before the cut (Z_SYNC_FLUSH does not require the end).
      data = new Uint8Array(inflateRawSync(bytes, { finishFlush: constants.Z_SYNC_FLUSH }));
    } catch {
      return undefined;
    }
    readAs = EXPLICIT_VR_LITTLE_ENDIAN;
  }
  let dataSet: dicomParser.DataSet | undefined;
  try {
    dataSet = dicomParser.parseDicom(data, { TransferSyntaxUID: readAs, untilTag: 'x00080018' });
  } catch (err) {
    // Cut at HEAD_BYTES, or damaged further on: what was read before that may hold it.
    dataSet = (err as { dataSet?: dicomParser.DataSet }).dataSet;
  }
  let value: string | undefined;
  try {
    value = dataSet?.string('x00080018');
  } catch {
    return undefined;
  }
  const uid = value?.replace(/\0+$/, '').trim();
  return uid || undefined;
}
