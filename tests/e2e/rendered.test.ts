/**
 * WADO-RS rendered resources and thumbnails (PS3.18 10.4.1.1.3-4): PNG and JPEG of known samples have
 * the grey levels of the stored pixels after modality LUT and VOI (the file's window, or the `window`
 * parameter), MONOCHROME1 is inverted, colour is kept, `viewport` sizes the image, and study/series
 * resources answer with a representative image or every image.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import * as dcmjsCodecsNs from 'dcmjs-codecs';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, stow, type TestServer } from '../helpers/server';
import { readSample, SAMPLES, SAMPLES_MISSING, samplesPresent } from '../samples';
import { splitMultipart } from './dicomweb';

type Lib = typeof import('dcmjs-codecs');
const codecs = ((dcmjsCodecsNs as unknown as { default?: Lib }).default ?? dcmjsCodecsNs) as Lib;

const CT_JLS =
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm';
const CT_NATIVE =
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm';
const DX_MONO1 = 'cr-dx/dx_image.dcm';
const RGB_RLE = 'transfer-syntaxes/SC_rgb_rle_2frame.dcm';
const RGB_NATIVE_LIKE = 'transfer-syntaxes/SC_rgb_rle_2frame.dcm';

interface Img {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/** Test-side PNG reader: 8-bit grey or RGB, no interlace, any filter. */
function readPng(b: Buffer): Img {
  expect(b.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
  let pos = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (pos < b.length) {
    const len = b.readUInt32BE(pos);
    const type = b.subarray(pos + 4, pos + 8).toString('latin1');
    const data = b.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect(data[8]).toBe(8);
      channels = data[9] === 0 ? 1 : data[9] === 2 ? 3 : 0;
      expect(data[12]).toBe(0);
    } else if (type === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? out[y * stride + x - channels] : 0;
      const up = y > 0 ? out[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? out[(y - 1) * stride + x - channels] : 0;
      let v = row[x];
      if (f === 1) v += a;
      else if (f === 2) v += up;
      else if (f === 3) v += (a + up) >> 1;
      else if (f === 4) {
        const p = a + up - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - up);
        const pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? up : c;
      }
      out[y * stride + x] = v & 0xff;
    }
  }
  return { width, height, channels, data: out };
}

/** Test-side JPEG reader (libjpeg-turbo of dcmjs-codecs, on this thread). */
function readJpeg(b: Buffer, width: number, height: number, channels: number): Img {
  expect(b.subarray(0, 2).toString('hex')).toBe('ffd8');
  const ctx = new codecs.Context({
    width,
    height,
    bitsAllocated: 8,
    bitsStored: 8,
    samplesPerPixel: channels,
    pixelRepresentation: 0,
    planarConfiguration: 0,
    photometricInterpretation: channels === 1 ? 'MONOCHROME2' : 'YBR_FULL',
    encodedBuffer: new Uint8Array(b),
  });
  const out = codecs.NativeCodecs.decodeJpeg(ctx, { convertColorspaceToRgb: channels === 3 });
  return { width, height, channels, data: out.getDecodedBuffer() as Uint8Array };
}

/** Expected grey levels: stored values (from the uncompressed copy) through rescale and a linear VOI. */
function expectedGrey(file: string, window?: [number, number]): Img {
  const bytes = readSample(file);
  const ds = dicomParser.parseDicom(bytes);
  const rows = ds.uint16('x00280010') as number;
  const cols = ds.uint16('x00280011') as number;
  const bits = ds.uint16('x00280100') as number;
  const signed = ds.uint16('x00280103') === 1;
  const slope = Number(ds.string('x00281053') ?? 1);
  const intercept = Number(ds.string('x00281052') ?? 0);
  const [c, w] = window ?? [Number(ds.string('x00281050', 0)), Number(ds.string('x00281051', 0))];
  const mono1 = ds.string('x00280004') === 'MONOCHROME1';
  const px = ds.elements.x7fe00010;
  const view = new DataView(bytes.buffer, bytes.byteOffset + px.dataOffset, px.length);
  const out = new Uint8Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) {
    const raw =
      bits === 16 ? (signed ? view.getInt16(i * 2, true) : view.getUint16(i * 2, true)) : view.getUint8(i);
    const x = raw * slope + intercept;
    let y: number;
    if (x <= c - 0.5 - (w - 1) / 2) y = 0;
    else if (x > c - 0.5 + (w - 1) / 2) y = 255;
    else y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255;
    const g = Math.round(y);
    out[i] = mono1 ? 255 - g : g;
  }
  return { width: cols, height: rows, channels: 1, data: out };
}

