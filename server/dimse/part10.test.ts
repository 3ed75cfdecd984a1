import { describe, expect, it } from 'vitest';
import { scanPart10 } from '../../dicomweb/part10';
import { fileMetaInformation, readFileMeta } from './part10';

describe('File Meta Information for received data sets', () => {
  const meta = {
    MediaStorageSOPClassUID: '1.2.840.10008.5.1.4.1.1.2',
    MediaStorageSOPInstanceUID: '1.2.3.4.5', // odd length: padded with NUL
    TransferSyntaxUID: '1.2.840.10008.1.2',
    ImplementationClassUID: '2.25.1',
    ImplementationVersionName: 'OPENPACS', // even
    SourceApplicationEntityTitle: 'CT1', // odd: padded with a space
  };

  it('is read back, and a data set behind it is a Part 10 file the ingest scanner accepts', () => {
    const header = fileMetaInformation(meta);
    expect(header.length % 2).toBe(0);
    expect(Buffer.from(header.subarray(128, 132)).toString()).toBe('DICM');
    // (0008,0016) UI and (0008,0018) UI in Implicit VR Little Endian.
    const el = (e: number, v: string) => {
      const value = Buffer.from(v.length % 2 ? `${v}\0` : v);
      const h = Buffer.alloc(8);
      h.writeUInt16LE(0x0008, 0);
      h.writeUInt16LE(e, 2);
      h.writeUInt32LE(value.length, 4);
      return Buffer.concat([h, value]);
    };
    const dataset = Buffer.concat([el(0x0016, meta.MediaStorageSOPClassUID), el(0x0018, '1.2.3.4.5')]);
    const file = new Uint8Array(Buffer.concat([header, dataset]));
    const read = readFileMeta(file);
    expect(read).toEqual({
      MediaStorageSOPClassUID: meta.MediaStorageSOPClassUID,
      MediaStorageSOPInstanceUID: '1.2.3.4.5',
      TransferSyntaxUID: '1.2.840.10008.1.2',
      SourceApplicationEntityTitle: 'CT1',
      datasetOffset: header.length,
    });
    expect(Buffer.from(file.subarray(read!.datasetOffset)).equals(dataset)).toBe(true);
    const scan = scanPart10(file);
    expect(scan.transferSyntaxUID).toBe('1.2.840.10008.1.2');
    expect(scan.datasetOffset).toBe(header.length);
    expect(scan.dataset.map((e) => e.tag)).toEqual(['00080016', '00080018']);
  });

  it('readFileMeta: undefined for bytes that are not Part 10', () => {
    expect(readFileMeta(new Uint8Array(100))).toBeUndefined();
    expect(readFileMeta(new Uint8Array(200))).toBeUndefined();
    const truncated = fileMetaInformation(meta).subarray(0, 150);
    expect(readFileMeta(truncated)).toBeUndefined();
  });
});
