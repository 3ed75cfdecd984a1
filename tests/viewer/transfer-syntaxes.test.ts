/**
 * Every transfer syntax of the samples (transfer-syntaxes/, and the colour ultrasound of us-multiframe/,
 * multi-frame ones included) opened in the viewer in a real browser, against the real archive:
 *
 * - The image the viewer decoded equals a reference decode by other decoders (dcmtk, GDCM; see
 *   reference-pixels.ts): exactly for lossless syntaxes, within a stated bound for lossy ones.
 * - What is drawn on the canvas is the reference under the VOI the viewport reports, within 3 grey levels
 *   (8-bit rendering and float textures), at points whose neighbourhood is flat (so that interpolation
 *   on screen cannot change them).
 * - With the slow-link setting ("compressed lossless", chosen in the toolbar and kept in localStorage)
 *   frames stored uncompressed or in RLE arrive in JPEG-LS lossless and decode to exactly the same
 *   pixels; the others arrive as they did.
 * - `auto` measures the link: on loopback frames come as stored; under Chrome's network emulation at
 *   20 Mbit/s it switches to compressed lossless.
 * - Images whose pixels went through lossy compression say so on the viewport.
 *
 * One page per setting, the samples shown one after another in it (as a user opening studies).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getMultipart } from '../e2e/dicomweb';
import { stow } from '../helpers/server';
import { requireTools } from '../helpers/tools';
import { sampleFiles } from '../samples';
import { expectedGrey } from './dicom-file';
import { emulateSlowLink, SAMPLES, skipReason, startViewerEnv, type ViewerEnv } from './harness';
import {
  LOSSY,
  NATIVE,
  type PreparedSample,
  prepareSample,
  REFERENCE_TOOLS,
  type ReferenceFrame,
  referenceFrame,
} from './reference-pixels';

const FOLDERS = ['transfer-syntaxes', 'us-multiframe'];
/** The samples, as paths relative to the samples folder (none when they are absent). */
const NAMES = sampleFiles().filter((f) => FOLDERS.some((d) => f.startsWith(`${d}/`)));

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const JPEG_LS_LOSSLESS = '1.2.840.10008.1.2.4.80';
const RLE = '1.2.840.10008.1.2.5';
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
/** 12-bit lossy JPEG: the browser's decoder for these is off by 15/4096, so the archive decodes them. */
const JPEG_12_BIT = new Set(['1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.53', '1.2.840.10008.1.2.4.55']);

/** The syntax frames of `s` arrive in, with the fast-link (as stored) or slow-link setting. */
function arrivesIn(s: PreparedSample, link: 'fast' | 'slow'): string {
  if (JPEG_12_BIT.has(s.transferSyntax)) return EXPLICIT_LE;
  // JPEG baseline labelled RGB (no colour transform): the browser's decoder would transform it anyway.
  if (s.transferSyntax === JPEG_BASELINE && s.photometric === 'RGB') return EXPLICIT_LE;
  if (!NATIVE.has(s.transferSyntax) && s.transferSyntax !== RLE) return s.transferSyntax;
  if (link === 'fast') return NATIVE.has(s.transferSyntax) ? EXPLICIT_LE : s.transferSyntax;
  // The archive does not re-encode native YBR_FULL_422 (it would have to make it RGB): as stored.
  return s.photometric === 'YBR_FULL_422' ? EXPLICIT_LE : JPEG_LS_LOSSLESS;
}

/** Largest difference from the reference of the decoded image, in sample units. */
function decodeTolerance(s: PreparedSample): number {
  // Lossy: the viewer's decoders (libjpeg-turbo, CharLS, OpenJPEG; the archive's libjpeg-turbo for
  // 12-bit JPEG) and the reference ones (IJG in dcmtk, dcmtk's CharLS, GDCM's OpenJPEG) may round
  // differently.
  if (LOSSY.has(s.transferSyntax)) return 4;
  // YBR and palette colour made RGB by the viewer and by dcmtk: rounding may differ by 1.
  if (s.color && s.photometric !== 'RGB') return 1;
  return 0;
}
/** Largest difference on screen, grey levels (8-bit rendering, float textures). */
const SCREEN_TOLERANCE = 3;

