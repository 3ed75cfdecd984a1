import { deflateRaw } from 'pako';
import { describe, expect, it } from 'vitest';
import { concat } from './bytes';
import {
  findElement,
  Part10Error,
  Part10Scanner,
  type ScanOptions,
  type ScanResult,
  scanPart10,
} from './part10';
import { onSamples, readSample, sampleFiles, samplesPresent } from '../tests/samples';

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function scanInChunks(bytes: Uint8Array, sizes: () => number, opts?: ScanOptions): ScanResult {
  const s = new Part10Scanner(opts);
  for (let o = 0; o < bytes.length; ) {
    const n = Math.max(1, sizes());
    s.push(bytes.subarray(o, o + n));
    o += n;
  }
  return s.end();
}

function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof Part10Error) return err.code;
    throw err; // anything else (TypeError, RangeError…) is a bug
  }
}

// ---------------------------------------------------------------------------------------------------------
// Tiny Part 10 writer for synthetic cases.

const enc = (s: string) => new TextEncoder().encode(s);
const cat = (...parts: Uint8Array[]) => concat(parts);
function u16(v: number, big = false) {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, v, !big);
  return b;
}
function u32(v: number, big = false) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, !big);
  return b;
}
const pad = (b: Uint8Array, padByte = 0x20) => (b.length % 2 ? cat(b, new Uint8Array([padByte])) : b);
const LONG = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEF = 0xffffffff;

/** Explicit VR element; `length` overrides the value length (e.g. UNDEF). */
function ex(
  tag: number,
  vr: string,
  value: Uint8Array | string,
  opts: { big?: boolean; length?: number } = {},
) {
  const v = typeof value === 'string' ? pad(enc(value), vr === 'UI' ? 0 : 0x20) : value;
  const big = opts.big ?? false;
  const len = opts.length ?? v.length;
  const head = cat(u16(tag >>> 16, big), u16(tag & 0xffff, big), enc(vr));
  return LONG.has(vr) ? cat(head, new Uint8Array(2), u32(len, big), v) : cat(head, u16(len, big), v);
}
/** Implicit VR element. */
function im(tag: number, value: Uint8Array | string, length?: number) {
  const v = typeof value === 'string' ? pad(enc(value)) : value;
  return cat(u16(tag >>> 16), u16(tag & 0xffff), u32(length ?? v.length), v);
}
/** Item / delimiters (tag + 4-byte length). */
const item = (length: number, big = false) => cat(u16(0xfffe, big), u16(0xe000, big), u32(length, big));
const itemEnd = (big = false) => cat(u16(0xfffe, big), u16(0xe00d, big), u32(0, big));
const seqEnd = (big = false) => cat(u16(0xfffe, big), u16(0xe0dd, big), u32(0, big));

function part10(dataset: Uint8Array, ts: string, opts: { groupLength?: boolean; preamble?: boolean } = {}) {
  const metaBody = cat(ex(0x00020001, 'OB', new Uint8Array([0, 1])), ex(0x00020010, 'UI', ts));
  const meta =
    opts.groupLength === false ? metaBody : cat(ex(0x00020000, 'UL', u32(metaBody.length)), metaBody);
  const preamble = opts.preamble === false ? new Uint8Array(0) : cat(new Uint8Array(128), enc('DICM'));
  return cat(preamble, meta, dataset);
}
const EVRLE = '1.2.840.10008.1.2.1';
const IVRLE = '1.2.840.10008.1.2';
const EVRBE = '1.2.840.10008.1.2.2';
const DEFLATED = '1.2.840.10008.1.2.1.99';
const JPEG = '1.2.840.10008.1.2.4.50';

// ---------------------------------------------------------------------------------------------------------

