/**
 * 12-bit JPEG Extended (Process 4, 1.2.840.10008.1.2.4.51) by DCMTK's `dcmcjpeg` (IJG libjpeg built
 * for 12-bit samples), when it is installed (Debian: `apt install dcmtk`). The WebAssembly codecs
 * make lossy JPEG from 8-bit samples only, and no maintained JavaScript or WebAssembly encoder makes
 * 12-bit lossy JPEG; DCMTK is the reference implementation of the field.
 *
 * Only unsigned greyscale samples of 9 to 12 bits are given to it, declared as 12 bits: `dcmcjpeg +sr`
 * then codes the stored values as they are (scaling by the full 12-bit range is the identity), whereas
 * for signed samples it would rewrite the pixel values and the rescale. Every output is checked: same
 * Rows, Columns, BitsStored, PixelRepresentation and rescale as the input, else it is an error.
 * Runs inside the transcoding worker threads (worker.ts), one `dcmcjpeg` process per frame or instance.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import dicomParser from 'dicom-parser';
// biome-ignore lint/suspicious/noTsIgnore: dcmjs ships no type declarations; @ts-ignore stays valid if a declaration is added elsewhere.
// @ts-ignore
import dcmjsModule from 'dcmjs';
import { readObjectInMemory } from '../../dicomweb/frames';
import type { ImageInfo } from '../../dicomweb/transfer-syntax';
import type { Pixels } from './codecs';
import { transcodeInstance } from './instance';

export const JPEG_EXTENDED = '1.2.840.10008.1.2.4.51';
const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
const run = promisify(execFile);

interface DcmjsLike {
  data: {
    DicomDict: new (meta: Record<string, unknown>) => { dict: Record<string, unknown>; write(): ArrayBuffer };
    DicomMetaDictionary: { denaturalizeDataset(ds: Record<string, unknown>): Record<string, unknown> };
  };
}
const dcmjs = dcmjsModule as unknown as DcmjsLike;

let available: boolean | undefined;
/** Whether `dcmcjpeg` can be run here (looked up once). */
export function dcmtkJpegAvailable(): boolean {
  if (available === undefined) {
    try {
      execFileSync('dcmcjpeg', ['--version'], { stdio: 'ignore', timeout: 10_000 });
      available = true;
    } catch {
      available = false;
    }
  }
  return available;
}

/** Whether frames and instances of this image in `to` are made by DCMTK rather than the WebAssembly codecs. */
export function needsDcmtk(to: string, image: Pick<ImageInfo, 'BitsStored'> | undefined): boolean {
  return to === JPEG_EXTENDED && (image?.BitsStored ?? 0) > 8;
}

/** The attributes that must come out of dcmcjpeg as they went in. */
function imageAttributes(p10: Uint8Array): Record<string, string | number | undefined> {
  const ds = dicomParser.parseDicom(p10, { untilTag: 'x7fe00010' });
  return {
    rows: ds.uint16('x00280010'),
    columns: ds.uint16('x00280011'),
    bitsStored: ds.uint16('x00280101'),
    pixelRepresentation: ds.uint16('x00280103'),
    samples: ds.uint16('x00280002'),
    slope: ds.floatString('x00281053') ?? 1,
    intercept: ds.floatString('x00281052') ?? 0,
  };
}

/** A copy of a little-endian Part 10 object with BitsStored and HighBit set (US values in place). */
function withBitsStored(p10: Uint8Array, bits: number): Uint8Array {
  const out = p10.slice();
  const ds = dicomParser.parseDicom(out, { untilTag: 'x7fe00010' });
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (const [tag, value] of [
    ['x00280101', bits],
    ['x00280102', bits - 1],
  ] as const) {
    const e = ds.elements[tag];
    if (e?.length !== 2) throw new Error(`no ${tag} to set`);
    view.setUint16(e.dataOffset, value, true);
  }
  return out;
}

