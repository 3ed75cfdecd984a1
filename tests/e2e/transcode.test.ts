/**
 * WADO-RS retrieve of frames with transcoding (PS3.18 8.7.3): every compressed sample decoded to Explicit
 * VR Little Endian by the server (in its worker pool) gives the pixels of a reference decoder (dcmtk
 * dcmdjpeg, dcmdrle, dcmdjpls; GDCM gdcmconv for JPEG 2000): equal for lossless syntaxes, within a stated
 * tolerance for lossy ones. Lossless re-encodings (JPEG-LS, JPEG 2000, HTJ2K, RLE, JPEG lossless) decode
 * back to the same pixels; lossy ones stay within their bound; impossible pairs are 406 with a reason; a
 * corrupt frame is an error naming the frame, and the server goes on serving.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import dicomParser from 'dicom-parser';
import { parseDicom } from '../helpers/dicom-parse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageInfo } from '../../dicomweb/transfer-syntax';
import { transcoder } from '../../server/transcode/pool';
import {
  SAMPLES,
  SAMPLES_MISSING,
  samplesPresent,
  startServer,
  stow,
  type TestServer,
} from '../helpers/server';
import { requireTools } from '../helpers/tools';
import { type SampleObject, sampleObject } from '../samples';
import { getJson, getMultipart, type Json } from './dicomweb';

const EVRLE = '1.2.840.10008.1.2.1';
const LOSSY = new Set([
  '1.2.840.10008.1.2.4.50',
  '1.2.840.10008.1.2.4.51',
  '1.2.840.10008.1.2.4.53',
  '1.2.840.10008.1.2.4.55',
  '1.2.840.10008.1.2.4.81',
  '1.2.840.10008.1.2.4.91',
  '1.2.840.10008.1.2.4.203',
]);

/** The reference decoder of each compressed syntax (a command writing an uncompressed copy). */
function referenceTool(ts: string): string[] | undefined {
  if (ts === '1.2.840.10008.1.2.5') return ['dcmdrle'];
  if (ts === '1.2.840.10008.1.2.4.80' || ts === '1.2.840.10008.1.2.4.81') return ['dcmdjpls', '+px'];
  if (ts === '1.2.840.10008.1.2.4.90' || ts === '1.2.840.10008.1.2.4.91') return ['gdcmconv', '--raw'];
  if (/^1\.2\.840\.10008\.1\.2\.4\.(50|51|53|55|57|70)$/.test(ts)) return ['dcmdjpeg', '+px'];
  return undefined;
}

requireTools(['dcmdjpeg', 'dcmdrle', 'dcmdjpls', 'gdcmconv'], 'dcmtk, libgdcm-tools');

/** Pixel data of the reference decoder's uncompressed copy. */
function referencePixels(s: SampleObject, dir: string): Buffer {
  const tool = referenceTool(s.ts);
  if (!tool) throw new Error(`no reference decoder for ${s.ts}`);
  const out = path.join(dir, `${path.basename(s.file)}.raw.dcm`);
  execFileSync(tool[0], [...tool.slice(1), path.join(SAMPLES, s.file), out], { stdio: 'pipe' });
  const b = readFileSync(out);
  const ds = dicomParser.parseDicom(new Uint8Array(b));
  const px = ds.elements.x7fe00010;
  return b.subarray(px.dataOffset, px.dataOffset + px.length);
}

/** Largest and mean absolute difference of two sample arrays. */
function difference(
  a: Uint8Array,
  b: Uint8Array,
  bits: number,
  signed: boolean,
): { max: number; mean: number } {
  const read = (buf: Uint8Array) => {
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    return (i: number) =>
      bits === 16 ? (signed ? v.getInt16(i * 2, true) : v.getUint16(i * 2, true)) : buf[i];
  };
  const ra = read(a);
  const rb = read(b);
  const n = bits === 16 ? Math.min(a.length, b.length) >> 1 : Math.min(a.length, b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.abs(ra(i) - rb(i));
    sum += d;
    if (d > max) max = d;
  }
  return { max, mean: n ? sum / n : 0 };
}

/** Lossy samples against the reference decoder, in sample units: mean and largest absolute difference. */
const LOSSY_MEAN_TOLERANCE = 0.5;
const LOSSY_MAX_TOLERANCE = 2;

