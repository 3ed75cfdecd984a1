import dicomParser from 'dicom-parser';
import { describe, expect, it } from 'vitest';
import { concat } from './bytes';
import { type Span, toDicomJson } from './dicom-json';
import {
  frameSpans,
  numberOfFrames,
  readObjectInMemory,
  swap16ToLittleEndian,
  swap32ToLittleEndian,
  swapToLittleEndian,
} from './frames';
import { findElement, type ScanResult, scanPart10 } from './part10';
import { onSamples, readSample, sampleFiles, samplesPresent } from '../tests/samples';

const OPTS = { defaultCharset: 'windows-1258', bulkDataUri: (p: string) => p };

function analyse(bytes: Uint8Array) {
  const scan = scanPart10(bytes);
  const { json } = toDicomJson(scan, bytes, OPTS);
  return { scan, json, spans: frameSpans(scan, json) };
}
const frameBytes = (bytes: Uint8Array, frame: Span[]) =>
  concat(frame.map(([o, n]) => bytes.subarray(o, o + n)));
/** Fast byte equality (vitest's deep equality is far too slow on megabyte arrays). */
function same(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

const NATIVE = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2']);
const DEFLATED = '1.2.840.10008.1.2.1.99';
const RLE = '1.2.840.10008.1.2.5';
const J2K = new Set([
  '1.2.840.10008.1.2.4.90',
  '1.2.840.10008.1.2.4.91',
  '1.2.840.10008.1.2.4.201',
  '1.2.840.10008.1.2.4.203',
]);

/** The start of a frame's codestream is valid for its transfer syntax (PS3.5 A.4.x; RLE: PS3.5 G.4 header). */
function validFrameStart(ts: string, f: Uint8Array): boolean {
  if (J2K.has(ts)) return (f[0] === 0xff && f[1] === 0x4f) || (f[4] === 0x6a && f[5] === 0x50); // SOC, or JP2 box
  if (ts === RLE) {
    const segments = f[0] | (f[1] << 8) | (f[2] << 16) | (f[3] << 24);
    const first = f[4] | (f[5] << 8) | (f[6] << 16) | (f[7] << 24);
    return segments >= 1 && segments <= 15 && first === 64;
  }
  return f[0] === 0xff && f[1] === 0xd8; // JPEG / JPEG-LS SOI
}

describe.skipIf(!samplesPresent)(onSamples('frames on real samples'), () => {
  const files = sampleFiles().filter((f) => !f.startsWith('malformed/'));
  const scanned = files.flatMap((f) => {
    try {
      const bytes = readSample(f);
      return [{ f, bytes, ...analyse(bytes) }];
    } catch {
      return []; // the two bare data sets without meta information (see part10.test.ts)
    }
  });

  it('native frames concatenated are the Pixel Data value read by dicom-parser', () => {
    let checked = 0;
    for (const { f, bytes, scan, spans } of scanned) {
      if (!NATIVE.has(scan.transferSyntaxUID) || !findElement(scan.dataset, '7FE00010')) continue;
      const ds = dicomParser.parseDicom(bytes);
      const px = ds.elements.x7fe00010;
      const value = bytes.subarray(px.dataOffset, px.dataOffset + px.length);
      expect(spans, f).not.toBeNull();
      const all = concat(spans!.map((fr) => frameBytes(bytes, fr)));
      // Equal, up to the padding byte of an odd-length value (SC_rgb_small_odd: 27 bytes + 1).
      expect(value.length - all.length, f).toBeLessThanOrEqual(1);
      expect(same(all, value.subarray(0, all.length)), f).toBe(true);
      checked++;
    }
    expect(checked).toBeGreaterThan(200);
  });

  it('big endian frames swapped to little endian equal the little endian originals', () => {
    const pairs = [
      ['transfer-syntaxes/MR_small_bigendian.dcm', 'mr/MR_small.dcm'],
      [
        'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm',
        'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm',
      ],
    ];
    for (const [beFile, leFile] of pairs) {
      const be = analyse(readSample(beFile));
      const le = analyse(readSample(leFile));
      const beFrame = frameBytes(readSample(beFile), be.spans![0]);
      const leFrame = frameBytes(readSample(leFile), le.spans![0]);
      expect(same(beFrame, leFrame)).toBe(false);
      expect(same(swapToLittleEndian(beFrame, 16), leFrame)).toBe(true);
      expect(same(readObjectInMemory(readSample(beFile)).frames()[0], leFrame)).toBe(true);
    }
  });

  it('encapsulated: as many frames as Number of Frames, each starting with a valid codestream', () => {
    let multi = 0;
    for (const { f, bytes, scan, json, spans } of scanned) {
      if (NATIVE.has(scan.transferSyntaxUID) || scan.deflated) continue;
      if (!findElement(scan.dataset, '7FE00010')?.fragments) continue;
      expect(spans, f).not.toBeNull();
      expect(spans!.length, f).toBe(numberOfFrames(json));
      for (const frame of spans!)
        expect(validFrameStart(scan.transferSyntaxUID, frameBytes(bytes, frame)), f).toBe(true);
      if (spans!.length > 1) multi++;
    }
    expect(multi).toBeGreaterThanOrEqual(4); // examples_ybr_color, CT0012 (no BOT), 2 RLE
  });

  it('uses the Basic Offset Table, and codestream starts when there is none (CT0012: 2 frames in 11 fragments)', () => {
    const ybr = scanned.find((s) => s.f === 'us-multiframe/examples_ybr_color.dcm')!;
    expect(findElement(ybr.scan.dataset, '7FE00010')!.basicOffsetTable!.length).toBe(30 * 4);
    expect(ybr.spans!.length).toBe(30);
    const ct = scanned.find(
      (s) => s.f === 'transfer-syntaxes/CT0012.fragmented_no_bot_jpeg_baseline.51.dcm',
    )!;
    const fragments = findElement(ct.scan.dataset, '7FE00010')!.fragments!;
    expect(ct.spans!.length).toBe(2);
    expect(ct.spans!.flat()).toEqual(fragments.slice(1)); // every fragment once, in order
    const frames = readObjectInMemory(ct.bytes).frames();
    expect(frames.map((f) => f.length)).toEqual(ct.spans!.map((fr) => fr.reduce((n, s) => n + s[1], 0)));
  });

  it('deflated: not addressable, decoded in memory to the same pixels as the little endian original', () => {
    const ct = 'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_';
    const deflatedBytes = readSample(
      `${ct}DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm`,
    );
    const deflated = analyse(deflatedBytes);
    expect(deflated.scan.transferSyntaxUID).toBe(DEFLATED);
    expect(deflated.spans).toBeNull();
    const leBytes = readSample(`${ct}LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm`);
    const le = analyse(leBytes);
    const obj = readObjectInMemory(deflatedBytes);
    const frames = obj.frames();
    expect(frames.length).toBe(1);
    expect(same(frames[0], frameBytes(leBytes, le.spans![0]))).toBe(true);
    const [o, n] = le.spans![0][0];
    expect(same(obj.bulk('7FE00010'), leBytes.subarray(o, o + n))).toBe(true);
    const dfl = readObjectInMemory(readSample('transfer-syntaxes/image_dfl.dcm')).frames();
    expect(dfl.length).toBe(1);
    expect(dfl[0].length).toBe(512 * 512);
  });

  it('bit-packed segmentations whose frames are byte aligned are addressable', () => {
    for (const f of ['sr-pdf-seg/liver_seg.dcm', 'sr-pdf-seg/highdicom_seg_image_ct_binary.dcm']) {
      const s = scanned.find((x) => x.f === f)!;
      expect(s.spans!.length).toBe(3);
      const mem = readObjectInMemory(s.bytes).frames();
      expect(mem.length).toBe(s.spans!.length);
      mem.forEach((frame, i) => {
        expect(same(frame, frameBytes(s.bytes, s.spans![i]))).toBe(true);
      });
    }
  });

  it('numberOfFrames is 0 without pixel data', () => {
    const sr = scanned.find((x) => x.f === 'sr-pdf-seg/test-SR.dcm')!;
    expect(numberOfFrames(sr.json)).toBe(0);
    expect(sr.spans).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Synthetic cases

const enc = (s: string) => new TextEncoder().encode(s);
function le(bytes: number, v: number) {
  const b = new Uint8Array(bytes);
  const d = new DataView(b.buffer);
  if (bytes === 2) d.setUint16(0, v, true);
  else if (bytes === 4) d.setUint32(0, v, true);
  else d.setBigUint64(0, BigInt(v), true);
  return b;
}
const LONG = new Set(['OB', 'OW', 'OV', 'SQ', 'UN', 'UT']);
function ex(tag: number, vr: string, value: Uint8Array | string, length?: number) {
  let v = typeof value === 'string' ? enc(value) : value;
  if (v.length % 2) v = concat([v, new Uint8Array([vr === 'UI' || vr === 'OB' ? 0 : 0x20])]);
  const head = concat([le(2, tag >>> 16), le(2, tag & 0xffff), enc(vr)]);
  return LONG.has(vr)
    ? concat([head, new Uint8Array(2), le(4, length ?? v.length), v])
    : concat([head, le(2, v.length), v]);
}
const item = (body: Uint8Array) => concat([le(2, 0xfffe), le(2, 0xe000), le(4, body.length), body]);
const seqEnd = () => concat([le(2, 0xfffe), le(2, 0xe0dd), le(4, 0)]);
function file(dataset: Uint8Array, ts: string) {
  return concat([new Uint8Array(128), enc('DICM'), ex(0x00020010, 'UI', ts), dataset]);
}
function image(rows: number, cols: number, bits: number, frames: number) {
  return concat([
    ex(0x00280002, 'US', le(2, 1)),
    ex(0x00280008, 'IS', String(frames)),
    ex(0x00280010, 'US', le(2, rows)),
    ex(0x00280011, 'US', le(2, cols)),
    ex(0x00280100, 'US', le(2, bits)),
  ]);
}
const framesOf = (bytes: Uint8Array): { scan: ScanResult; spans: Span[][] | null } => {
  const scan = scanPart10(bytes);
  return { scan, spans: frameSpans(scan, toDicomJson(scan, bytes, OPTS).json) };
};

describe('frames: synthetic', () => {
  it('1-bit frames that do not start on a byte boundary: null spans, re-aligned in memory', () => {
    // 3×3 pixels, 2 frames = 18 bits: frame 1 starts at bit 9.
    const frame0 = [1, 0, 1, 0, 1, 0, 1, 0, 1];
    const frame1 = [1, 1, 0, 0, 1, 1, 0, 0, 1];
    const bits = [...frame0, ...frame1];
    const packed = new Uint8Array(4);
    bits.forEach((bit, i) => {
      if (bit) packed[i >> 3] |= 1 << (i & 7);
    });
    const bytes = file(concat([image(3, 3, 1, 2), ex(0x7fe00010, 'OB', packed)]), '1.2.840.10008.1.2.1');
    expect(framesOf(bytes).spans).toBeNull();
    const pack = (b: number[]) => {
      const out = new Uint8Array(2);
      b.forEach((bit, i) => {
        if (bit) out[i >> 3] |= 1 << (i & 7);
      });
      return out;
    };
    expect(readObjectInMemory(bytes).frames()).toEqual([pack(frame0), pack(frame1)]);
  });

  it('Extended Offset Table (7FE0,0001) when there is no Basic Offset Table', () => {
    const f = [0, 1, 2].map((k) => new Uint8Array([0xff, 0xd8, k, k, 0xff, 0xd9]));
    const eot = concat([le(8, 0), le(8, 8 + 6), le(8, 2 * (8 + 6))]);
    const ds = concat([
      image(2, 2, 8, 3),
      ex(0x7fe00001, 'OV', eot),
      ex(0x7fe00002, 'OV', concat([le(8, 6), le(8, 6), le(8, 6)])),
      ex(0x7fe00010, 'OB', new Uint8Array(0), 0xffffffff),
      item(new Uint8Array(0)),
      ...f.map(item),
      seqEnd(),
    ]);
    const bytes = file(ds, '1.2.840.10008.1.2.4.50');
    const { spans } = framesOf(bytes);
    expect(spans!.map((fr) => frameBytes(bytes, fr))).toEqual(f);
  });

  it('Basic Offset Table grouping several fragments per frame; inconsistent table ignored', () => {
    const parts = [
      new Uint8Array([0xff, 0xd8, 1, 1]),
      new Uint8Array([2, 2]),
      new Uint8Array([0xff, 0xd8, 3, 3]),
      new Uint8Array([4, 4]),
    ];
    const build = (bot: number[]) =>
      file(
        concat([
          image(2, 2, 8, 2),
          ex(0x7fe00010, 'OB', new Uint8Array(0), 0xffffffff),
          item(concat(bot.map((o) => le(4, o)))),
          ...parts.map(item),
          seqEnd(),
        ]),
        '1.2.840.10008.1.2.4.50',
      );
    const good = build([0, 8 + 4 + 8 + 2]);
    expect(framesOf(good).spans!.map((fr) => fr.length)).toEqual([2, 2]);
    expect(frameBytes(good, framesOf(good).spans![1])).toEqual(new Uint8Array([0xff, 0xd8, 3, 3, 4, 4]));
    // An offset that does not point at an item: falls back to codestream starts, same answer.
    const bad = build([0, 5]);
    expect(framesOf(bad).spans!.map((fr) => fr.length)).toEqual([2, 2]);
  });

  it('swaps 16- and 32-bit words', () => {
    expect([...swap16ToLittleEndian(new Uint8Array([1, 2, 3, 4, 5]))]).toEqual([2, 1, 4, 3, 5]);
    expect([...swap32ToLittleEndian(new Uint8Array([1, 2, 3, 4]))]).toEqual([4, 3, 2, 1]);
    expect([...swapToLittleEndian(new Uint8Array([1, 2, 3, 4]), 32)]).toEqual([4, 3, 2, 1]);
    expect([...swapToLittleEndian(new Uint8Array([1, 2]), 8)]).toEqual([2, 1]); // 8-bit OW in big endian
    expect([...swapToLittleEndian(new Uint8Array([1, 2]), 8, 'OB')]).toEqual([1, 2]);
  });
});