requireTools(REFERENCE_TOOLS, 'dcmtk, libgdcm-tools');

interface Shown {
  imageId: string;
  transferSyntaxUID: string;
  width: number;
  height: number;
  color: boolean;
  components: number;
  values: Float64Array;
  voi: { lower: number; upper: number };
  invert: boolean;
  lossyLabel: boolean;
}

/** Opens the study of `s` (in the page, as the app's own links do) and waits for frame `frame` to be drawn. */
async function show(page: Page, s: PreparedSample, frame: number): Promise<Shown> {
  const url = `/viewer/${s.study}`;
  if (new URL(page.url()).pathname !== url) {
    await page.evaluate((to) => {
      window.history.pushState(null, '', to);
      window.dispatchEvent(new PopStateEvent('popstate'));
    }, url);
  }
  if (frame === s.frames && frame > 1) {
    await page.waitForFunction(
      (sop) => (window as any).__pacs?.viewport('vp-0')?.imageId.includes(sop),
      s.sop,
    );
    await page.keyboard.press('End');
  }
  const wanted = `/instances/${s.sop}/frames/${frame}`;
  const state = await page
    .waitForFunction(
      (w) => {
        const error = document.querySelector('.viewport-message.error')?.textContent;
        if (error) return { error };
        const pacs = (window as any).__pacs;
        const v = pacs?.viewport('vp-0');
        return v?.imageId.endsWith(w) && v.rendered && v.renders > 0 && pacs.image('vp-0')
          ? { ok: true }
          : false;
      },
      wanted,
      { timeout: 30_000 },
    )
    .then((h) => h.jsonValue() as Promise<{ error?: string }>);
  if (state.error) throw new Error(`${s.name} frame ${frame}: ${state.error}`);
  await page.waitForTimeout(150); // the canvas is drawn after the image is set
  const got = await page.evaluate(() => {
    const pacs = (window as any).__pacs;
    const v = pacs.viewport('vp-0');
    return {
      image: pacs.image('vp-0'),
      voi: v.voiRange,
      invert: Boolean(v.invert),
      lossy: Boolean(document.querySelector('[data-testid="overlay-lossy"]')),
    };
  });
  const bytes = Buffer.from(got.image.data, 'base64');
  const values = got.image.color
    ? Float64Array.from(bytes)
    : Float64Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
  return {
    ...got.image,
    values,
    voi: got.voi ?? { lower: 0, upper: 255 },
    invert: got.invert,
    lossyLabel: got.lossy,
  };
}

/** Largest and mean absolute difference between the decoded image and the reference. */
function compareDecoded(shown: Shown, ref: ReferenceFrame): { max: number; mean: number } {
  expect([shown.width, shown.height, shown.color]).toEqual([ref.width, ref.height, ref.color]);
  const n = ref.width * ref.height;
  const channels = ref.color ? 3 : 1;
  const stride = ref.color ? shown.components : 1;
  expect(shown.values.length).toBe(n * stride);
  let max = 0;
  let sum = 0;
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < channels; c++) {
      const d = Math.abs(shown.values[p * stride + c] - ref.values[p * channels + c]);
      sum += d;
      if (d > max) max = d;
    }
  }
  return { max, mean: sum / (n * channels) };
}

/** Displayed value (0–255) of each channel of a reference pixel under the viewport's VOI. */
function display(ref: ReferenceFrame, shown: Shown, col: number, row: number): number[] {
  const channels = ref.color ? 3 : 1;
  const at = (row * ref.width + col) * channels;
  return [0, 1, 2].map((c) => {
    const g = expectedGrey(ref.values[at + (ref.color ? c : 0)], shown.voi);
    return shown.invert ? 255 - g : g;
  });
}

/**
 * Up to `count` points spread over the image whose 3×3 neighbourhood shows one value (within 2 grey
 * levels), unsaturated ones first, so that what is drawn there cannot depend on interpolation.
 */
