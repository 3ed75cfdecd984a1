/**
 * Synthetic DICOM generator for tests, demos and the benchmark. Pure: no I/O, no Node-only APIs
 * (uses globalThis.crypto for random UIDs), so it also runs in a browser.
 *
 * Each yielded value is a complete DICOM Part 10 file (preamble, 'DICM', file meta information,
 * Explicit VR Little Endian dataset) with uncompressed 16-bit pixel data:
 * - CT: CT Image Storage, signed 16-bit, RescaleIntercept -1024, RescaleSlope 1 (stored = HU + 1024);
 * - MR: MR Image Storage, unsigned 16-bit, no rescale;
 * - frames > 1: Multi-frame Grayscale Word Secondary Capture Image Storage (one multi-frame
 *   instance per `instances`), NumberOfFrames = frames, same pixel encoding as the modality.
 *
 * The pixel pattern is deterministic and cheap (rows filled with Int16Array.fill spans): an air
 * background, an elliptical body of soft tissue and an inner "organ" disc whose radius changes with the
 * slice, so scrolling through a series shows motion. ImagePositionPatient steps by SliceThickness
 * along z. UIDs are '2.25.' + a 128-bit number: random by default, or derived from `seed`
 * (same options and seed → byte-identical output).
 */
// biome-ignore lint/suspicious/noTsIgnore: dcmjs ships no type declarations; @ts-ignore stays valid if a declaration is added elsewhere.
// @ts-ignore
import dcmjsModule from 'dcmjs';

export interface SyntheticSeriesOptions {
  patientName: string;
  patientId: string;
  /** IssuerOfPatientID (0010,0021): the authority that assigned patientId; none by default. */
  issuerOfPatientId?: string;
  studyInstanceUID?: string;
  seriesInstanceUID?: string;
  /** YYYYMMDD; default 20240115. */
  studyDate?: string;
  /** HHMMSS; default 083000. */
  studyTime?: string;
  modality?: 'CT' | 'MR';
  /** Number of instances (files) to yield. */
  instances: number;
  /** Default 512. */
  rows?: number;
  /** Default 512. */
  columns?: number;
  seriesNumber?: number;
  seriesDescription?: string;
  studyDescription?: string;
  accessionNumber?: string;
  /** DICOM person name (Family^Given) of the referring physician. */
  referringPhysicianName?: string;
  /** YYYYMMDD. */
  birthDate?: string;
  sex?: 'M' | 'F' | 'O';
  /** > 1 → each instance is one multi-frame instance with this many frames. */
  frames?: number;
  /** Makes UIDs (and thus the whole output) deterministic. */
  seed?: number;
}

interface DcmjsLike {
  data: {
    DicomDict: new (meta: Record<string, unknown>) => { dict: Record<string, unknown>; write(): ArrayBuffer };
    DicomMetaDictionary: { denaturalizeDataset(ds: Record<string, unknown>): Record<string, unknown> };
  };
}
const dcmjs = dcmjsModule as unknown as DcmjsLike;

export const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
export const MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4';
export const MF_GRAYSCALE_WORD_SC_STORAGE = '1.2.840.10008.5.1.4.1.1.7.3';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
export const SYNTHETIC_IMPLEMENTATION_CLASS_UID = '2.25.178493225873364215866591513262961846713';
const IMPLEMENTATION_VERSION_NAME = 'OPENPACS_SYN_1';

function bigFromWords(words: ArrayLike<number>): bigint {
  let v = 0n;
  for (let i = 0; i < 4; i++) v = (v << 32n) | BigInt(words[i] >>> 0);
  return v;
}

/** A new random UID: '2.25.' followed by a random 128-bit number in decimal (PS3.5 B.2). */
export function newUid(): string {
  const words = new Uint32Array(4);
  globalThis.crypto.getRandomValues(words);
  return `2.25.${bigFromWords(words)}`;
}

/**
 * Deterministic 128-bit words: xoshiro128** seeded through splitmix32. The 128-bit state keeps the
 * sequences of different seeds from overlapping (a 32-bit state would collide across thousands of seeds).
 */