function diff(a: Img, b: Img): { max: number; mean: number } {
  expect([a.width, a.height, a.channels]).toEqual([b.width, b.height, b.channels]);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    sum += d;
    if (d > max) max = d;
  }
  return { max, mean: sum / a.data.length };
}

function uidsOf(file: string) {
  const ds = dicomParser.parseDicom(readSample(file));
  return {
    study: ds.string('x0020000d') as string,
    series: ds.string('x0020000e') as string,
    sop: ds.string('x00080018') as string,
  };
}

async function get(url: string, accept?: string) {
  const res = await fetch(url, { headers: accept ? { Accept: accept } : {} });
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    body: Buffer.from(await res.arrayBuffer()),
  };
}

if (!samplesPresent) console.warn(SAMPLES_MISSING);

describe.skipIf(!samplesPresent)('WADO-RS rendered and thumbnail', () => {
  let server: TestServer;
  const inst = (file: string) => {
    const u = uidsOf(file);
    return `${server.dicomweb}/studies/${u.study}/series/${u.series}/instances/${u.sop}`;
  };
  beforeAll(async () => {
    server = await startServer();
    await codecs.NativeCodecs.initializeAsync();
    const r = await stow(server.baseUrl, [readSample(CT_JLS), readSample(DX_MONO1), readSample(RGB_RLE)]);
    expect(r.status).toBe(200);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('renders a compressed CT (JPEG-LS) as PNG with the grey levels of its own window', async () => {
    const r = await get(`${inst(CT_JLS)}/rendered`, 'image/png');
    expect(r.status, r.body.toString()).toBe(200);
    expect(r.type).toBe('image/png');
    const d = diff(readPng(r.body), expectedGrey(CT_NATIVE));
    expect(d.max).toBeLessThanOrEqual(1);
  });

  it('applies the window parameter, and JPEG output is within a small tolerance', async () => {
    const png = await get(`${inst(CT_JLS)}/rendered?window=300,1500,linear`, 'image/png');
    expect(png.status, png.body.toString()).toBe(200);
    const expected = expectedGrey(CT_NATIVE, [300, 1500]);
    expect(diff(readPng(png.body), expected).max).toBeLessThanOrEqual(1);
    const jpeg = await get(`${inst(CT_JLS)}/rendered?window=300,1500&quality=95`, 'image/jpeg');
    expect(jpeg.status).toBe(200);
    expect(jpeg.type).toBe('image/jpeg');
    const d = diff(readJpeg(jpeg.body, 512, 512, 1), expected);
    expect(d.mean, `mean ${d.mean} max ${d.max}`).toBeLessThanOrEqual(1.5);
    // Default Accept (*/*): JPEG.
    expect((await get(`${inst(CT_JLS)}/rendered`)).type).toBe('image/jpeg');
  });

  it('inverts MONOCHROME1 and keeps colour (RGB RLE, second frame)', async () => {
    const mono1 = await get(`${inst(DX_MONO1)}/rendered`, 'image/png');
    expect(mono1.status).toBe(200);
    expect(diff(readPng(mono1.body), expectedGrey(DX_MONO1)).max).toBeLessThanOrEqual(1);

    const rgb = await get(`${inst(RGB_RLE)}/frames/2/rendered`, 'image/png');
    expect(rgb.status, rgb.body.toString()).toBe(200);
    const img = readPng(rgb.body);
    expect(img.channels).toBe(3);
    // The frame itself, decoded by the server to native RGB (checked against dcmdrle in transcode.test.ts).
    const raw = await fetch(`${inst(RGB_NATIVE_LIKE)}/frames/2`, {
      headers: { Accept: 'multipart/related; type="application/octet-stream"' },
    });
    const parts = splitMultipart(Buffer.from(await raw.arrayBuffer()), raw.headers.get('content-type') ?? '');
    expect(Buffer.compare(Buffer.from(img.data), parts[0].body)).toBe(0);
  });

  it('sizes images to the viewport and makes thumbnails of instances, series and studies', async () => {
    const vp = await get(`${inst(CT_JLS)}/rendered?viewport=64,32`, 'image/png');
    expect(vp.status).toBe(200);
    const small = readPng(vp.body);
    expect([small.width, small.height]).toEqual([32, 32]);
    const t = await get(`${inst(DX_MONO1)}/thumbnail`, 'image/png');
    expect(t.status).toBe(200);
    const thumb = readPng(t.body);
    expect(Math.max(thumb.width, thumb.height)).toBe(128);
    const u = uidsOf(CT_JLS);
    for (const url of [
      `${server.dicomweb}/studies/${u.study}/thumbnail`,
      `${server.dicomweb}/studies/${u.study}/series/${u.series}/thumbnail`,
      `${inst(CT_JLS)}/frames/1/thumbnail`,
    ]) {
      const r = await get(url);
      expect(r.status, url).toBe(200);
      expect(r.type).toBe('image/jpeg');
      expect(r.body.subarray(0, 2).toString('hex')).toBe('ffd8');
    }
    // Revalidated, not re-rendered: the same thumbnail asked with its ETag is 304 without a body; other
    // parameters, another tag.
    const study = `${server.dicomweb}/studies/${u.study}/thumbnail`;
    const tagged = await fetch(study);
    const etag = tagged.headers.get('etag') ?? '';
    expect(
      Buffer.from(await tagged.arrayBuffer())
        .subarray(0, 2)
        .toString('hex'),
    ).toBe('ffd8');
    expect(tagged.headers.get('cache-control')).toBe('private, no-cache');
    const again = await fetch(study, { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
    expect((await again.arrayBuffer()).byteLength).toBe(0);
    const larger = await fetch(`${study}?viewport=256,256`, { headers: { 'If-None-Match': etag } });
    expect(larger.status).toBe(200);
    expect(larger.headers.get('etag')).not.toBe(etag);
    expect(
      Buffer.from(await larger.arrayBuffer())
        .subarray(0, 2)
        .toString('hex'),
    ).toBe('ffd8');
    const series = await get(
      `${server.dicomweb}/studies/${u.study}/series/${u.series}/rendered`,
      'multipart/related; type="image/png"',
    );
    expect(series.status).toBe(200);
    expect(series.type).toMatch(/^multipart\/related; type="image\/png"/);
    expect(splitMultipart(series.body, series.type).length).toBe(1);
  });

  it('refuses bad parameters (400) and media types it cannot make (406)', async () => {
    for (const q of [
      'window=40',
      'window=40,0',
      'window=40,400,cubic',
      'quality=0',
      'quality=101',
      'viewport=0,10',
      'viewport=a,b',
    ]) {
      const r = await get(`${inst(CT_JLS)}/rendered?${q}`);
      expect(r.status, q).toBe(400);
    }
    expect((await get(`${inst(CT_JLS)}/rendered`, 'image/gif')).status).toBe(406);
    expect((await get(`${inst(CT_JLS)}/frames/2/rendered`)).status).toBe(404);
  });

  it('renders an Encapsulated PDF as the document itself (a report a referring doctor can read)', async () => {
    const PDF = 'sr-pdf-seg/encapsulated_pdf_HelloWorld.dcm';
    const bytes = readSample(PDF);
    expect((await stow(server.baseUrl, [bytes])).status).toBe(200);
    const ds = dicomParser.parseDicom(bytes);
    const el = ds.elements.x00420011;
    const length = ds.uint32('x00420015') ?? el.length;
    const expected = Buffer.from(bytes.subarray(el.dataOffset, el.dataOffset + Math.min(length, el.length)));
    expect(expected.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    for (const [query, accept] of [
      ['?accept=application/pdf', undefined],
      ['', 'application/pdf'],
      ['', undefined],
    ] as const) {
      const r = await get(`${inst(PDF)}/rendered${query}`, accept);
      expect(r.status, query || accept || 'no Accept').toBe(200);
      expect(r.type).toBe('application/pdf');
      expect(Buffer.compare(r.body, expected)).toBe(0);
    }
    expect((await get(`${inst(PDF)}/rendered`, 'image/jpeg')).status).toBe(406);

    // A document above the inline size (1 KiB) is read from the object (here wrapped by dcmtk's pdf2dcm).
    const dir = mkdtempSync(path.join(tmpdir(), 'pacs-pdf-'));
    try {
      const big = Buffer.concat([expected, Buffer.from(`%${'x'.repeat(20_000)}\n`)]);
      writeFileSync(path.join(dir, 'big.pdf'), big);
      execFileSync('pdf2dcm', [path.join(dir, 'big.pdf'), path.join(dir, 'big.dcm')], { stdio: 'pipe' });
      const r = await stow(server.baseUrl, [readFileSync(path.join(dir, 'big.dcm'))]);
      expect(r.status).toBe(200);
      const url = String(r.json['00081199']?.Value?.[0]?.['00081190']?.Value?.[0]);
      const got = await get(`${url}/rendered?accept=application/pdf`);
      expect(got.status).toBe(200);
      expect(Buffer.compare(got.body, big)).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('renders PALETTE COLOR through its lookup tables like dcmtk (dcm2pnm)', async () => {
    const file = 'us-multiframe/OBXXXX1A_rle_2frame.dcm';
    expect((await stow(server.baseUrl, [readSample(file)])).status).toBe(200);
    const r = await get(`${inst(file)}/frames/2/rendered`, 'image/png');
    expect(r.status, r.body.toString()).toBe(200);
    const img = readPng(r.body);
    expect(img.channels).toBe(3);
    const dir = mkdtempSync(path.join(tmpdir(), 'pacs-rendered-'));
    try {
      const ppm = path.join(dir, 'frame2.ppm');
      execFileSync('dcm2pnm', ['--frame', '2', path.join(SAMPLES, file), ppm], { stdio: 'pipe' });
      const b = readFileSync(ppm);
      const header = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(b.subarray(0, 40).toString('latin1'));
      expect(header).not.toBeNull();
      const ref: Img = {
        width: Number(header![1]),
        height: Number(header![2]),
        channels: 3,
        data: b.subarray(header![0].length),
      };
      expect(diff(img, ref).max).toBeLessThanOrEqual(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers a corrupt compressed frame with an error naming it, not a blank image', async () => {
    const file = 'malformed/JPEG2000-embedded-sequence-delimiter.dcm';
    expect((await stow(server.baseUrl, [readSample(file)])).status).toBe(200);
    const r = await get(`${inst(file)}/rendered`, 'image/png');
    expect(r.status).toBe(500);
    expect(JSON.parse(r.body.toString()).message).toMatch(/frame 1 of instance .* cannot be rendered/);
    expect((await get(`${inst(CT_JLS)}/thumbnail`)).status).toBe(200);
  });

  it.each([
    'us-multiframe/US-YBR_FULL_422-EVRLE.dcm',
    'us-multiframe/philips-us-jpeg-ybr.dcm',
    'transfer-syntaxes/SC_rgb_jpeg_dcmtk.dcm',
  ])('renders %s (YBR colour) like dcmtk (dcmj2pnm)', async (file) => {
    expect((await stow(server.baseUrl, [readSample(file)])).status).toBe(200);
    const r = await get(`${inst(file)}/rendered`, 'image/png');
    expect(r.status, r.body.toString()).toBe(200);
    const img = readPng(r.body);
    const dir = mkdtempSync(path.join(tmpdir(), 'pacs-rendered-'));
    try {
      const ppm = path.join(dir, 'frame.ppm');
      execFileSync('dcmj2pnm', ['--frame', '1', path.join(SAMPLES, file), ppm], { stdio: 'pipe' });
      const b = readFileSync(ppm);
      const header = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(b.subarray(0, 40).toString('latin1'));
      const ref: Img = {
        width: Number(header![1]),
        height: Number(header![2]),
        channels: 3,
        data: b.subarray(header![0].length),
      };
      const d = diff(img, ref);
      expect(d.mean, `mean ${d.mean} max ${d.max}`).toBeLessThanOrEqual(0.5);
      expect(d.max, `mean ${d.mean} max ${d.max}`).toBeLessThanOrEqual(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('makes a series or study thumbnail from another image when the representative one cannot be decoded', async () => {
    // NEMA NM1: the corrupt JPEG 2000 image is InstanceNumber 3; NM1_JPLL (JPEG lossless) is number 4 of
    // the same series. With these two, the series' middle image is the corrupt one.
    const corrupt = 'malformed/JPEG2000-embedded-sequence-delimiter.dcm';
    const good = 'nm-pet/NM1_JPLL.dcm';
    expect((await stow(server.baseUrl, [readSample(corrupt), readSample(good)])).status).toBe(200);
    expect((await get(`${inst(corrupt)}/thumbnail`, 'image/png')).status).toBe(500);
    const expected = await get(`${inst(good)}/thumbnail`, 'image/png');
    expect(expected.status).toBe(200);
    const u = uidsOf(corrupt);
    for (const url of [
      `${server.dicomweb}/studies/${u.study}/series/${u.series}/thumbnail`,
      `${server.dicomweb}/studies/${u.study}/thumbnail`,
    ]) {
      const r = await get(url, 'image/png');
      expect(r.status, url).toBe(200);
      expect(Buffer.compare(r.body, expected.body), url).toBe(0);
    }
  });

  it('applies a Modality LUT Sequence and a window like dcmtk (dcm2pnm +Ww)', async () => {
    const file = 'cr-dx/mlut_18.dcm';
    expect((await stow(server.baseUrl, [readSample(file)])).status).toBe(200);
    const dir = mkdtempSync(path.join(tmpdir(), 'pacs-rendered-'));
    try {
      for (const [c, w] of [
        [32768, 65536],
        [20000, 8000],
      ]) {
        const r = await get(`${inst(file)}/rendered?window=${c},${w}`, 'image/png');
        expect(r.status, r.body.toString()).toBe(200);
        const img = readPng(r.body);
        const pgm = path.join(dir, `w${c}.pgm`);
        execFileSync('dcm2pnm', ['+Ww', String(c), String(w), path.join(SAMPLES, file), pgm], {
          stdio: 'pipe',
        });
        const b = readFileSync(pgm);
        const header = /^P5\s+(\d+)\s+(\d+)\s+255\s/.exec(b.subarray(0, 40).toString('latin1'));
        const ref: Img = {
          width: Number(header![1]),
          height: Number(header![2]),
          channels: 1,
          data: b.subarray(header![0].length),
        };
        const d = diff(img, ref);
        expect(d.max, `window ${c},${w}: mean ${d.mean} max ${d.max}`).toBeLessThanOrEqual(1);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