function flatPoints(ref: ReferenceFrame, shown: Shown, count: number): [number, number][] {
  const step = Math.max(1, Math.floor(Math.min(ref.width, ref.height) / 32));
  const mid: [number, number][] = [];
  const saturated: [number, number][] = [];
  for (let r = 2; r < ref.height - 2; r += step) {
    for (let c = 2; c < ref.width - 2; c += step) {
      const centre = display(ref, shown, c, r);
      let spread = 0;
      for (let dr = -1; dr <= 1; dr++)
        for (let dc = -1; dc <= 1; dc++) {
          const d = display(ref, shown, c + dc, r + dr);
          for (let k = 0; k < 3; k++) spread = Math.max(spread, Math.abs(d[k] - centre[k]));
        }
      if (spread > 2) continue;
      (centre.some((v) => v > 4 && v < 251) ? mid : saturated).push([c, r]);
    }
  }
  const pick = (from: [number, number][], n: number) =>
    Array.from({ length: Math.min(n, from.length) }, (_, i) => from[Math.floor((i * from.length) / n)]);
  const chosen = pick(mid, count);
  return [...chosen, ...pick(saturated, count - chosen.length)];
}

/** What is drawn at flat points against the reference under the viewport's VOI; the worst difference. */
async function compareScreen(page: Page, ref: ReferenceFrame, shown: Shown) {
  const points = flatPoints(ref, shown, 24);
  const drawn = (await page.evaluate(
    ([pts]) => (window as any).__pacs.sample('vp-0', pts),
    [points],
  )) as number[][];
  let worst = 0;
  const rows: string[] = [];
  points.forEach(([c, r], i) => {
    const want = display(ref, shown, c, r);
    const got = drawn[i].slice(0, 3);
    worst = Math.max(worst, ...want.map((w, k) => Math.abs(w - got[k])));
    rows.push(`(${c},${r}) want ${want.map((w) => w.toFixed(1)).join('/')} got ${got.join('/')}`);
  });
  return { worst, points: points.length, rows };
}

async function archiveFrame(baseUrl: string, s: PreparedSample, frame: number): Promise<Buffer> {
  const r = await getMultipart(
    `${baseUrl}/dicomweb/studies/${s.study}/series/${s.series}/instances/${s.sop}/frames/${frame}`,
    'multipart/related; type="application/octet-stream"',
  );
  if (r.status !== 200) throw new Error(`archive decode of ${s.name}: ${r.status} ${r.text}`);
  return r.parts[0].body;
}

const transferState = (page: Page) =>
  page.evaluate(() => (window as any).__pacs.transfer()) as Promise<{
    mode: string;
    measured: string;
    link: string;
    mbps?: number;
  }>;

