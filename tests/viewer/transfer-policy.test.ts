/**
 * The viewer's transfer policy (viewer/src/lib/transfer-policy.ts): which syntaxes it asks for by
 * stored syntax and link, that the Accept header it builds is read by the archive's own negotiation
 * as intended, the link estimator, and the frame work-arounds of frame-fixes.ts.
 */
import { describe, expect, it } from 'vitest';
import { jpegLsPlanar } from '../../dicomweb/codestream';
import { parseAccept } from '../../dicomweb/media-types';
import { type ImageInfo, negotiateFrameSyntax } from '../../dicomweb/transfer-syntax';
import { frameFromResponse } from '../../viewer/src/lib/frame-bytes';
import { expandYbrFull422, ybrFull422Length } from '../../viewer/src/lib/frame-fixes';
import {
  AS_STORED,
  effectiveLink,
  frameAccept,
  hintedLink,
  isLossySyntax,
  LinkEstimator,
  preferredSyntaxes,
  resourceSample,
} from '../../viewer/src/lib/transfer-policy';

const EVRLE = '1.2.840.10008.1.2.1';
const JLS = '1.2.840.10008.1.2.4.80';
const HTJ2K = '1.2.840.10008.1.2.4.201';
const NATIVE = ['1.2.840.10008.1.2', EVRLE, '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2'];
const COMPRESSED = [
  '1.2.840.10008.1.2.4.50',
  '1.2.840.10008.1.2.4.51',
  '1.2.840.10008.1.2.4.53',
  '1.2.840.10008.1.2.4.55',
  '1.2.840.10008.1.2.4.57',
  '1.2.840.10008.1.2.4.70',
  JLS,
  '1.2.840.10008.1.2.4.81',
  '1.2.840.10008.1.2.4.90',
  '1.2.840.10008.1.2.4.91',
  '1.2.840.10008.1.2.4.92',
  HTJ2K,
  '1.2.840.10008.1.2.4.202',
  '1.2.840.10008.1.2.4.203',
  '1.2.840.10008.1.2.5',
  '1.2.840.10008.1.2.4.102',
];

describe('transfer policy', () => {
  it('asks for frames as stored on a fast link, except what the browser decodes wrongly', () => {
    for (const ts of [...NATIVE, '1.2.840.10008.1.2.5', JLS, '1.2.840.10008.1.2.4.90', HTJ2K, undefined])
      expect(preferredSyntaxes(ts, 'fast')).toEqual([AS_STORED]);
    expect(preferredSyntaxes('1.2.840.10008.1.2.4.50', 'fast', 'YBR_FULL_422')).toEqual([AS_STORED]);
    // 12-bit lossy JPEG, RGB JPEG baseline and what the browser has no decoder for: decoded by the archive.
    for (const ts of ['1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.53', '1.2.840.10008.1.2.4.55'])
      expect(preferredSyntaxes(ts, 'fast')).toEqual([EVRLE, AS_STORED]);
    expect(preferredSyntaxes('1.2.840.10008.1.2.4.50', 'fast', 'RGB')).toEqual([EVRLE, AS_STORED]);
    expect(preferredSyntaxes('1.2.840.10008.1.2.4.102', 'fast')).toEqual([EVRLE, AS_STORED]);
  });

  it('asks for uncompressed and RLE frames in JPEG-LS, then HTJ2K, lossless on a slow link', () => {
    for (const ts of [...NATIVE, '1.2.840.10008.1.2.5', undefined])
      expect(preferredSyntaxes(ts, 'slow')).toEqual([JLS, HTJ2K, AS_STORED]);
    for (const ts of [
      JLS,
      '1.2.840.10008.1.2.4.90',
      '1.2.840.10008.1.2.4.91',
      HTJ2K,
      '1.2.840.10008.1.2.4.70',
    ])
      expect(preferredSyntaxes(ts, 'slow')).toEqual([AS_STORED]);
    // Lossless but not decodable here: re-encoded losslessly. Lossy: never "upgraded" to a lossless syntax.
    expect(preferredSyntaxes('1.2.840.10008.1.2.4.92', 'slow')).toEqual([JLS, HTJ2K, EVRLE, AS_STORED]);
    expect(preferredSyntaxes('1.2.840.10008.1.2.4.51', 'slow')).toEqual([EVRLE, AS_STORED]);
  });

  it('never asks for a lossy syntax', () => {
    for (const ts of [...NATIVE, ...COMPRESSED, undefined])
      for (const link of ['fast', 'slow'] as const)
        for (const pi of ['MONOCHROME2', 'RGB', 'YBR_FULL_422'])
          for (const s of preferredSyntaxes(ts, link, pi))
            if (s !== AS_STORED) expect(isLossySyntax(s), s).toBe(false);
  });

  it('the settings: as stored is fast, compressed lossless is slow, auto is what was measured', () => {
    expect(effectiveLink('original', 'slow')).toBe('fast');
    expect(effectiveLink('lossless', 'fast')).toBe('slow');
    expect(effectiveLink('auto', 'slow')).toBe('slow');
    expect(effectiveLink('auto', 'fast')).toBe('fast');
  });
});

