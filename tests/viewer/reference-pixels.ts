/**
 * What the viewer should show for a sample in any transfer syntax, from decoders that are not the
 * viewer's: dcmtk (dcmconv, dcmdjpeg, dcmdrle, dcmdjpls) and GDCM (gdcmconv, JPEG 2000) write an
 * uncompressed copy; grey images are read from it as modality values, colour ones rendered to RGB by
 * dcmtk's dcm2pnm (YBR, palette colour and planar configuration handled by dcmtk). HTJ2K is known to
 * neither in Debian 12 (dcmtk 3.6.7, GDCM 3.0.21): its reference is the archive's own decode (OpenJPH;
 * tests/e2e/transcode.test.ts checks the archive's decoders against dcmtk and GDCM).
 *
 * Also: a copy of a sample with new Study/Series/SOP Instance UIDs, so that samples sharing UIDs (the
 * same CT slice in fifteen syntaxes) can be stored side by side, each as its own study.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type dicomParser from 'dicom-parser';
import { parseDicom } from '../helpers/dicom-parse';

export const REFERENCE_TOOLS = [
  'dcmconv',
  'dcmodify',
  'dcmdjpeg',
  'dcmdrle',
  'dcmdjpls',
  'dcm2pnm',
  'gdcmconv',
];
export const NATIVE = new Set([
  '1.2.840.10008.1.2',
  '1.2.840.10008.1.2.1',
  '1.2.840.10008.1.2.1.99',
  '1.2.840.10008.1.2.2',
]);
export const HTJ2K = new Set([
  '1.2.840.10008.1.2.4.201',
  '1.2.840.10008.1.2.4.202',
  '1.2.840.10008.1.2.4.203',
]);
export const LOSSY = new Set([
  '1.2.840.10008.1.2.4.50',
  '1.2.840.10008.1.2.4.51',
  '1.2.840.10008.1.2.4.53',
  '1.2.840.10008.1.2.4.55',
  '1.2.840.10008.1.2.4.81',
  '1.2.840.10008.1.2.4.91',
  '1.2.840.10008.1.2.4.203',
]);

/** The command writing an uncompressed copy (input and output paths appended), by stored syntax. */
function decoderFor(ts: string): string[] | undefined {
  if (NATIVE.has(ts)) return ['dcmconv', '+te'];
  if (ts === '1.2.840.10008.1.2.5') return ['dcmdrle'];
  if (ts === '1.2.840.10008.1.2.4.80' || ts === '1.2.840.10008.1.2.4.81') return ['dcmdjpls'];
  if (ts === '1.2.840.10008.1.2.4.90' || ts === '1.2.840.10008.1.2.4.91') return ['gdcmconv', '--raw'];
  if (/^1\.2\.840\.10008\.1\.2\.4\.(50|51|53|55|57|70)$/.test(ts)) return ['dcmdjpeg'];
  return undefined;
}

/** dicom-parser, with the inflater it needs for Deflated Explicit VR Little Endian in node. */
const parse = parseDicom;

const newUid = () => `2.25.${BigInt(`0x${randomBytes(15).toString('hex')}`).toString(10)}`;

export interface PreparedSample {
  /** path relative to the samples folder */
  name: string;
  /** the copy with its own UIDs */
  file: string;
  transferSyntax: string;
  study: string;
  series: string;
  sop: string;
  rows: number;
  columns: number;
  frames: number;
  photometric: string;
  color: boolean;
  /** LossyImageCompression (0028,2110) is 01 */
  lossyAttribute: boolean;
}

const LONG_VR = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);

/** Explicit VR little endian UI elements inserted (in tag order) where the data set has none. */
function insertUids(bytes: Buffer, uids: Record<string, string>): Buffer {
  const ds = parse(bytes);
  let out = bytes;
  // From the last tag to the first: an insertion does not move the elements before it.
  for (const [tag, uid] of Object.entries(uids).sort(([a], [b]) => (a < b ? 1 : -1))) {
    if (ds.elements[tag]) continue;
    const next = Object.values(ds.elements)
      .filter((e) => !e.tag.startsWith('x0002') && e.tag > tag)
      .sort((a, b) => a.dataOffset - b.dataOffset)[0];
    const at = next.dataOffset - (next.vr && LONG_VR.has(next.vr) ? 12 : 8);
    const value = Buffer.from(uid.length % 2 ? `${uid}\0` : uid, 'latin1');
    const header = Buffer.alloc(8);
    header.writeUInt16LE(Number.parseInt(tag.slice(1, 5), 16), 0);
    header.writeUInt16LE(Number.parseInt(tag.slice(5, 9), 16), 2);
    header.write('UI', 4, 'latin1');
    header.writeUInt16LE(value.length, 6);
    out = Buffer.concat([out.subarray(0, at), header, value, out.subarray(at)]);
  }
  return out;
}

