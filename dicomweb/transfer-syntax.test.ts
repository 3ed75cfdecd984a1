import { describe, expect, it } from 'vitest';
import { parseAccept } from './media-types';
import { type ImageInfo, negotiateFrameSyntax, transcodeRefusal } from './transfer-syntax';

const CT: ImageInfo = {
  Rows: 512,
  Columns: 512,
  BitsAllocated: 16,
  BitsStored: 16,
  PixelRepresentation: 1,
  SamplesPerPixel: 1,
  PhotometricInterpretation: 'MONOCHROME2',
  PlanarConfiguration: 0,
  NumberOfFrames: 1,
  RescaleSlope: 1,
  RescaleIntercept: -1024,
  floatPixels: false,
};
const EVRLE = '1.2.840.10008.1.2.1';
const JLS = '1.2.840.10008.1.2.4.80';
const J2K = '1.2.840.10008.1.2.4.90';
const J2K_LOSSY = '1.2.840.10008.1.2.4.91';
const BASELINE = '1.2.840.10008.1.2.4.50';

const negotiate = (accept: string, stored: string, image: ImageInfo | null | undefined = CT) =>
  negotiateFrameSyntax(parseAccept(accept), stored, image);

describe('negotiateFrameSyntax', () => {
  it('decodes to Explicit VR Little Endian for application/octet-stream without a syntax', () => {
    expect(negotiate('multipart/related; type="application/octet-stream"', JLS)).toEqual({
      multipart: true,
      partType: `application/octet-stream; transfer-syntax=${EVRLE}`,
      syntax: EVRLE,
      transcode: true,
    });
  });

  it('keeps the stored syntax for transfer-syntax=*, the stored UID, a wildcard or its own image type', () => {
    for (const a of [
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
      `multipart/related; type="image/jls"; transfer-syntax=${JLS}`,
      '*/*',
      'multipart/related; type="image/jls"',
    ]) {
      const r = negotiate(a, JLS);
      expect(r.syntax, a).toBe(JLS);
      expect(r.transcode, a).toBe(false);
    }
  });

  it('encodes native pixels into the asked syntax, lossless by default for an image type', () => {
    expect(negotiate('multipart/related; type="image/jp2"', EVRLE).syntax).toBe(J2K);
    expect(negotiate('multipart/related; type="image/jpeg"', EVRLE).syntax).toBe('1.2.840.10008.1.2.4.70');
    expect(
      negotiate(`multipart/related; type="image/jp2"; transfer-syntax=${J2K_LOSSY}`, EVRLE),
    ).toMatchObject({
      syntax: J2K_LOSSY,
      partType: `image/jp2; transfer-syntax=${J2K_LOSSY}`,
      transcode: true,
    });
  });

  it('asks for the image attributes only when a transcode is chosen', () => {
    expect(negotiate('multipart/related; type="application/octet-stream"', JLS, null).needsImage).toBe(true);
    expect(negotiate('*/*', JLS, null).needsImage).toBeUndefined();
  });

  it('takes the next acceptable type when the first is impossible, and 406 with every reason otherwise', () => {
    const r = negotiate(
      `multipart/related; type="image/jls"; transfer-syntax=${JLS}, multipart/related; type="application/octet-stream"`,
      J2K_LOSSY,
    );
    expect(r.syntax).toBe(EVRLE);
    expect(() => negotiate(`multipart/related; type="image/jls"; transfer-syntax=${JLS}`, J2K_LOSSY)).toThrow(
      /stored lossy.*cannot give back/,
    );
    expect(() =>
      negotiate(`multipart/related; type="image/jpeg"; transfer-syntax=${BASELINE}`, EVRLE),
    ).toThrow(/at most 8 bits/);
    expect(() => negotiate(`multipart/related; type="image/jpeg"; transfer-syntax=${J2K}`, EVRLE)).toThrow(
      /sent as image\/jp2/,
    );
  });
});

describe('negotiateFrameSyntax with a preferred syntax (an HTJ2K copy)', () => {
  const HTJ2K = '1.2.840.10008.1.2.4.201';
  const prefer = (accept: string, stored: string) =>
    negotiateFrameSyntax(parseAccept(accept), stored, null, { preferred: HTJ2K });

  it('answers transfer-syntax=* with the preferred syntax when the media type allows it', () => {
    expect(prefer('application/octet-stream; transfer-syntax=*', EVRLE)).toEqual({
      multipart: false,
      partType: `application/octet-stream; transfer-syntax=${HTJ2K}`,
      syntax: HTJ2K,
      transcode: true,
      preferred: true,
    });
    expect(prefer('multipart/related; type="image/jphc"; transfer-syntax=*', EVRLE).partType).toBe(
      `image/jphc; transfer-syntax=${HTJ2K}`,
    );
  });

  it('keeps the stored syntax otherwise: an explicit syntax, a wildcard, another image type', () => {
    expect(prefer('multipart/related; type="application/octet-stream"', EVRLE)).toMatchObject({
      syntax: EVRLE,
      transcode: false,
    });
    expect(prefer('*/*', EVRLE).syntax).toBe(EVRLE);
    expect(prefer('multipart/related; type="image/jls"; transfer-syntax=*', JLS)).toMatchObject({
      syntax: JLS,
      transcode: false,
    });
  });
});

describe('transcodeRefusal', () => {
  it('allows decoding anything decodable, and refuses what no codec here does', () => {
    expect(transcodeRefusal(J2K_LOSSY, EVRLE, CT)).toBeUndefined();
    expect(transcodeRefusal('1.2.840.10008.1.2.4.100', EVRLE, CT)).toMatch(/cannot be decoded/);
    // JPEG Extended: from 8-bit samples only (the encoder's limit, said in the reason).
    expect(transcodeRefusal(EVRLE, '1.2.840.10008.1.2.4.51', CT)).toMatch(
      /at most 8 bits per sample; this image has 16 \(.*8-bit samples only/,
    );
    expect(
      transcodeRefusal(EVRLE, '1.2.840.10008.1.2.4.51', { ...CT, BitsAllocated: 8, BitsStored: 8 }),
    ).toBeUndefined();
    expect(transcodeRefusal(JLS, '1.2.840.10008.1.2.4.51', { ...CT, BitsStored: 12 })).toMatch(/at most 8/);
    expect(transcodeRefusal(EVRLE, JLS, { ...CT, floatPixels: true })).toMatch(/float/);
    expect(transcodeRefusal(EVRLE, BASELINE, { ...CT, BitsAllocated: 8, BitsStored: 8 })).toBeUndefined();
  });
});