describe('Part10Scanner: synthetic data sets', () => {
  it('reads meta, transfer syntax and explicit VR LE elements with offsets', () => {
    const ds = cat(ex(0x00100010, 'PN', 'Doe^John'), ex(0x00280010, 'US', u16(512)));
    const bytes = part10(ds, EVRLE);
    const r = scanPart10(bytes);
    expect(r.transferSyntaxUID).toBe(EVRLE);
    expect(r.meta.map((e) => e.tag)).toEqual(['00020000', '00020001', '00020010']);
    expect(r.size).toBe(bytes.length);
    expect(r.deflated).toBe(false);
    const pn = findElement(r.dataset, '00100010')!;
    expect(pn.vr).toBe('PN');
    expect(new TextDecoder().decode(bytes.subarray(pn.offset, pn.offset + pn.length))).toBe('Doe^John');
    expect(new TextDecoder().decode(pn.value)).toBe('Doe^John');
    expect(r.datasetOffset).toBe(bytes.length - ds.length);
  });

  it('tolerates a missing group length and a missing preamble', () => {
    const ds = ex(0x00100020, 'LO', 'ID1');
    for (const opts of [
      { groupLength: false },
      { preamble: false },
      { groupLength: false, preamble: false },
    ]) {
      const r = scanPart10(part10(ds, EVRLE, opts));
      expect(r.dataset.map((e) => e.tag)).toEqual(['00100020']);
    }
  });

  it('throws not-dicom as soon as 132 bytes without DICM are pushed', () => {
    const s = new Part10Scanner();
    s.push(new Uint8Array(100).fill(0x41));
    expect(() => s.push(new Uint8Array(40))).toThrow(Part10Error);
    expect(outcome(() => scanPart10(enc('hello')))).toBe('not-dicom');
  });

  it('reports no-meta and no-transfer-syntax', () => {
    const noMeta = cat(new Uint8Array(128), enc('DICM'), ex(0x00100010, 'PN', 'X'));
    expect(outcome(() => scanPart10(noMeta))).toBe('no-meta');
    const noTs = cat(new Uint8Array(128), enc('DICM'), ex(0x00020001, 'OB', new Uint8Array([0, 1])));
    expect(outcome(() => scanPart10(noTs))).toBe('no-transfer-syntax');
  });

  it('reads implicit VR LE with dictionary VRs (private → UN, creator → LO, 60xx overlay, US/SS by Pixel Representation)', () => {
    const ds = cat(
      im(0x00100010, 'Doe^Jane'),
      im(0x00280103, u16(1)),
      im(0x00280106, u16(0xfff0)),
      im(0x00290010, 'ACME'),
      im(0x00291001, new Uint8Array([1, 2, 3, 4])),
      im(0x60020010, u16(64)),
      im(0x60023000, new Uint8Array(8)),
    );
    const r = scanPart10(part10(ds, IVRLE));
    expect(r.dataset.map((e) => `${e.tag}:${e.vr}`)).toEqual([
      '00100010:PN',
      '00280103:US',
      '00280106:SS',
      '00290010:LO',
      '00291001:UN',
      '60020010:US',
      '60023000:OW',
    ]);
  });

  it('reads explicit VR big endian', () => {
    const ds = cat(
      ex(0x00280010, 'US', u16(0x0102, true), { big: true }),
      ex(0x00100010, 'PN', 'A^B', { big: true }),
    );
    const r = scanPart10(part10(ds, EVRBE));
    expect(r.bigEndian).toBe(true);
    const rows = findElement(r.dataset, '00280010')!;
    expect(rows.bigEndian).toBe(true);
    expect([...rows.value!]).toEqual([1, 2]);
  });

  it('reads sequences of defined and undefined length with items of both kinds', () => {
    const inner = ex(0x00081150, 'UI', '1.2.3');
    const ds = cat(
      // undefined-length SQ, one undefined-length item and one defined-length item
      ex(0x00081140, 'SQ', new Uint8Array(0), { length: UNDEF }),
      item(UNDEF),
      inner,
      itemEnd(),
      item(inner.length),
      inner,
      seqEnd(),
      // defined-length SQ with one defined-length item
      ex(0x00081115, 'SQ', cat(item(inner.length), inner)),
      // empty sequence
      ex(0x00081111, 'SQ', new Uint8Array(0)),
      ex(0x00100010, 'PN', 'After'),
    );
    const r = scanPart10(part10(ds, EVRLE));
    const [a, b, c, d] = r.dataset;
    expect(a.items!.length).toBe(2);
    expect(a.items![0][0].tag).toBe('00081150');
    expect(a.length).toBe(8 + inner.length + 8 + 8 + inner.length); // resolved: up to the sequence delimiter
    expect(b.items!.length).toBe(1);
    expect(c.items).toEqual([]);
    expect(d.tag).toBe('00100010');
  });

  it('parses UN of undefined length as an implicit VR LE sequence, and UN-encoded dictionary SQs', () => {
    const implicitItem = im(0x00081150, '1.2.3\0');
    const ds = cat(
      ex(0x00081140, 'UN', new Uint8Array(0), { length: UNDEF }),
      item(UNDEF),
      implicitItem,
      itemEnd(),
      seqEnd(),
      ex(0x00081115, 'UN', cat(item(implicitItem.length), implicitItem)),
    );
    const r = scanPart10(part10(ds, EVRLE));
    expect(r.dataset.map((e) => e.vr)).toEqual(['SQ', 'SQ']);
    expect(r.dataset[0].items![0][0]).toMatchObject({ tag: '00081150', vr: 'UI' });
    expect(r.dataset[1].items![0][0]).toMatchObject({ tag: '00081150', vr: 'UI' });
  });

  it('records encapsulated pixel data fragments, Basic Offset Table bytes and fragment heads', () => {
    const f1 = new Uint8Array([0xff, 0xd8, 1, 2, 3, 4]);
    const f2 = new Uint8Array([0xff, 0xd8, 5, 6]);
    const bot = cat(u32(0), u32(8 + f1.length));
    const ds = cat(
      ex(0x7fe00010, 'OB', new Uint8Array(0), { length: UNDEF }),
      item(bot.length),
      bot,
      item(f1.length),
      f1,
      item(f2.length),
      f2,
      seqEnd(),
      ex(0xfffcfffc, 'OB', new Uint8Array(6)), // Data Set Trailing Padding
    );
    const bytes = part10(ds, JPEG);
    const r = scanPart10(bytes);
    const px = findElement(r.dataset, '7FE00010')!;
    expect(px.fragments!.length).toBe(3);
    expect(px.fragments![1]).toEqual([px.offset + 8 + bot.length + 8, f1.length]);
    expect([...bytes.subarray(px.fragments![2][0], px.fragments![2][0] + 4)]).toEqual([0xff, 0xd8, 5, 6]);
    expect([...px.basicOffsetTable!]).toEqual([...bot]);
    expect(px.fragmentHeads!.slice(1)).toEqual([0xffd80102, 0xffd80506]);
    expect(px.value).toBeUndefined();
    expect(px.length).toBe(8 + bot.length + 8 + f1.length + 8 + f2.length);
  });

  it('reads Pixel Data of undefined length labelled UN as encapsulated fragments', () => {
    const frag = new Uint8Array([0xff, 0xd8, 0xff, 0xd9]);
    const ds = cat(
      ex(0x7fe00010, 'UN', new Uint8Array(0), { length: UNDEF }),
      item(0),
      item(4),
      frag,
      seqEnd(),
    );
    const px = findElement(scanPart10(part10(ds, JPEG)).dataset, '7FE00010')!;
    expect(px.fragments!.map(([, n]) => n)).toEqual([0, 4]);
  });

  it('inflates a deflated data set (offsets in the inflated stream)', () => {
    const plain = cat(
      ex(0x00100010, 'PN', 'Deflated^Patient'),
      ex(0x7fe00010, 'OW', new Uint8Array(4000).fill(7)),
    );
    const bytes = part10(deflateRaw(plain), DEFLATED);
    const r = scanPart10(bytes);
    expect(r.deflated).toBe(true);
    const pn = findElement(r.dataset, '00100010')!;
    expect(new TextDecoder().decode(plain.subarray(pn.offset, pn.offset + pn.length))).toBe(
      'Deflated^Patient',
    );
    expect(findElement(r.dataset, '7FE00010')?.length).toBe(4000);
    expect(findElement(r.dataset, '7FE00010')?.value).toBeUndefined();
    // any chunking gives the same result
    const rand = rng(7);
    expect(scanInChunks(bytes, () => 1 + Math.floor(rand() * 50))).toEqual(r);
  });

  it('refuses a deflated data set that inflates beyond the limit (a deflate bomb)', () => {
    const plain = cat(
      ex(0x00100010, 'PN', 'Deflated^Patient'),
      ex(0x7fe00010, 'OW', new Uint8Array(4 * 1024 * 1024)),
    );
    const bytes = part10(deflateRaw(plain), DEFLATED);
    expect(bytes.length).toBeLessThan(16 * 1024); // 4 MiB of zeros deflate to a few kB
    expect(() => scanPart10(bytes, { maxInflatedBytes: 1024 * 1024 })).toThrow(
      expect.objectContaining({
        code: 'too-large',
        message: expect.stringMatching(/inflates to more than 1048576/),
      }),
    );
    expect(() => scanInChunks(bytes, () => 100, { maxInflatedBytes: 1024 * 1024 })).toThrow(/inflates/);
    expect(findElement(scanPart10(bytes).dataset, '7FE00010')?.length).toBe(4 * 1024 * 1024);
  });

  it('keeps values up to inlineLimit, binaries above it only as spans, long text inline', () => {
    const ds = cat(
      ex(0x00420011, 'OB', new Uint8Array(2000)),
      ex(0x00091010, 'OB', new Uint8Array(16)),
      ex(0x00204000, 'LT', 'x'.repeat(3000)),
    );
    const r = scanPart10(part10(ds, EVRLE), { inlineLimit: 1024 });
    expect(r.dataset[0].value).toBeUndefined();
    expect(r.dataset[0].length).toBe(2000);
    expect(r.dataset[1].value?.length).toBe(16);
    expect(r.dataset[2].value?.length).toBe(3000);
  });

  it('throws truncated for a cut file and for an absurd length, without allocating it', () => {
    const ds = cat(ex(0x00100010, 'PN', 'Doe'), ex(0x7fe00010, 'OW', new Uint8Array(100)));
    const bytes = part10(ds, EVRLE);
    for (let cut = bytes.length - 1; cut > bytes.length - 120; cut -= 7) {
      expect(outcome(() => scanPart10(bytes.subarray(0, cut)))).toBe('truncated');
    }
    const absurd = part10(cat(ex(0x00091010, 'OB', new Uint8Array(16), { length: 0xfffffff0 })), EVRLE);
    expect(outcome(() => scanPart10(absurd))).toBe('truncated');
    const absurdText = part10(cat(ex(0x00204000, 'UT', new Uint8Array(16), { length: 0xfffffff0 })), EVRLE);
    expect(outcome(() => scanPart10(absurdText))).toBe('truncated');
  });

  it('throws malformed when a value runs past its item, or on undefined length for a non-SQ VR', () => {
    const badItem = cat(ex(0x00081115, 'SQ', cat(item(10), ex(0x00081150, 'UI', '1.2.3.4.5.6'))));
    expect(outcome(() => scanPart10(part10(badItem, EVRLE)))).toBe('malformed');
    const badUndef = ex(0x00204000, 'UT', new Uint8Array(0), { length: UNDEF });
    expect(outcome(() => scanPart10(part10(badUndef, EVRLE)))).toBe('malformed');
  });

  it('tolerates trailing zero padding but not a partial header', () => {
    const ds = ex(0x00100010, 'PN', 'Doe');
    expect(outcome(() => scanPart10(cat(part10(ds, EVRLE), new Uint8Array(3))))).toBe('ok');
    expect(outcome(() => scanPart10(cat(part10(ds, EVRLE), new Uint8Array([0x10, 0, 0x20]))))).toBe(
      'truncated',
    );
  });

  it('push() after a failure keeps failing with the same error', () => {
    const s = new Part10Scanner();
    expect(() => s.push(new Uint8Array(200))).toThrow(Part10Error);
    expect(() => s.push(new Uint8Array(1))).toThrow(/DICM/);
    expect(() => s.end()).toThrow(/DICM/);
  });
});