describe('the Accept header, as the archive negotiates it', () => {
  const image = (over: Partial<ImageInfo> = {}): ImageInfo => ({
    Rows: 512,
    Columns: 512,
    BitsAllocated: 16,
    BitsStored: 12,
    PixelRepresentation: 0,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    PlanarConfiguration: 0,
    NumberOfFrames: 1,
    RescaleSlope: 1,
    RescaleIntercept: 0,
    floatPixels: false,
    ...over,
  });

  it('lists single-part bodies first, then multipart/related, best first', () => {
    const ranges = parseAccept(frameAccept(EVRLE, 'slow'));
    expect(ranges.map((r) => [r.type, r.params.type, r.params['transfer-syntax']])).toEqual([
      ['application/octet-stream', undefined, JLS],
      ['application/octet-stream', undefined, HTJ2K],
      ['application/octet-stream', undefined, '*'],
      ['multipart/related', 'image/jls', JLS],
      ['multipart/related', 'image/jphc', HTJ2K],
      ['multipart/related', 'application/octet-stream', '*'],
    ]);
  });

  it('gets a native CT frame in JPEG-LS on a slow link, as stored on a fast one', () => {
    expect(negotiateFrameSyntax(parseAccept(frameAccept(EVRLE, 'slow')), EVRLE, image())).toMatchObject({
      multipart: false,
      syntax: JLS,
      transcode: true,
      partType: `application/octet-stream; transfer-syntax=${JLS}`,
    });
    expect(negotiateFrameSyntax(parseAccept(frameAccept(EVRLE, 'fast')), EVRLE, image())).toMatchObject({
      multipart: false,
      syntax: EVRLE,
      transcode: false,
    });
    const j2k = '1.2.840.10008.1.2.4.90';
    expect(negotiateFrameSyntax(parseAccept(frameAccept(j2k, 'slow')), j2k, image())).toMatchObject({
      syntax: j2k,
      transcode: false,
    });
  });

  it('falls back to the stored frame when the archive cannot re-encode it', () => {
    const ybr = image({
      SamplesPerPixel: 3,
      BitsAllocated: 8,
      BitsStored: 8,
      PhotometricInterpretation: 'YBR_FULL_422',
    });
    expect(negotiateFrameSyntax(parseAccept(frameAccept(EVRLE, 'slow')), EVRLE, ybr)).toMatchObject({
      syntax: EVRLE,
      transcode: false,
    });
    const lossy12 = '1.2.840.10008.1.2.4.51';
    expect(negotiateFrameSyntax(parseAccept(frameAccept(lossy12, 'slow')), lossy12, image())).toMatchObject({
      syntax: EVRLE,
      transcode: true,
    });
  });

  it('reads the syntax of a frame body from its media type when no transfer-syntax is named', () => {
    const body = new Uint8Array([1, 2, 3, 4]);
    expect(frameFromResponse('image/jls', body)?.transferSyntaxUid).toBe(JLS);
    expect(frameFromResponse('image/jphc', body)?.transferSyntaxUid).toBe(HTJ2K);
    expect(frameFromResponse('image/dicom-rle', body)?.transferSyntaxUid).toBe('1.2.840.10008.1.2.5');
    expect(
      frameFromResponse(`image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202`, body)?.transferSyntaxUid,
    ).toBe('1.2.840.10008.1.2.4.202');
  });
});