/**
 * `input` (explicit or implicit VR little endian) in 12-bit JPEG Extended. Samples of 9 to 11 bits are
 * declared as 12 for dcmcjpeg (which would otherwise scale them to 12 bits) and declared back after:
 * JPEG Process 4 codes them at 12-bit precision unchanged.
 */
async function dcmcjpeg(input: Uint8Array, quality: number, newUid: boolean): Promise<Uint8Array> {
  const before = imageAttributes(input);
  const bits = Number(before.bitsStored);
  if (before.samples !== 1 || before.pixelRepresentation !== 0 || !(bits > 8 && bits <= 12))
    throw new Error('12-bit JPEG Extended is made from unsigned greyscale samples of 9 to 12 bits only');
  const dir = await mkdtemp(path.join(tmpdir(), 'pacs-dcmcjpeg-'));
  try {
    const inFile = path.join(dir, 'in.dcm');
    const outFile = path.join(dir, 'out.dcm');
    await writeFile(inFile, bits === 12 ? input : withBitsStored(input, 12));
    // +ee: extended sequential (Process 2/4); +sr: scale by the range of BitsStored (the identity for
    // unsigned 12-bit samples); +q: quality; +ud: a new SOP Instance UID (lossy), +un: none (a frame).
    const uid = newUid ? '+ud' : '+un';
    await run('dcmcjpeg', ['+ee', '+sr', '+q', String(quality), uid, inFile, outFile], { timeout: 60_000 });
    let out: Uint8Array = new Uint8Array(await readFile(outFile));
    if (bits !== 12) out = withBitsStored(out, bits);
    const after = imageAttributes(out);
    for (const [k, v] of Object.entries(before))
      if (after[k] !== v) throw new Error(`dcmcjpeg changed ${k} (${v} → ${after[k]}): not used`);
    return out;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`12-bit JPEG Extended encoding (dcmcjpeg) failed: ${(e.stderr || e.message).trim()}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One frame of native greyscale samples (9 to 12 bits, unsigned) as a 12-bit JPEG Extended codestream. */
export async function encodeJpegExtended12(image: ImageInfo, px: Pixels, quality = 90): Promise<Uint8Array> {
  const uid = '2.25.1';
  const meta = {
    '00020001': { vr: 'OB', Value: [Uint8Array.of(0, 1).buffer] },
    '00020002': { vr: 'UI', Value: [SECONDARY_CAPTURE] },
    '00020003': { vr: 'UI', Value: [uid] },
    '00020010': { vr: 'UI', Value: [EXPLICIT_VR_LITTLE_ENDIAN] },
  };
  const data = px.data.slice();
  const dict = new dcmjs.data.DicomDict(meta);
  dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset({
    SOPClassUID: SECONDARY_CAPTURE,
    SOPInstanceUID: uid,
    SamplesPerPixel: 1,
    PhotometricInterpretation: px.photometric,
    Rows: image.Rows,
    Columns: image.Columns,
    BitsAllocated: image.BitsAllocated,
    BitsStored: image.BitsStored,
    HighBit: image.BitsStored - 1,
    PixelRepresentation: image.PixelRepresentation,
    PixelData: data.buffer,
    _vrMap: { PixelData: 'OW' },
  });
  const out = await dcmcjpeg(new Uint8Array(dict.write()), quality, false);
  const [frame] = readObjectInMemory(out).frames();
  if (!frame?.length) throw new Error('12-bit JPEG Extended encoding (dcmcjpeg) produced no frame');
  return frame;
}

/**
 * A whole Part 10 object (unsigned greyscale, 9 to 12 bits) in 12-bit JPEG Extended, with a new SOP
 * Instance UID and the lossy compression attributes DCMTK records (LossyImageCompression, ratio, method).
 * It is first decoded to Explicit VR Little Endian by the WebAssembly codecs, whatever it is stored in.
 */
export function transcodeInstanceJpegExtended12(p10: Uint8Array): Promise<Uint8Array> {
  return dcmcjpeg(transcodeInstance(p10, EXPLICIT_VR_LITTLE_ENDIAN), 90, true);
}