const COMPRESSED = [
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm',
  'transfer-syntaxes/CT0012.fragmented_no_bot_jpeg_baseline.51.dcm',
  'transfer-syntaxes/CT1_J2KR.dcm',
  'transfer-syntaxes/JPGExtended.dcm',
  'transfer-syntaxes/JPGLosslessP14SV1_1s_1f_8b.dcm',
  'transfer-syntaxes/MR_small_RLE.dcm',
  'transfer-syntaxes/SC_jpeg_no_color_transform.dcm',
  'transfer-syntaxes/SC_rgb_jpeg_dcmtk.dcm',
  'transfer-syntaxes/SC_rgb_rle_2frame.dcm',
  'cr-dx/RG1_J2KI.dcm',
  'cr-dx/RG3_J2KR.dcm',
  'mr/MR_jpeg-extended-51_orthanc.dcm',
  'nm-pet/NM1_JLSL.dcm',
  'nm-pet/NM1_JPLL.dcm',
  'us-multiframe/OBXXXX1A_rle_2frame.dcm',
  'us-multiframe/US1_J2KR.dcm',
  'us-multiframe/examples_ybr_color.dcm',
  'us-multiframe/philips-us-jpeg-ybr.dcm',
];

/** Lossless targets a lossless frame is re-encoded into, with the first bytes of their codestreams. */
const LOSSLESS_TARGETS: [string, string][] = [
  ['1.2.840.10008.1.2.4.80', 'ffd8fff7'],
  ['1.2.840.10008.1.2.4.90', 'ff4fff51'],
  ['1.2.840.10008.1.2.4.201', 'ff4fff51'],
  ['1.2.840.10008.1.2.5', ''],
  ['1.2.840.10008.1.2.4.70', 'ffd8'],
];

if (!samplesPresent) console.warn(SAMPLES_MISSING);

const frameUrl = (root: string, s: SampleObject, list: string) =>
  `${root}/studies/${s.study}/series/${s.series}/instances/${s.sop}/frames/${list}`;

async function framesIn(root: string, s: SampleObject, accept: string) {
  const list = Array.from({ length: s.frames }, (_, i) => i + 1).join(',');
  return getMultipart(frameUrl(root, s, list), accept);
}