describe('link estimator', () => {
  const KB = 1024;
  /** n bodies of `bytes` received one after another at `mbps`, starting at t (ms). */
  function feed(e: LinkEstimator, n: number, bytes: number, mbps: number, t = 0): number {
    const ms = (bytes * 8) / 1000 / mbps;
    for (let i = 0; i < n; i++) e.record({ bytes, start: t + i * ms, end: t + (i + 1) * ms });
    return t + n * ms;
  }

  it('says nothing before 256 kB were measured, and ignores small bodies', () => {
    const e = new LinkEstimator();
    feed(e, 100, 8 * KB, 5);
    expect(e.mbps()).toBeUndefined();
    feed(e, 1, 200 * KB, 5);
    expect(e.linkClass()).toBeUndefined();
    feed(e, 1, 100 * KB, 5, 1000);
    expect(e.linkClass()).toBe('slow');
  });

  it('measures the link, not each of several parallel requests', () => {
    const e = new LinkEstimator();
    // Four 512 kB bodies arriving together over 42 ms: 400 Mbit/s, though each alone looks like 100.
    for (let i = 0; i < 4; i++) e.record({ bytes: 512 * KB, start: 0, end: 42 });
    expect(e.mbps()).toBeGreaterThan(390);
    expect(e.linkClass()).toBe('fast');
  });

  it('does not take the timing delays of a busy PC for a slow link on small frames', () => {
    // 18 kB MR slices over loopback, each timed 2-4 ms after it arrived (the viewer starting on 2
    // cores): counted as they were timed, that is under 50 Mbit/s, a slow link.
    const busy = new LinkEstimator();
    for (let i = 0; i < 24; i++) {
      const start = i * 10;
      busy.record({ bytes: 18 * KB, start, end: start + 2 + (i % 3) });
    }
    expect(busy.linkClass()).toBe('fast');
    expect(busy.mbps()).toBeGreaterThan(100);
    // The same slices over a 10 Mbit/s link (15 ms each, then the same delays): slow.
    const slow = new LinkEstimator();
    for (let i = 0; i < 24; i++) {
      const start = i * 20;
      slow.record({ bytes: 18 * KB, start, end: start + 15 + (i % 6) * 0.5 });
    }
    expect(slow.mbps()).toBeLessThan(15);
    expect(slow.linkClass()).toBe('slow');
  });

  it('slow under 50 Mbit/s, fast again only above 100 Mbit/s', () => {
    const e = new LinkEstimator();
    let t = feed(e, 4, 512 * KB, 10);
    expect(e.linkClass()).toBe('slow');
    t = feed(e, 24, 512 * KB, 80, t);
    expect(e.linkClass()).toBe('slow');
    feed(e, 24, 512 * KB, 1000, t);
    expect(e.linkClass()).toBe('fast');
  });

  it('counts bodies that crossed the link, not cached ones', () => {
    const entry = {
      initiatorType: 'fetch',
      encodedBodySize: 500_000,
      transferSize: 500_300,
      responseStart: 10,
      responseEnd: 60,
    };
    expect(resourceSample(entry, 1000)).toEqual({ bytes: 500_300, start: 1010, end: 1060 });
    expect(resourceSample({ ...entry, transferSize: 0 }, 0)).toBeUndefined(); // from cache
    expect(resourceSample({ ...entry, transferSize: 300 }, 0)).toBeUndefined(); // revalidated (304)
    expect(resourceSample({ ...entry, initiatorType: 'script' }, 0)).toBeUndefined();
  });

  it("takes only save-data and a 2g/3g effective type from the browser's hints", () => {
    expect(hintedLink({ saveData: true, effectiveType: '4g' })).toBe('slow');
    expect(hintedLink({ effectiveType: '3g' })).toBe('slow');
    expect(hintedLink({ effectiveType: '4g', downlink: 1.35 })).toBeUndefined();
    expect(hintedLink(undefined)).toBeUndefined();
  });
});

describe('frame work-arounds', () => {
  it('expands native YBR_FULL_422 to YBR_FULL, odd widths too', () => {
    // 3×1: Y1 Y2 Cb Cr, then Y3 Cb Cr
    const data = Uint8Array.from([10, 20, 100, 200, 30, 110, 210]);
    expect(ybrFull422Length(1, 3)).toBe(7);
    expect(Array.from(expandYbrFull422(data, 1, 3))).toEqual([10, 100, 200, 20, 100, 200, 30, 110, 210]);
    expect(ybrFull422Length(555, 800)).toBe(555 * 800 * 2);
  });

  it('tells a JPEG-LS codestream whose components come in separate scans', () => {
    const sof = (nf: number) => [0xff, 0xf7, 0, 8 + 3 * nf, 8, 0, 1, 0, 1, nf, ...Array(3 * nf).fill(1)];
    const sos = (ns: number, ilv: number) => [
      0xff,
      0xda,
      0,
      6 + 2 * ns,
      ns,
      ...Array(2 * ns).fill(1),
      0,
      ilv,
      0,
    ];
    const stream = (...parts: number[][]) => Uint8Array.from([0xff, 0xd8, ...parts.flat()]);
    expect(jpegLsPlanar(stream(sof(3), sos(1, 0)))).toBe(true);
    expect(jpegLsPlanar(stream(sof(3), sos(3, 1)))).toBe(false);
    expect(jpegLsPlanar(stream(sof(1), sos(1, 0)))).toBe(false);
    expect(jpegLsPlanar(Uint8Array.from([0, 1, 2, 3]))).toBeUndefined();
  });
});