describe.skipIf(Boolean(skipReason))('transfer syntaxes in the viewer (real browser)', () => {
  let env: ViewerEnv;
  let dir: string;
  let asStored: Page;
  let lossless: Page;
  const samples = new Map<string, PreparedSample>();
  const sample = (name: string) => samples.get(name)!;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'pacs-viewer-ts-'));
    for (const [i, n] of NAMES.entries()) samples.set(n, prepareSample(SAMPLES, n, dir, i));
    env = await startViewerEnv([]);
    const stored = await stow(
      env.baseUrl,
      [...samples.values()].map((s) => s.file),
    );
    expect(stored.status, JSON.stringify(stored.json).slice(0, 500)).toBe(200);
    const first = sample(NAMES[0]);

    asStored = await env.newPage();
    await asStored.addInitScript(() => window.localStorage.setItem('pacs.transfer', 'original'));
    await asStored.goto(`${env.baseUrl}/viewer/${first.study}`);

    // The setting is chosen in the toolbar, and kept for the next visit.
    lossless = await env.newPage();
    await lossless.goto(`${env.baseUrl}/viewer/${first.study}`);
    await lossless.waitForSelector('[data-testid="transfer-mode"]');
    expect(await lossless.inputValue('[data-testid="transfer-mode"]')).toBe('auto');
    await lossless.selectOption('[data-testid="transfer-mode"]', 'lossless');
    await lossless.reload();
    await lossless.waitForSelector('[data-testid="transfer-mode"]');
    expect(await lossless.inputValue('[data-testid="transfer-mode"]')).toBe('lossless');
    expect(await transferState(lossless)).toMatchObject({ mode: 'lossless', link: 'slow' });
  });
  afterAll(async () => {
    await env?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('covers every transfer syntax of the samples, and multi-frame colour ultrasound', () => {
    const syntaxes = new Set([...samples.values()].map((s) => s.transferSyntax));
    expect(syntaxes.size).toBeGreaterThanOrEqual(17);
    expect(
      [...samples.values()].some((s) => s.color && s.frames > 1 && s.name.startsWith('us-multiframe/')),
    ).toBe(true);
  });

  it.each(NAMES)('%s', async (name) => {
    const s = sample(name);
    for (const frame of s.frames > 1 ? [1, s.frames] : [1]) {
      const what = `${name} frame ${frame}`;
      const ref = await referenceFrame(s, frame, dir, () => archiveFrame(env.baseUrl, s, frame));

      // As stored: the viewer decodes the stored syntax itself.
      const a = await show(asStored, s, frame);
      expect(a.transferSyntaxUID, what).toBe(arrivesIn(s, 'fast'));
      const da = compareDecoded(a, ref);
      expect(da.max, `${what}: decoded, mean |difference| ${da.mean.toFixed(3)}`).toBeLessThanOrEqual(
        decodeTolerance(s),
      );
      const sa = await compareScreen(asStored, ref, a);
      expect(sa.points, `${what}: flat points`).toBeGreaterThan(0);
      expect(sa.worst, `${what} on screen:\n${sa.rows.join('\n')}`).toBeLessThanOrEqual(SCREEN_TOLERANCE);
      expect(a.lossyLabel, `${what}: lossy label`).toBe(LOSSY.has(s.transferSyntax) || s.lossyAttribute);

      // Slow-link setting: compressed lossless transfer, the very same pixels.
      const b = await show(lossless, s, frame);
      expect(b.transferSyntaxUID, what).toBe(arrivesIn(s, 'slow'));
      expect(
        Buffer.compare(Buffer.from(b.values.buffer), Buffer.from(a.values.buffer)),
        `${what}: slow link`,
      ).toBe(0);
      const sb = await compareScreen(lossless, ref, b);
      expect(sb.worst, `${what} on screen, slow link:\n${sb.rows.join('\n')}`).toBeLessThanOrEqual(
        SCREEN_TOLERANCE,
      );
    }
  });

  it('auto: as stored on loopback; compressed lossless once the link measures 20 Mbit/s', async () => {
    const ct = sample(
      'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm',
    );
    const ct2 = sample(
      'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm',
    );
    const mr = sample('transfer-syntaxes/MR_small_bigendian.dcm');
    const page = await env.newPage();
    await page.goto(`${env.baseUrl}/viewer/${ct.study}`);
    const first = await show(page, ct, 1);
    expect(await transferState(page)).toMatchObject({ mode: 'auto', measured: 'fast', link: 'fast' });
    expect(first.transferSyntaxUID).toBe(EXPLICIT_LE);
    expect(await page.textContent('[data-testid="transfer-mode"] option[value="auto"]')).toBe(
      'Automatic (fast network: as stored)',
    );

    await emulateSlowLink(page);
    await show(page, ct2, 1); // 512 kB arrive in about 0.2 s: the link measures slow
    await page.waitForFunction(() => (window as any).__pacs.transfer().measured === 'slow');
    const state = await transferState(page);
    expect(state.link).toBe('slow');
    expect(state.mbps).toBeLessThan(50);
    expect(await page.getAttribute('[data-testid="transfer-mode"]', 'data-link')).toBe('slow');
    expect(await page.textContent('[data-testid="transfer-mode"] option[value="auto"]')).toBe(
      'Automatic (slow network: compressed lossless)',
    );
    // The next study's frames are asked for in JPEG-LS lossless, and decode to the reference pixels.
    const shown = await show(page, mr, 1);
    expect(shown.transferSyntaxUID).toBe(JPEG_LS_LOSSLESS);
    const ref = await referenceFrame(mr, 1, dir, () => archiveFrame(env.baseUrl, mr, 1));
    expect(compareDecoded(shown, ref).max).toBe(0);
    await page.close();
  });
});