/** A copy of `samples/name` in `dir` with new Study, Series (and SOP) Instance UIDs. */
export function prepareSample(samples: string, name: string, dir: string, index: number): PreparedSample {
  const file = path.join(dir, `${String(index).padStart(2, '0')}-${path.basename(name)}`);
  const study = newUid();
  const series = newUid();
  const sop = newUid();
  copyFileSync(path.join(samples, name), file);
  chmodSync(file, 0o644);
  let original: string | undefined;
  try {
    original = parse(readFileSync(file), 'x00020010').string('x00020010');
  } catch {
    // no preamble (a bare data set after its meta group): dcmtk reads it, and writes it with one
  }
  if (original && HTJ2K.has(original)) {
    // dcmtk 3.6.7 does not know HTJ2K (it would write the file without its pixel data): the UIDs the
    // file lacks go in byte for byte.
    writeFileSync(file, insertUids(readFileSync(file), { x0020000d: study, x0020000e: series }));
  } else {
    execFileSync(
      'dcmodify',
      ['-nb', '-i', `(0020,000d)=${study}`, '-i', `(0020,000e)=${series}`, '-i', `(0008,0018)=${sop}`, file],
      { stdio: 'pipe' },
    );
  }
  const ds = parse(readFileSync(file), 'x7fe00010');
  const transferSyntax = ds.string('x00020010') ?? '';
  if (original && transferSyntax !== original) throw new Error(`${name}: its copy changed transfer syntax`);
  const photometric = (ds.string('x00280004') ?? '').trim();
  return {
    name,
    file,
    transferSyntax,
    study: ds.string('x0020000d') ?? '',
    series: ds.string('x0020000e') ?? '',
    sop: ds.string('x00080018') ?? '',
    rows: ds.uint16('x00280010') ?? 0,
    columns: ds.uint16('x00280011') ?? 0,
    frames: Number(ds.string('x00280008') ?? 1) || 1,
    photometric,
    color: !photometric.startsWith('MONOCHROME'),
    lossyAttribute: (ds.string('x00282110') ?? '').trim() === '01',
  };
}

/** Expected pixels of one frame: modality values (grey) or 8-bit RGB, row by row. */
export interface ReferenceFrame {
  width: number;
  height: number;
  color: boolean;
  /** grey: 1 modality value per pixel; colour: R, G, B per pixel */
  values: Float64Array;
}

/** An 8-bit binary PGM/PPM as RGB. */
function readPnm(buf: Buffer): ReferenceFrame {
  const tokens: string[] = [];
  let i = 0;
  const space = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
  while (tokens.length < 4) {
    while (space(buf[i])) i++;
    if (buf[i] === 0x23) {
      while (buf[i] !== 0x0a) i++;
      continue;
    }
    let t = '';
    while (!space(buf[i])) t += String.fromCharCode(buf[i++]);
    tokens.push(t);
  }
  i++; // the one whitespace after maxval
  const [magic, w, h] = tokens;
  const channels = magic === 'P6' ? 3 : 1;
  const width = Number(w);
  const height = Number(h);
  const px = buf.subarray(i, i + width * height * channels);
  const values = new Float64Array(width * height * 3);
  for (let p = 0; p < width * height; p++)
    for (let c = 0; c < 3; c++) values[p * 3 + c] = px[p * channels + (channels === 3 ? c : 0)];
  return { width, height, color: true, values };
}

/** Modality values of frame `frame` (1-based) of an uncompressed little-endian file. */
function greyFrame(file: string, frame: number): ReferenceFrame {
  const bytes = new Uint8Array(readFileSync(file));
  const ds = parse(bytes);
  const rows = ds.uint16('x00280010') ?? 0;
  const cols = ds.uint16('x00280011') ?? 0;
  const bits = ds.uint16('x00280100') ?? 16;
  const stored = ds.uint16('x00280101') ?? bits;
  const signed = ds.uint16('x00280103') === 1;
  // The rescale of an enhanced image is in its functional groups (per frame, else shared).
  const item = (d: dicomParser.DataSet | undefined, tag: string, i = 0) =>
    d?.elements[tag]?.items?.[i]?.dataSet;
  const transform =
    item(item(ds, 'x52009230', frame - 1), 'x00289145') ?? item(item(ds, 'x52009229'), 'x00289145') ?? ds;
  const slope = Number(transform.string('x00281053') ?? 1) || 1;
  const intercept = Number(transform.string('x00281052') ?? 0) || 0;
  const px = ds.elements.x7fe00010;
  const n = rows * cols;
  const view = new DataView(bytes.buffer, bytes.byteOffset + px.dataOffset, px.length);
  const values = new Float64Array(n);
  const base = (frame - 1) * n * (bits / 8);
  for (let i = 0; i < n; i++) {
    let v = bits === 8 ? view.getUint8(base + i) : view.getUint16(base + i * 2, true);
    if (signed) {
      v &= (1 << stored) - 1;
      if (v & (1 << (stored - 1))) v -= 1 << stored;
    }
    values[i] = v * slope + intercept;
  }
  return { width: cols, height: rows, color: false, values };
}

/**
 * The reference of frame `frame` (1-based) of a prepared sample. `archiveFrame` gives the archive's
 * decoded frame (Explicit VR Little Endian bytes) for HTJ2K, which no reference tool reads here.
 */
export async function referenceFrame(
  s: PreparedSample,
  frame: number,
  dir: string,
  archiveFrame: () => Promise<Buffer>,
): Promise<ReferenceFrame> {
  if (HTJ2K.has(s.transferSyntax)) {
    if (!s.color || s.photometric !== 'RGB')
      throw new Error(`${s.name}: only RGB HTJ2K samples are expected`);
    const raw = await archiveFrame();
    return { width: s.columns, height: s.rows, color: true, values: Float64Array.from(raw) };
  }
  const decoded = `${s.file}.raw.dcm`;
  if (!existsSync(decoded)) {
    const tool = decoderFor(s.transferSyntax);
    if (!tool) throw new Error(`no reference decoder for ${s.transferSyntax}`);
    execFileSync(tool[0], [...tool.slice(1), s.file, decoded], { stdio: 'pipe' });
  }
  if (!s.color) return greyFrame(decoded, frame);
  const pnm = path.join(dir, `${path.basename(s.file)}.${frame}.ppm`);
  execFileSync('dcm2pnm', ['+F', String(frame), '+op', decoded, pnm], { stdio: 'pipe' });
  return readPnm(readFileSync(pnm));
}