describe.skipIf(!samplesPresent)(onSamples('Part10Scanner: real samples'), () => {
  const files = sampleFiles();

  /** Expected outcome per malformed/ sample (everything else must scan, except the two raw data sets below). */
  const EXPECTED: Record<string, string> = {
    'malformed/ExplVR_BigEndNoMeta.dcm': 'not-dicom',
    'malformed/J2K_pixelrep_mismatch.dcm': 'ok',
    'malformed/JPEG2000-embedded-sequence-delimiter.dcm': 'ok',
    'malformed/MR_truncated.dcm': 'truncated',
    'malformed/SC_rgb_small_odd.dcm': 'ok',
    'malformed/UN_sequence.dcm': 'ok',
    'malformed/badVR.dcm': 'ok',
    'malformed/bad_sequence.dcm': 'ok',
    'malformed/emri_small_jpeg_2k_lossless_too_short.dcm': 'truncated',
    'malformed/meta_missing_tsyntax.dcm': 'no-transfer-syntax',
    'malformed/no_meta.dcm': 'not-dicom',
    'malformed/priv_SQ.dcm': 'ok',
    'malformed/rtplan_truncated.dcm': 'truncated',
    // Bare data sets with neither preamble nor File Meta Information: not PS3.10 files.
    'cr-dx/CR-MONO1-10-chest.dcm': 'not-dicom',
    'sr-pdf-seg/rtstruct.dcm': 'not-dicom',
  };

  it('finds the corpus', () => {
    expect(files.length).toBeGreaterThan(250);
  });

  it('scans every sample or fails with the expected Part10Error code', () => {
    const got: Record<string, string> = {};
    for (const f of files) got[f] = outcome(() => scanPart10(readSample(f)));
    for (const f of files) expect([f, got[f]]).toEqual([f, EXPECTED[f] ?? 'ok']);
  });

  it('gives identical results for any chunking (random sizes for all, 1-byte chunks for small files)', () => {
    let n = 0;
    for (const f of files) {
      if ((EXPECTED[f] ?? 'ok') !== 'ok') continue;
      const bytes = readSample(f);
      const whole = scanPart10(bytes);
      const rand = rng(n++);
      expect(scanInChunks(bytes, () => 1 + Math.floor(rand() * 9000))).toEqual(whole);
      if (bytes.length <= 64 * 1024) expect(scanInChunks(bytes, () => 1)).toEqual(whole);
    }
  });

  it('gives identical results with 1-byte chunks for deflated, big endian and multi-frame encapsulated files', () => {
    for (const f of [
      'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm',
      'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm',
      'us-multiframe/examples_ybr_color.dcm',
    ]) {
      const bytes = readSample(f);
      expect(scanInChunks(bytes, () => 1)).toEqual(scanPart10(bytes));
    }
  });

  it('fails the same way whatever the chunking for malformed files', () => {
    for (const f of files.filter((x) => x.startsWith('malformed/'))) {
      const bytes = readSample(f);
      expect([f, outcome(() => scanInChunks(bytes, () => 3))]).toEqual([f, outcome(() => scanPart10(bytes))]);
    }
  });

  it('never throws anything but Part10Error on corrupted or truncated input (fuzz)', () => {
    const rand = rng(2024);
    const seeds = [
      'mr/MR_small.dcm',
      'transfer-syntaxes/MR_small_implicit.dcm',
      'transfer-syntaxes/MR_small_bigendian.dcm',
      'transfer-syntaxes/SC_rgb_rle_2frame.dcm',
      'malformed/UN_sequence.dcm',
      'charsets/chrSQEncoding.dcm',
      'transfer-syntaxes/image_dfl.dcm',
    ].map(readSample);
    for (let k = 0; k < 600; k++) {
      const src = seeds[k % seeds.length];
      const bytes = src.slice(0, Math.floor(src.length * (0.2 + 0.8 * rand())) + 1);
      const flips = 1 + Math.floor(rand() * 8);
      for (let j = 0; j < flips; j++) {
        const at = 132 + Math.floor(rand() * Math.min(bytes.length - 132, 3000));
        if (at >= 132 && at < bytes.length) bytes[at] = Math.floor(rand() * 256);
      }
      outcome(() => scanPart10(bytes)); // rethrows anything that is not a Part10Error
    }
  });

  it('does not retain pixel data', () => {
    const r = scanPart10(readSample('cr-dx/RG1_decompressed_explicitLE.dcm'));
    const px = findElement(r.dataset, '7FE00010')!;
    expect(px.length).toBeGreaterThan(7_000_000);
    expect(px.value).toBeUndefined();
  });
});
