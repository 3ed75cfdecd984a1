/**
 * One very large synthetic instance (e.g. 1 GiB) that is never held in memory: a Multi-frame
 * Grayscale Word SC header written by dcmjs with an empty Pixel Data whose length is then patched,
 * followed by the same 512×512 frame repeated. Used by the benchmark to check that the server
 * streams each part (not only the request) to its blob store.
 */
import dcmjs from 'dcmjs';
import { MF_GRAYSCALE_WORD_SC_STORAGE, newUid, syntheticSeries } from '../../server/synthetic';

export interface BigInstance {
  size: number;
  frames: number;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  /** The file's bytes, in chunks of one frame (the frame buffer is shared: do not keep chunks). */
  chunks(): Iterable<Uint8Array>;
}

export function bigMultiframeInstance(targetBytes: number, patientId = 'BIGINSTANCE'): BigInstance {
  const rows = 512;
  const columns = 512;
  const frameBytes = rows * columns * 2;
  const frames = Math.max(1, Math.ceil(targetBytes / frameBytes));
  // One frame of the usual synthetic pattern, taken from a one-instance synthetic series.
  const sample = [...syntheticSeries({ patientName: 'x', patientId: 'x', instances: 1, rows, columns })][0];
  const frame = sample.subarray(sample.length - frameBytes);

  const studyInstanceUID = newUid();
  const seriesInstanceUID = newUid();
  const sopInstanceUID = newUid();
  const { DicomDict, DicomMetaDictionary } = (dcmjs as any).data;
  const dict = new DicomDict({
    '00020001': { vr: 'OB', Value: [Uint8Array.of(0, 1).buffer] },
    '00020002': { vr: 'UI', Value: [MF_GRAYSCALE_WORD_SC_STORAGE] },
    '00020003': { vr: 'UI', Value: [sopInstanceUID] },
    '00020010': { vr: 'UI', Value: ['1.2.840.10008.1.2.1'] },
    '00020012': { vr: 'UI', Value: ['2.25.178493225873364215866591513262961846713'] },
  });
  dict.dict = DicomMetaDictionary.denaturalizeDataset({
    SpecificCharacterSet: 'ISO_IR 192',
    ImageType: ['DERIVED', 'SECONDARY'],
    SOPClassUID: MF_GRAYSCALE_WORD_SC_STORAGE,
    SOPInstanceUID: sopInstanceUID,
    StudyDate: '20240115',
    StudyTime: '083000',
    AccessionNumber: '',
    Modality: 'OT',
    ConversionType: 'SYN',
    ReferringPhysicianName: '',
    StudyDescription: 'Bench large instance',
    PatientName: 'Bench^BigInstance',
    PatientID: patientId,
    PatientBirthDate: '',
    PatientSex: '',
    StudyInstanceUID: studyInstanceUID,
    SeriesInstanceUID: seriesInstanceUID,
    StudyID: '1',
    SeriesNumber: 1,
    InstanceNumber: 1,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    NumberOfFrames: frames,
    FrameIncrementPointer: 0x00182002, // Frame Label Vector
    FrameLabelVector: Array.from({ length: frames }, (_, f) => `F${f + 1}`),
    Rows: rows,
    Columns: columns,
    BitsAllocated: 16,
    BitsStored: 16,
    HighBit: 15,
    PixelRepresentation: 0,
    PixelData: new ArrayBuffer(0),
    _vrMap: { PixelData: 'OW' },
  });
  const header = new Uint8Array(dict.write());
  // The file ends with (7FE0,0010) OW 0000 <length 0>: patch the length.
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const at = header.length - 12;
  if (
    view.getUint16(at, true) !== 0x7fe0 ||
    view.getUint16(at + 2, true) !== 0x0010 ||
    view.getUint32(at + 8, true) !== 0
  ) {
    throw new Error('unexpected header layout: Pixel Data is not the last, empty element');
  }
  const pixelLength = frames * frameBytes;
  if (pixelLength > 0xfffffffe) throw new Error('instance too large for a 32-bit Pixel Data length');
  view.setUint32(at + 8, pixelLength, true);
  return {
    size: header.length + pixelLength,
    frames,
    studyInstanceUID,
    seriesInstanceUID,
    sopInstanceUID,
    *chunks() {
      yield header;
      for (let i = 0; i < frames; i++) yield frame;
    },
  };
}