function seededWords(seed: number): () => Uint32Array {
  let sm = (Math.floor(seed) ^ 0x5bd1e995) >>> 0;
  const splitmix = (): number => {
    sm = (sm + 0x9e3779b9) >>> 0;
    let z = sm;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  const st = Uint32Array.of(splitmix(), splitmix(), splitmix(), splitmix() | 1);
  const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
  const next = (): number => {
    const result = Math.imul(rotl(Math.imul(st[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (st[1] << 9) >>> 0;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 11);
    return result;
  };
  // Seed with the fractional part too, so seeds like 1.5 differ from 1.
  const frac = Math.floor((seed - Math.floor(seed)) * 2 ** 32) >>> 0;
  st[0] ^= frac;
  for (let i = 0; i < 8; i++) next();
  return () => Uint32Array.of(next(), next(), next(), next());
}

function uidFactory(seed: number | undefined): () => string {
  if (seed === undefined) return newUid;
  const words = seededWords(seed);
  return () => `2.25.${bigFromWords(words())}`;
}

const pixelCache = new Map<string, Uint8Array>();
const PIXEL_CACHE_MAX = 64;

/**
 * One frame of stored values (little-endian 16-bit). `phase` in [0, 1) sets the inner disc radius.
 * Cached: a series cycles through at most 32 distinct slices, so generation cost is mostly the write.
 */
function framePixels(rows: number, columns: number, phaseIndex: number, signed: boolean): Uint8Array {
  const key = `${rows}x${columns}:${phaseIndex}:${signed ? 's' : 'u'}`;
  const hit = pixelCache.get(key);
  if (hit) return hit;
  const px = new Int16Array(rows * columns);
  // Stored values: CT stored = HU + 1024 (air -1000 → 24, tissue 40 → 1064, organ 200 → 1224, bone 1000 → 2024).
  const air = 24;
  const tissue = 1064;
  const organ = 1224;
  const bone = 2024;
  px.fill(air);
  const cy = rows / 2;
  const cx = columns / 2;
  const ry = rows * 0.42;
  const rx = columns * 0.46;
  const phase = phaseIndex / 32;
  const organR = Math.min(rows, columns) * (0.08 + 0.1 * Math.sin(Math.PI * phase));
  const boneR = Math.min(rows, columns) * 0.05;
  const boneCy = cy + ry * 0.6;
  for (let y = 0; y < rows; y++) {
    const dy = (y + 0.5 - cy) / ry;
    if (dy * dy >= 1) continue;
    const half = rx * Math.sqrt(1 - dy * dy);
    const base = y * columns;
    const x0 = Math.max(0, Math.ceil(cx - half));
    const x1 = Math.min(columns, Math.floor(cx + half));
    if (x1 > x0) px.fill(tissue, base + x0, base + x1);
    // Inner "organ" disc (radius varies with the slice) and a small "bone" disc.
    const oy = y + 0.5 - cy;
    if (Math.abs(oy) < organR) {
      const h = Math.sqrt(organR * organR - oy * oy);
      const o0 = Math.max(0, Math.ceil(cx - h));
      const o1 = Math.min(columns, Math.floor(cx + h));
      if (o1 > o0) px.fill(organ, base + o0, base + o1);
    }
    const by = y + 0.5 - boneCy;
    if (Math.abs(by) < boneR) {
      const h = Math.sqrt(boneR * boneR - by * by);
      const b0 = Math.max(0, Math.ceil(cx - h));
      const b1 = Math.min(columns, Math.floor(cx + h));
      if (b1 > b0) px.fill(bone, base + b0, base + b1);
    }
  }
  // A ramp along the first rows (0..4095-ish) so orientation and value mapping are visible.
  const rampRows = Math.max(1, Math.floor(rows / 32));
  for (let y = 0; y < rampRows; y++) {
    const base = y * columns;
    for (let x = 0; x < columns; x++) px[base + x] = Math.floor((x * 4000) / Math.max(1, columns - 1));
  }
  void signed; // same values fit both signed and unsigned 16-bit
  let bytes = new Uint8Array(px.buffer);
  if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) {
    // Big-endian host: swap to little-endian.
    bytes = new Uint8Array(bytes.length);
    for (let i = 0; i < px.length; i++) {
      bytes[2 * i] = px[i] & 0xff;
      bytes[2 * i + 1] = (px[i] >> 8) & 0xff;
    }
  }
  if (pixelCache.size >= PIXEL_CACHE_MAX) pixelCache.clear();
  pixelCache.set(key, bytes);
  return bytes;
}

function toArrayBuffer(u8: Uint8Array): ArrayBuffer {
  return u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength) as ArrayBuffer;
}

/** Yields the Part 10 files of one synthetic series (see the module comment). */
export function* syntheticSeries(opts: SyntheticSeriesOptions): Generator<Uint8Array> {
  const uid = uidFactory(opts.seed);
  const modality = opts.modality ?? 'CT';
  const rows = opts.rows ?? 512;
  const columns = opts.columns ?? 512;
  const frames = Math.max(1, Math.floor(opts.frames ?? 1));
  const multiFrame = frames > 1;
  const signed = modality === 'CT';
  const studyInstanceUID = opts.studyInstanceUID ?? uid();
  const seriesInstanceUID = opts.seriesInstanceUID ?? uid();
  const frameOfReferenceUID = uid();
  const studyDate = opts.studyDate ?? '20240115';
  const studyTime = opts.studyTime ?? '083000';
  const seriesNumber = opts.seriesNumber ?? 1;
  const sopClassUID = multiFrame
    ? MF_GRAYSCALE_WORD_SC_STORAGE
    : modality === 'CT'
      ? CT_IMAGE_STORAGE
      : MR_IMAGE_STORAGE;
  const sliceThickness = modality === 'CT' ? 1.25 : 3;
  const pixelSpacing = 350 / Math.max(rows, columns);
  const frameBytes = rows * columns * 2;

  const common: Record<string, unknown> = {
    SpecificCharacterSet: 'ISO_IR 192',
    SOPClassUID: sopClassUID,
    StudyDate: studyDate,
    SeriesDate: studyDate,
    ContentDate: studyDate,
    StudyTime: studyTime,
    SeriesTime: studyTime,
    ContentTime: studyTime,
    AccessionNumber: opts.accessionNumber ?? '',
    ReferringPhysicianName: opts.referringPhysicianName ?? '',
    Modality: modality,
    Manufacturer: 'Open PACS synthetic',
    StudyDescription: opts.studyDescription ?? `Synthetic ${modality}`,
    SeriesDescription: opts.seriesDescription ?? `Synthetic ${modality} series ${seriesNumber}`,
    PatientName: opts.patientName,
    PatientID: opts.patientId,
    ...(opts.issuerOfPatientId ? { IssuerOfPatientID: opts.issuerOfPatientId } : {}),
    PatientBirthDate: opts.birthDate ?? '',
    PatientSex: opts.sex ?? '',
    SliceThickness: sliceThickness,
    StudyInstanceUID: studyInstanceUID,
    SeriesInstanceUID: seriesInstanceUID,
    StudyID: '1',
    SeriesNumber: seriesNumber,
    ImageOrientationPatient: [1, 0, 0, 0, 1, 0],
    FrameOfReferenceUID: frameOfReferenceUID,
    PositionReferenceIndicator: '',
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    Rows: rows,
    Columns: columns,
    PixelSpacing: [pixelSpacing, pixelSpacing],
    BitsAllocated: 16,
    BitsStored: 16,
    HighBit: 15,
    PixelRepresentation: signed ? 1 : 0,
    WindowCenter: signed ? 40 : 600,
    WindowWidth: signed ? 400 : 1200,
  };
  if (signed) {
    common.RescaleIntercept = -1024;
    common.RescaleSlope = 1;
    common.RescaleType = 'HU';
  }
  if (modality === 'CT' && !multiFrame) {
    common.ImageType = ['ORIGINAL', 'PRIMARY', 'AXIAL'];
    common.KVP = 120;
  } else if (modality === 'MR' && !multiFrame) {
    common.ImageType = ['ORIGINAL', 'PRIMARY', 'M'];
    common.ScanningSequence = 'SE';
    common.SequenceVariant = 'NONE';
    common.ScanOptions = '';
    common.MRAcquisitionType = '2D';
    common.EchoTime = 15;
    common.RepetitionTime = 500;
    common.EchoTrainLength = 1;
    common.MagneticFieldStrength = 1.5;
  } else {
    common.ImageType = ['DERIVED', 'SECONDARY'];
    common.ConversionType = 'SYN';
  }

  const { DicomDict, DicomMetaDictionary } = dcmjs.data;
  for (let i = 0; i < opts.instances; i++) {
    const sopInstanceUID = uid();
    const z = -i * sliceThickness * frames;
    const ds: Record<string, unknown> = {
      ...common,
      SOPInstanceUID: sopInstanceUID,
      InstanceNumber: i + 1,
      ImagePositionPatient: [-175, -175, z],
      SliceLocation: z,
      _vrMap: { PixelData: 'OW' },
    };
    let pixels: Uint8Array;
    if (multiFrame) {
      ds.NumberOfFrames = frames;
      ds.FrameIncrementPointer = 0x00182002; // Frame Label Vector
      ds.FrameLabelVector = Array.from({ length: frames }, (_, f) => `F${f + 1}`);
      pixels = new Uint8Array(frameBytes * frames);
      for (let f = 0; f < frames; f++) pixels.set(framePixels(rows, columns, f % 32, signed), f * frameBytes);
    } else {
      pixels = framePixels(rows, columns, i % 32, signed);
    }
    ds.PixelData = toArrayBuffer(pixels);

    const meta = {
      '00020001': { vr: 'OB', Value: [Uint8Array.of(0, 1).buffer] },
      '00020002': { vr: 'UI', Value: [sopClassUID] },
      '00020003': { vr: 'UI', Value: [sopInstanceUID] },
      '00020010': { vr: 'UI', Value: [EXPLICIT_VR_LITTLE_ENDIAN] },
      '00020012': { vr: 'UI', Value: [SYNTHETIC_IMPLEMENTATION_CLASS_UID] },
      '00020013': { vr: 'SH', Value: [IMPLEMENTATION_VERSION_NAME] },
    };
    const dicomDict = new DicomDict(meta);
    dicomDict.dict = DicomMetaDictionary.denaturalizeDataset(ds);
    yield new Uint8Array(dicomDict.write());
  }
}