describe.skipIf(!samplesPresent)('WADO-RS frames with transcoding', () => {
  let server: TestServer;
  let dir: string;
  beforeAll(async () => {
    server = await startServer({ env: { PACS_DUPLICATE_POLICY: 'overwrite' } });
    dir = mkdtempSync(path.join(tmpdir(), 'pacs-transcode-'));
  });
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.each(COMPRESSED)('%s: decoded to Explicit VR Little Endian like the reference decoder', async (file) => {
    const s = sampleObject(file);
    const stored = await stow(server.baseUrl, [s.bytes]);
    expect(stored.status).toBe(200);
    const ref = referencePixels(s, dir);
    // No transfer-syntax: application/octet-stream is Explicit VR Little Endian (decoded pixels).
    const res = await framesIn(server.dicomweb, s, 'multipart/related; type="application/octet-stream"');
    expect(res.status, res.text).toBe(200);
    expect(res.contentType).not.toMatch(/transfer-syntax=1\.2\.840\.10008\.1\.2\.4/);
    expect(res.parts.length).toBe(s.frames);
    for (const p of res.parts)
      expect(p.headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${EVRLE}`);
    const got = Buffer.concat(res.parts.map((p) => p.body));
    // The reference's pixel data may carry one padding byte.
    expect(ref.length - got.length).toBeGreaterThanOrEqual(0);
    expect(ref.length - got.length).toBeLessThanOrEqual(1);
    if (LOSSY.has(s.ts)) {
      const d = difference(got, ref, s.bitsAllocated, s.signed);
      // Measured: every lossy sample decodes bit for bit like the reference (libjpeg-turbo vs IJG,
      // OpenJPEG vs GDCM's OpenJPEG, CharLS vs dcmtk's CharLS); the bound leaves room for codec versions.
      expect(d.mean, `mean |difference| ${d.mean}, max ${d.max}`).toBeLessThanOrEqual(LOSSY_MEAN_TOLERANCE);
      expect(d.max, `mean |difference| ${d.mean}, max ${d.max}`).toBeLessThanOrEqual(LOSSY_MAX_TOLERANCE);
    } else {
      expect(Buffer.compare(got, ref.subarray(0, got.length)), 'pixels differ from the reference').toBe(0);
    }
  });

  it('keeps lossless pixels exact through every lossless re-encoding, and lossy ones within their bound', async () => {
    const s = sampleObject(COMPRESSED[2]); // CT, JPEG-LS lossless, 16-bit signed
    expect((await stow(server.baseUrl, [s.bytes])).status).toBe(200);
    const ref = referencePixels(s, dir);
    const inst = (
      await getJson<Json[]>(`${frameUrl(server.dicomweb, s, '1').replace(/\/frames\/1$/, '')}/metadata`)
    ).json[0];
    const image = imageInfo(inst as never);
    expect(image).toBeDefined();
    for (const [target, magic] of LOSSLESS_TARGETS) {
      const res = await framesIn(
        server.dicomweb,
        s,
        `multipart/related; type="application/octet-stream"; transfer-syntax=${target}`,
      );
      expect(res.status, `${target}: ${res.text}`).toBe(200);
      const frame = res.parts[0].body;
      expect(frame.subarray(0, magic.length / 2).toString('hex')).toBe(magic);
      // Back to native through a second codec family: target -> RLE -> native.
      const rle = await transcoder().run({
        op: 'transcode',
        from: target,
        to: '1.2.840.10008.1.2.5',
        image: image!,
        frame,
      });
      const back = await transcoder().run({
        op: 'transcode',
        from: '1.2.840.10008.1.2.5',
        to: EVRLE,
        image: image!,
        frame: rle,
      });
      expect(Buffer.compare(Buffer.from(back), ref), `${target} round trip`).toBe(0);
    }
    // JPEG-LS near-lossless guarantees |error| <= NEAR (2 here).
    const near = await framesIn(
      server.dicomweb,
      s,
      'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.81',
    );
    expect(near.status, near.text).toBe(200);
    expect(near.parts[0].headers['content-type']).toBe('image/jls; transfer-syntax=1.2.840.10008.1.2.4.81');
    const nearBack = await transcoder().run({
      op: 'transcode',
      from: '1.2.840.10008.1.2.4.81',
      to: EVRLE,
      image: image!,
      frame: near.parts[0].body,
    });
    expect(difference(nearBack, ref, 16, true).max).toBeLessThanOrEqual(2);
    // JPEG 2000 and HTJ2K lossy: close to the original.
    for (const lossy of ['1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.4.203']) {
      const r = await framesIn(
        server.dicomweb,
        s,
        `multipart/related; type="application/octet-stream"; transfer-syntax=${lossy}`,
      );
      expect(r.status, `${lossy}: ${r.text}`).toBe(200);
      const back = await transcoder().run({
        op: 'transcode',
        from: lossy,
        to: EVRLE,
        image: image!,
        frame: r.parts[0].body,
      });
      const d = difference(back, ref, 16, true);
      expect(d.mean, `${lossy}: mean ${d.mean}`).toBeLessThan(20);
    }
    // Image media types without a syntax: their lossless default.
    const jp2 = await framesIn(server.dicomweb, s, 'multipart/related; type="image/jp2"');
    expect(jp2.status).toBe(200);
    expect(jp2.parts[0].headers['content-type']).toBe('image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90');
  });

  it('refuses with 406 and a reason what cannot be given: lossless from lossy, 16 bits in JPEG baseline', async () => {
    const lossy = sampleObject(COMPRESSED[1]); // JPEG 2000 lossy
    expect((await stow(server.baseUrl, [lossy.bytes])).status).toBe(200);
    const r = await fetch(frameUrl(server.dicomweb, lossy, '1'), {
      headers: {
        Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.80',
      },
    });
    expect(r.status).toBe(406);
    expect(await r.text()).toMatch(/stored lossy.*cannot give back the original pixels/);
    const ct = sampleObject(COMPRESSED[2]);
    expect((await stow(server.baseUrl, [ct.bytes])).status).toBe(200);
    const b = await fetch(frameUrl(server.dicomweb, ct, '1'), {
      headers: { Accept: 'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50' },
    });
    expect(b.status).toBe(406);
    expect(await b.text()).toMatch(/at most 8 bits per sample/);
    // The stored syntax is still served as stored when asked for it or '*'.
    const same = await framesIn(
      server.dicomweb,
      ct,
      'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80',
    );
    expect(same.status).toBe(200);
    const asStored = await framesIn(
      server.dicomweb,
      ct,
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    );
    expect(asStored.parts[0].headers['content-type']).toBe(
      'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.80',
    );
    expect(Buffer.compare(same.parts[0].body, asStored.parts[0].body)).toBe(0);
  });

  it('gives a clear error for a corrupt compressed frame, and goes on serving', async () => {
    const s = sampleObject('malformed/JPEG2000-embedded-sequence-delimiter.dcm');
    const stored = await stow(server.baseUrl, [s.bytes]);
    expect(stored.status).toBe(200);
    const r = await fetch(frameUrl(server.dicomweb, s, '1'), {
      headers: { Accept: 'multipart/related; type="application/octet-stream"' },
    });
    expect(r.status).toBe(500);
    const body = (await r.json()) as { message: string };
    expect(body.message).toMatch(
      new RegExp(`frame 1 of instance ${s.sop.replaceAll('.', '\\.')} cannot be transcoded`),
    );
    // The same frame as stored is still served, and other frames decode.
    const raw = await framesIn(
      server.dicomweb,
      s,
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    );
    expect(raw.status).toBe(200);
    const ct = sampleObject(COMPRESSED[0]);
    expect((await stow(server.baseUrl, [ct.bytes])).status).toBe(200);
    const ok = await framesIn(server.dicomweb, ct, 'multipart/related; type="application/octet-stream"');
    expect(ok.status).toBe(200);
  });

  it('transcodes whole instances: Explicit/Implicit VR Little Endian, Deflated, and JPEG 2000 lossless', async () => {
    const s = sampleObject(COMPRESSED[2]); // CT, JPEG-LS lossless
    expect((await stow(server.baseUrl, [s.bytes])).status).toBe(200);
    const ref = referencePixels(s, dir);
    const url = frameUrl(server.dicomweb, s, '1').replace(/\/frames\/1$/, '');
    const pixelsOf = (p10: Buffer) => {
      const ds = parseDicom(p10);
      const px = ds.elements.x7fe00010;
      return { ts: ds.string('x00020010'), sop: ds.string('x00080018'), px, ds };
    };
    for (const ts of ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2', '1.2.840.10008.1.2.1.99']) {
      const r = await fetch(url, { headers: { Accept: `application/dicom; transfer-syntax=${ts}` } });
      expect(r.status, `${ts}: ${r.status}`).toBe(200);
      expect(r.headers.get('content-type')).toBe('application/dicom');
      const body = Buffer.from(await r.arrayBuffer());
      const file = path.join(dir, `instance-${ts}.dcm`);
      writeFileSync(file, body);
      execFileSync('dcmdump', ['-q', file], { stdio: 'pipe' }); // dcmtk reads it
      const parsed = pixelsOf(body);
      expect(parsed.ts).toBe(ts);
      expect(parsed.sop).toBe(s.sop);
      if (ts === '1.2.840.10008.1.2.1.99') {
        // The deflated copy read back by dcmtk: its pixels are the reference's.
        const back = path.join(dir, 'instance-inflated.dcm');
        execFileSync('dcmconv', ['+te', file, back], { stdio: 'pipe' });
        const b = readFileSync(back);
        const px = dicomParser.parseDicom(new Uint8Array(b)).elements.x7fe00010;
        expect(Buffer.compare(b.subarray(px.dataOffset, px.dataOffset + px.length), ref)).toBe(0);
      } else {
        const data = body.subarray(parsed.px.dataOffset, parsed.px.dataOffset + parsed.px.length);
        expect(Buffer.compare(data, ref), ts).toBe(0);
      }
    }
    // JPEG 2000 lossless, as a multipart/related: GDCM decodes it to the same pixels.
    const m = await getMultipart(
      url,
      'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90',
    );
    expect(m.status, m.text).toBe(200);
    expect(m.parts[0].headers['content-type']).toBe(
      'application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90',
    );
    const j2k = path.join(dir, 'instance-j2k.dcm');
    writeFileSync(j2k, m.parts[0].body);
    // Encapsulated Pixel Data has VR OB (PS3.5 A.4), also for a 16-bit image.
    expect(dicomParser.parseDicom(new Uint8Array(m.parts[0].body)).elements.x7fe00010.vr).toBe('OB');
    const raw = path.join(dir, 'instance-j2k-raw.dcm');
    execFileSync('gdcmconv', ['--raw', j2k, raw], { stdio: 'pipe' });
    const rb = readFileSync(raw);
    const rpx = dicomParser.parseDicom(new Uint8Array(rb)).elements.x7fe00010;
    expect(Buffer.compare(rb.subarray(rpx.dataOffset, rpx.dataOffset + rpx.length), ref)).toBe(0);
    // Lossy stored: no lossless instance.
    const lossy = sampleObject(COMPRESSED[1]);
    expect((await stow(server.baseUrl, [lossy.bytes])).status).toBe(200);
    const refused = await fetch(frameUrl(server.dicomweb, lossy, '1').replace(/\/frames\/1$/, ''), {
      headers: { Accept: 'application/dicom; transfer-syntax=1.2.840.10008.1.2.4.80' },
    });
    expect(refused.status).toBe(406);
    expect(await refused.text()).toMatch(/stored lossy/);
    // A series holding a lossy instance: refused as a whole, before anything is sent.
    const series = await fetch(url.replace(/\/instances\/[^/]+$/, ''), {
      headers: {
        Accept: 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90',
      },
    });
    expect(series.status).toBe(406);
    expect(await series.text()).toMatch(/stored lossy/);
  });

  it('decodes in worker threads: a large JPEG 2000 frame does not stall the event loop', async () => {
    const s = sampleObject('cr-dx/RG3_J2KR.dcm'); // 1760x1760, about a second to decode
    expect((await stow(server.baseUrl, [s.bytes])).status).toBe(200);
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const started = performance.now();
    const big = framesIn(server.dicomweb, s, 'multipart/related; type="application/octet-stream"');
    // Meanwhile, other requests are answered at once.
    let health = 0;
    await new Promise((r) => setTimeout(r, 50));
    const h0 = performance.now();
    const h = await fetch(`${server.baseUrl}/healthz`);
    health = performance.now() - h0;
    expect(h.status).toBe(200);
    const res = await big;
    const total = performance.now() - started;
    delay.disable();
    expect(res.status).toBe(200);
    expect(res.parts[0].body.length).toBe(1760 * 1760 * 2);
    expect(health).toBeLessThan(total / 2);
    expect(
      delay.max / 1e6,
      `event loop delay ${delay.max / 1e6} ms during a ${total} ms transcode`,
    ).toBeLessThan(Math.max(150, total / 3));
  });

  it('re-encodes colour and 8-bit images: lossless exact, JPEG baseline close', async () => {
    for (const file of [
      'transfer-syntaxes/SC_rgb_rle_2frame.dcm',
      'transfer-syntaxes/JPGLosslessP14SV1_1s_1f_8b.dcm',
    ]) {
      const s = sampleObject(file);
      expect((await stow(server.baseUrl, [s.bytes])).status).toBe(200);
      const ref = referencePixels(s, dir);
      const meta = await getJson<Json[]>(
        `${frameUrl(server.dicomweb, s, '1').replace(/\/frames\/1$/, '')}/metadata`,
      );
      const image = imageInfo(meta.json[0] as never)!;
      const frameSize = image.Rows * image.Columns * image.SamplesPerPixel;
      for (const [target] of LOSSLESS_TARGETS) {
        const res = await framesIn(
          server.dicomweb,
          s,
          `multipart/related; type="application/octet-stream"; transfer-syntax=${target}`,
        );
        expect(res.status, `${file} ${target}: ${res.text}`).toBe(200);
        for (const [i, p] of res.parts.entries()) {
          const back = await transcoder().run({
            op: 'transcode',
            from: target,
            to: EVRLE,
            image,
            frame: p.body,
          });
          expect(
            Buffer.compare(Buffer.from(back), ref.subarray(i * frameSize, (i + 1) * frameSize)),
            `${file} ${target}`,
          ).toBe(0);
        }
      }
      const jpeg = await framesIn(
        server.dicomweb,
        s,
        `multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50`,
      );
      expect(jpeg.status, jpeg.text).toBe(200);
      const back = await transcoder().run({
        op: 'transcode',
        from: '1.2.840.10008.1.2.4.50',
        to: EVRLE,
        image: {
          ...image,
          PhotometricInterpretation:
            image.SamplesPerPixel === 3 ? 'YBR_FULL_422' : image.PhotometricInterpretation,
        },
        frame: jpeg.parts[0].body,
      });
      const d = difference(back, ref.subarray(0, frameSize), 8, false);
      expect(d.mean, `${file} JPEG baseline mean ${d.mean} max ${d.max}`).toBeLessThan(3);
    }
  });

  it('encodes JPEG Extended (4.51) from 8-bit samples (WebAssembly) and unsigned 9-12-bit samples (DCMTK), refuses signed ones with the reason, never lossy when lossless is asked', async () => {
    const JPEG_EXT = '1.2.840.10008.1.2.4.51';
    // 8 bits (EVRLE, MONOCHROME1): frames and the whole instance.
    const dx = sampleObject('cr-dx/dx_image.dcm');
    expect((await stow(server.baseUrl, [dx.bytes])).status).toBe(200);
    const meta = await getJson<Json[]>(
      `${frameUrl(server.dicomweb, dx, '1').replace(/\/frames\/1$/, '')}/metadata`,
    );
    const image = imageInfo(meta.json[0] as never)!;
    const native = await framesIn(server.dicomweb, dx, 'multipart/related; type="application/octet-stream"');
    expect(native.status).toBe(200);
    const ext = await framesIn(
      server.dicomweb,
      dx,
      `multipart/related; type="image/jpeg"; transfer-syntax=${JPEG_EXT}`,
    );
    expect(ext.status, ext.text).toBe(200);
    expect(ext.parts[0].headers['content-type']).toBe(`image/jpeg; transfer-syntax=${JPEG_EXT}`);
    expect(ext.parts[0].body.subarray(0, 2).toString('hex')).toBe('ffd8');
    const back = await transcoder().run({
      op: 'transcode',
      from: JPEG_EXT,
      to: EVRLE,
      image,
      frame: ext.parts[0].body,
    });
    const d = difference(back, native.parts[0].body, 8, false);
    expect(d.mean, `mean ${d.mean} max ${d.max}`).toBeLessThan(3);
    // The whole instance in 4.51: dcmtk decodes it, to pixels close to the original.
    const url = frameUrl(server.dicomweb, dx, '1').replace(/\/frames\/1$/, '');
    const inst = await fetch(url, { headers: { Accept: `application/dicom; transfer-syntax=${JPEG_EXT}` } });
    expect(inst.status).toBe(200);
    const file = path.join(dir, 'dx-51.dcm');
    writeFileSync(file, Buffer.from(await inst.arrayBuffer()));
    expect(dicomParser.parseDicom(new Uint8Array(readFileSync(file))).string('x00020010')).toBe(JPEG_EXT);
    const raw = path.join(dir, 'dx-51-raw.dcm');
    execFileSync('dcmdjpeg', [file, raw], { stdio: 'pipe' });
    const rb = readFileSync(raw);
    const rpx = dicomParser.parseDicom(new Uint8Array(rb)).elements.x7fe00010;
    const dcmtk = rb.subarray(rpx.dataOffset, rpx.dataOffset + rpx.length);
    expect(difference(dcmtk, native.parts[0].body, 8, false).mean).toBeLessThan(3);

    // 12 bits stored, unsigned (a CT slice), and 10 bits (a CR, 1760x1760): 12-bit JPEG Extended, by DCMTK
    // (dcmcjpeg, installed with the test dependencies), pixels close to the original.
    const ct = sampleObject('ct-series/philips-ingenuity-phantom-S2010/I10');
    const cr = sampleObject('cr-dx/RG3_J2KR.dcm'); // 10 bits, stored in JPEG 2000
    expect((await stow(server.baseUrl, [ct.bytes, cr.bytes])).status).toBe(200);
    for (const s of [ct, cr]) {
      const instUrl = frameUrl(server.dicomweb, s, '1').replace(/\/frames\/1$/, '');
      const img = imageInfo((await getJson<Json[]>(`${instUrl}/metadata`)).json[0] as never)!;
      const orig = await framesIn(server.dicomweb, s, 'multipart/related; type="application/octet-stream"');
      const jpeg = await framesIn(
        server.dicomweb,
        s,
        `multipart/related; type="image/jpeg"; transfer-syntax=${JPEG_EXT}`,
      );
      expect(jpeg.status, jpeg.text).toBe(200);
      expect(jpeg.parts[0].headers['content-type']).toBe(`image/jpeg; transfer-syntax=${JPEG_EXT}`);
      const code = jpeg.parts[0].body;
      const sof1 = code.indexOf(Buffer.from([0xff, 0xc1]));
      expect(sof1, 'an extended sequential DCT frame header (SOF1)').toBeGreaterThan(0);
      expect(code[sof1 + 4], 'sample precision').toBe(12);
      const decoded = await transcoder().run({
        op: 'transcode',
        from: JPEG_EXT,
        to: EVRLE,
        image: img,
        frame: code,
      });
      const e = difference(decoded, orig.parts[0].body, 16, false);
      expect(e.mean, `${s.file}: mean ${e.mean} max ${e.max}`).toBeLessThan(2);
      expect(e.max, `${s.file}: mean ${e.mean} max ${e.max}`).toBeLessThan(64);
      expect(code.length * 3).toBeLessThan(orig.parts[0].body.length);
    }
    // The whole CT instance: a new SOP Instance UID, marked lossy, decoded by dcmtk close to the original.
    const ctUrl = frameUrl(server.dicomweb, ct, '1').replace(/\/frames\/1$/, '');
    const ctInst = await fetch(ctUrl, {
      headers: { Accept: `application/dicom; transfer-syntax=${JPEG_EXT}` },
    });
    expect(ctInst.status, await ctInst.clone().text()).toBe(200);
    const ctFile = path.join(dir, 'ct-51.dcm');
    writeFileSync(ctFile, Buffer.from(await ctInst.arrayBuffer()));
    const ctDs = dicomParser.parseDicom(new Uint8Array(readFileSync(ctFile)));
    expect(ctDs.string('x00020010')).toBe(JPEG_EXT);
    expect(ctDs.string('x00080018')).not.toBe(ct.sop);
    expect(ctDs.string('x00282110')).toBe('01');
    expect(ctDs.uint16('x00280101')).toBe(12);
    const ctRaw = path.join(dir, 'ct-51-raw.dcm');
    execFileSync('dcmdjpeg', [ctFile, ctRaw], { stdio: 'pipe' });
    const ctRb = readFileSync(ctRaw);
    const ctPx = dicomParser.parseDicom(new Uint8Array(ctRb)).elements.x7fe00010;
    const ctNative = await framesIn(
      server.dicomweb,
      ct,
      'multipart/related; type="application/octet-stream"',
    );
    const ctD = difference(
      ctRb.subarray(ctPx.dataOffset, ctPx.dataOffset + ctPx.length),
      ctNative.parts[0].body,
      16,
      false,
    );
    expect(ctD.mean, `mean ${ctD.mean} max ${ctD.max}`).toBeLessThan(2);

    // Signed samples above 8 bits: 406 with the reason (JPEG codes unsigned samples).
    const signed = sampleObject('cr-dx/mlut_18.dcm');
    expect((await stow(server.baseUrl, [signed.bytes])).status).toBe(200);
    const refused = await fetch(frameUrl(server.dicomweb, signed, '1'), {
      headers: { Accept: `multipart/related; type="image/jpeg"; transfer-syntax=${JPEG_EXT}` },
    });
    expect(refused.status).toBe(406);
    expect(await refused.text()).toMatch(/unsigned samples only/);
    const refusedInstance = await fetch(frameUrl(server.dicomweb, signed, '1').replace(/\/frames\/1$/, ''), {
      headers: { Accept: `application/dicom; transfer-syntax=${JPEG_EXT}` },
    });
    expect(refusedInstance.status).toBe(406);
    // image/jpeg without a syntax is JPEG lossless (4.70): a lossless request never gets lossy pixels.
    const lossless = await framesIn(server.dicomweb, ct, 'multipart/related; type="image/jpeg"');
    expect(lossless.status, lossless.text).toBe(200);
    expect(lossless.parts[0].headers['content-type']).toBe(
      'image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.70',
    );

    // Stored in 4.51 (12-bit): the whole instance decoded to Explicit VR Little Endian like dcmdjpeg.
    const mr = sampleObject('mr/MR_jpeg-extended-51_orthanc.dcm');
    expect((await stow(server.baseUrl, [mr.bytes])).status).toBe(200);
    const mrUrl = frameUrl(server.dicomweb, mr, '1').replace(/\/frames\/1$/, '');
    const decoded = await fetch(mrUrl, {
      headers: { Accept: `application/dicom; transfer-syntax=${EVRLE}` },
    });
    expect(decoded.status).toBe(200);
    const body = Buffer.from(await decoded.arrayBuffer());
    const px = dicomParser.parseDicom(new Uint8Array(body)).elements.x7fe00010;
    expect(
      Buffer.compare(body.subarray(px.dataOffset, px.dataOffset + px.length), referencePixels(mr, dir)),
    ).toBe(0);
  });

  it('negotiates the pixel data bulk data (7FE00010) like frames', async () => {
    const bulk = (s: SampleObject) =>
      `${frameUrl(server.dicomweb, s, '1').replace(/\/frames\/1$/, '')}/bulkdata/7FE00010`;
    // Stored JPEG-LS: decoded (no syntax asked), re-encoded (JPEG 2000), as stored ('*'), refused (JPEG baseline).
    const ct = sampleObject(COMPRESSED[2]);
    expect((await stow(server.baseUrl, [ct.bytes])).status).toBe(200);
    const ref = referencePixels(ct, dir);
    const decoded = await getMultipart(bulk(ct), 'multipart/related; type="application/octet-stream"');
    expect(decoded.status, decoded.text).toBe(200);
    expect(decoded.parts[0].headers['content-type']).toBe(
      `application/octet-stream; transfer-syntax=${EVRLE}`,
    );
    expect(Buffer.compare(decoded.parts[0].body, ref)).toBe(0);
    const single = await fetch(bulk(ct), { headers: { Accept: 'application/octet-stream' } });
    expect(single.status).toBe(200);
    expect(Buffer.compare(Buffer.from(await single.arrayBuffer()), ref)).toBe(0);
    const j2k = await getMultipart(bulk(ct), 'multipart/related; type="image/jp2"');
    expect(j2k.status, j2k.text).toBe(200);
    expect(j2k.parts[0].headers['content-type']).toBe('image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90');
    const image = imageInfo(
      (await getJson<Json[]>(bulk(ct).replace(/\/bulkdata\/7FE00010$/, '/metadata'))).json[0] as never,
    )!;
    const j2kBack = await transcoder().run({
      op: 'transcode',
      from: '1.2.840.10008.1.2.4.90',
      to: EVRLE,
      image,
      frame: j2k.parts[0].body,
    });
    expect(Buffer.compare(Buffer.from(j2kBack), ref)).toBe(0);
    const asStored = await getMultipart(
      bulk(ct),
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    );
    expect(asStored.status).toBe(200);
    expect(asStored.parts[0].headers['content-type']).toBe(
      'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.80',
    );
    const baseline = await fetch(bulk(ct), {
      headers: { Accept: 'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50' },
    });
    expect(baseline.status).toBe(406);
    expect(await baseline.text()).toMatch(/at most 8 bits per sample/);
    // Stored uncompressed, asked in JPEG-LS lossless: decodes back to the stored pixels.
    const native = sampleObject('ct-series/philips-ingenuity-phantom-S2010/I20');
    expect((await stow(server.baseUrl, [native.bytes])).status).toBe(200);
    const nativeImage = imageInfo(
      (await getJson<Json[]>(bulk(native).replace(/\/bulkdata\/7FE00010$/, '/metadata'))).json[0] as never,
    )!;
    const jls = await getMultipart(bulk(native), 'multipart/related; type="image/jls"');
    expect(jls.status, jls.text).toBe(200);
    expect(jls.parts[0].headers['content-type']).toBe('image/jls; transfer-syntax=1.2.840.10008.1.2.4.80');
    expect(jls.contentType).toMatch(
      /^multipart\/related; type="image\/jls"; boundary=[^;]+; transfer-syntax=1\.2\.840\.10008\.1\.2\.4\.80$/,
    );
    const ds = dicomParser.parseDicom(new Uint8Array(native.bytes));
    const npx = ds.elements.x7fe00010;
    const jlsBack = await transcoder().run({
      op: 'transcode',
      from: '1.2.840.10008.1.2.4.80',
      to: EVRLE,
      image: nativeImage,
      frame: jls.parts[0].body,
    });
    expect(
      Buffer.compare(
        Buffer.from(jlsBack),
        native.bytes.subarray(npx.dataOffset, npx.dataOffset + npx.length),
      ),
    ).toBe(0);
    // A multi-frame image in a compressed syntax: one part per frame, so a single part is refused.
    const rgb = sampleObject('transfer-syntaxes/SC_rgb_rle_2frame.dcm');
    expect((await stow(server.baseUrl, [rgb.bytes])).status).toBe(200);
    const twoParts = await getMultipart(bulk(rgb), 'multipart/related; type="image/jls"');
    expect(twoParts.status, twoParts.text).toBe(200);
    expect(twoParts.parts.length).toBe(2);
    const onePart = await fetch(bulk(rgb), { headers: { Accept: 'image/jls' } });
    expect(onePart.status).toBe(406);
  });

  it.each([
    'transfer-syntaxes/HTJ2KLossless_08_RGB.dcm',
    'transfer-syntaxes/HTJ2K_08_RGB.dcm',
    'transfer-syntaxes/JLSL_RGB_ILV1.dcm',
    'transfer-syntaxes/JLSN_RGB_ILV0.dcm',
    'transfer-syntaxes/JPEGLSNearLossless_16.dcm',
  ])(
    '%s (not storable: no Study/Series UIDs): the worker decodes it like the reference decoder',
    async (file) => {
      const s = sampleObject(file);
      const ds = dicomParser.parseDicom(new Uint8Array(s.bytes));
      const image = {
        Rows: ds.uint16('x00280010')!,
        Columns: ds.uint16('x00280011')!,
        BitsAllocated: ds.uint16('x00280100')!,
        BitsStored: ds.uint16('x00280101')!,
        PixelRepresentation: ds.uint16('x00280103') ?? 0,
        SamplesPerPixel: ds.uint16('x00280002') ?? 1,
        PhotometricInterpretation: ds.string('x00280004') ?? 'MONOCHROME2',
        PlanarConfiguration: ds.uint16('x00280006') ?? 0,
        NumberOfFrames: 1,
        RescaleSlope: 1,
        RescaleIntercept: 0,
        floatPixels: false,
      };
      const fragment = ds.elements.x7fe00010.fragments![0];
      const frame = s.bytes.subarray(fragment.position, fragment.position + fragment.length);
      let ref: Uint8Array;
      if (s.ts.startsWith('1.2.840.10008.1.2.4.20')) {
        // HTJ2K: no dcmtk/GDCM decoder here; OpenJPEG (Cornerstone's WebAssembly build) is the reference.
        const factory = createRequire(import.meta.url)(
          '@cornerstonejs/codec-openjpeg/wasmjs',
        ) as () => Promise<any>;
        const openjpeg = await factory();
        const decoder = new openjpeg.J2KDecoder();
        decoder.getEncodedBuffer(frame.length).set(frame);
        decoder.decode();
        ref = new Uint8Array(decoder.getDecodedBuffer());
      } else {
        ref = referencePixels(s, dir);
      }
      const got = await transcoder().run({ op: 'transcode', from: s.ts, to: EVRLE, image, frame });
      expect(got.length).toBe(image.Rows * image.Columns * image.SamplesPerPixel * (image.BitsAllocated / 8));
      const d = difference(got, ref.subarray(0, got.length), image.BitsAllocated, false);
      if (LOSSY.has(s.ts)) {
        expect(d.mean).toBeLessThanOrEqual(LOSSY_MEAN_TOLERANCE);
        expect(d.max).toBeLessThanOrEqual(LOSSY_MAX_TOLERANCE);
      } else expect(d.max).toBe(0);
    },
  );
});
