/**
 * The stack viewer in a real browser (headless Chromium, SwiftShader WebGL) against the real
 * archive: what is drawn is compared with the pixel data of the DICOM file, under the VOI the
 * viewport reports; window/level drag, scrolling, a length and a rectangle ROI in HU.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Page, Response } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type StowPart, stow } from '../../scripts/lib/stow';
import { ctPhantomSeries, demoUid } from '../../server/demo';
import { listFiles } from '../helpers/server';
import { type DicomImage, expectedGrey, flatPoints, readDicom } from './dicom-file';
import {
  drawLength,
  drawMeasurement,
  sopOf,
  toPage,
  vpState,
  emulateSlowLink,
  SAMPLES,
  skipReason,
  startViewerEnv,
  type ViewerEnv,
  waitForImage,
} from './harness';

const CT_FOLDER = 'ct-series/philips-ingenuity-phantom-S2010';
/** MR with a fractional rescale slope (1.2366): its slices are decoded to floats. */
const MR_FOLDER = 'mr/philips-dual-echo';
const JPEG_LS_LOSSLESS = '1.2.840.10008.1.2.4.80';

const sample = (page: Page, points: [number, number][], id = 'vp-0') =>
  page.evaluate(([vid, pts]) => (window as any).__pacs.sample(vid, pts), [id, points] as const) as Promise<
    number[][]
  >;

type VoiRange = { lower: number; upper: number };

/**
 * Compares the canvas with the file's pixel data at flat points; returns the worst difference. `read`
 * gives the displayed RGBA at image points (Cornerstone's canvas by default).
 */
async function compareWithFile(
  page: Page,
  img: DicomImage,
  voi: { lower: number; upper: number },
  read: (page: Page, points: [number, number][]) => Promise<number[][]> = sample,
) {
  const points = flatPoints(img, 24);
  const shown = await read(page, points);
  let worst = 0;
  let inWindow = 0;
  const rows: string[] = [];
  points.forEach(([c, r], i) => {
    const want = expectedGrey(img.value(c, r), voi);
    const got = shown[i][0];
    worst = Math.max(worst, Math.abs(want - got));
    if (want > 2 && want < 253) inWindow++;
    rows.push(`(${c},${r}) value ${img.value(c, r)} want ${want.toFixed(1)} got ${got}`);
  });
  /** inWindow: points whose value lies inside the window (not black or white whatever the slope). */
  return { worst, points: points.length, inWindow, rows };
}

describe.skipIf(Boolean(skipReason))('stack viewer (real browser)', () => {
  let env: ViewerEnv;
  let page: Page;
  const bySop = new Map<string, DicomImage>();
  let studyUID = '';
  let mrStudyUID = '';
  /** Every frame request of the page and its workers, from navigation on. */
  const frameRequests: string[] = [];

  beforeAll(async () => {
    const files = await listFiles(path.join(SAMPLES, CT_FOLDER));
    const mrFiles = await listFiles(path.join(SAMPLES, MR_FOLDER));
    env = await startViewerEnv([...files, ...mrFiles]);
    mrStudyUID = (await readDicom(mrFiles[0])).studyInstanceUID;
    for (const f of files) {
      const img = await readDicom(f);
      bySop.set(img.sopInstanceUID, img);
      studyUID = img.studyInstanceUID;
    }
    page = await env.newPage({ locale: 'en-US', width: 1280, height: 800 });
    page.on('request', (r) => {
      if (r.url().includes('/frames/')) frameRequests.push(r.url());
    });
    await page.goto(`${env.baseUrl}/viewer/${studyUID}`);
    await waitForImage(page);
  });
  afterAll(async () => {
    await env?.close();
  });

  it('renders the CT slice that the pixel data predicts, on the GPU path', async () => {
    expect(await page.evaluate(() => (window as any).__pacs.cpuRendering())).toBe(false);
    const st = await vpState(page);
    expect(st.count).toBe(bySop.size);
    const img = bySop.get(sopOf(st.imageId))!;
    expect(img).toBeDefined();
    const cmp = await compareWithFile(page, img, st.voiRange);
    await env.screenshot(page, 'viewer-ct-first-image');
    expect(cmp.points).toBeGreaterThanOrEqual(10);
    expect(cmp.worst, cmp.rows.join('\n')).toBeLessThanOrEqual(3);
    // overlays and the series panel
    expect(await page.textContent('[data-testid="overlay-image"]')).toBe(`Im: 1/${bySop.size}`);
    // the file's own window (W 80 L 40), exactly as stored
    expect(await page.textContent('[data-testid="overlay-wl"]')).toBe('W: 80 L: 40');
    expect(await page.$$eval('.series-item', (e) => e.length)).toBe(1);
  });

  it('shows the first slice before the image library has started, as the pixel data and its window predict', async () => {
    // Cornerstone cannot decode here (its decode worker is refused): what the viewport shows is the
    // first view, drawn from the prefetched bytes with the file's first window.
    const firstView = async (study: string, images: Map<string, DicomImage>, voi: VoiRange, name: string) => {
      const early = await env.newPage({ locale: 'en-US', width: 1280, height: 800 });
      try {
        await early.route('**/decodeImageFrameWorker*', (route) => route.abort());
        await early.goto(`${env.baseUrl}/viewer/${study}`);
        await early.waitForFunction(() => (window as any).__pacs?.firstView('vp-0')?.shown, null, {
          timeout: 60_000,
        });
        const fv = await early.evaluate(() => (window as any).__pacs.firstView('vp-0'));
        const img = images.get(sopOf(fv.imageId))!;
        expect(img).toBeDefined();
        const cmp = await compareWithFile(early, img, voi, (p, points) =>
          p.evaluate(([pts]) => (window as any).__pacs.sampleFirstView('vp-0', pts), [points] as const),
        );
        await env.screenshot(early, name);
        expect(cmp.points).toBeGreaterThanOrEqual(10);
        expect(cmp.worst, cmp.rows.join('\n')).toBeLessThanOrEqual(3);
        // The window made narrower before Cornerstone takes over: the first view is drawn again at the
        // canvas's new size (not the old drawing stretched), and still shows the file's pixels.
        const sizeOf = () =>
          early.evaluate(() => {
            const c = document.querySelector<HTMLCanvasElement>('[data-testid="first-view-vp-0"]')!;
            const ratio = window.devicePixelRatio || 1;
            return {
              bitmap: [c.width, c.height],
              box: [Math.round(c.clientWidth * ratio), Math.round(c.clientHeight * ratio)],
            };
          });
        const before = await sizeOf();
        await early.setViewportSize({ width: 900, height: 700 });
        await early.waitForFunction(
          () => {
            const c = document.querySelector<HTMLCanvasElement>('[data-testid="first-view-vp-0"]')!;
            const ratio = window.devicePixelRatio || 1;
            return (
              c.width === Math.round(c.clientWidth * ratio) && c.height === Math.round(c.clientHeight * ratio)
            );
          },
          null,
          { timeout: 10_000 },
        );
        const after = await sizeOf();
        expect(after.box[0], 'the viewport is narrower').toBeLessThan(before.box[0]);
        expect(after.bitmap).toEqual(after.box);
        expect((await early.evaluate(() => (window as any).__pacs.firstView('vp-0'))).shown).toBe(true);
        const resized = await compareWithFile(early, img, voi, (p, points) =>
          p.evaluate(([pts]) => (window as any).__pacs.sampleFirstView('vp-0', pts), [points] as const),
        );
        expect(resized.worst, resized.rows.join('\n')).toBeLessThanOrEqual(3);
        return cmp;
      } finally {
        await early.close();
      }
    };
    // A synthetic CT (dcmjs) stored with a wide window, W 2000 L -500 (PS3.3 C.11.2.1.2.1: -1500 to
    // 499 HU): the air around the body (-1000 HU) is then mid-grey, so the grey levels test the window's
    // slope and offset, not only which pixels are black or white.
    const phantom = new Map<string, DicomImage>();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'first-view-'));
    const parts: StowPart[] = [];
    const phantomStudy = demoUid('first-view-test/study');
    let n = 0;
    for (const bytes of ctPhantomSeries({
      key: 'first-view-test',
      studyInstanceUID: phantomStudy,
      seriesNumber: 1,
      seriesDescription: 'First view',
      slices: 2,
      sliceThickness: 10,
      size: 256,
      zTop: -150,
      windows: [[-500, 2000]],
      patient: { PatientID: 'FIRST-VIEW' },
    })) {
      const file = path.join(dir, `${n++}.dcm`);
      await writeFile(file, bytes);
      const img = await readDicom(file);
      phantom.set(img.sopInstanceUID, img);
      parts.push({ kind: 'bytes', bytes });
    }
    expect((await stow(parts, { dicomwebRoot: `${env.baseUrl}/dicomweb` })).status).toBe(200);
    const soft = await firstView(
      phantomStudy,
      phantom,
      { lower: -1500, upper: 499 },
      'viewer-first-view-phantom',
    );
    expect(soft.inWindow, soft.rows.join('\n')).toBeGreaterThanOrEqual(5);
    await rm(dir, { recursive: true, force: true });

    // The real CT sample, with its own window W 80 L 40 (0 to 79 HU).
    await firstView(studyUID, bySop, { lower: 0, upper: 79 }, 'viewer-ct-first-view');

    // Where Cornerstone has drawn, its image replaced the first view.
    const replaced = await page.evaluate(() => (window as any).__pacs.firstView('vp-0'));
    expect(replaced === undefined || replaced.shown === false).toBe(true);
  });

  it('window/level drag changes the VOI and the pixels as the VOI LUT predicts', async () => {
    const before = await vpState(page);
    const [x, y] = await toPage(page, 256, 256);
    await page.mouse.move(x, y);
    await page.mouse.down();
    await page.mouse.move(x + 80, y + 40, { steps: 8 });
    await page.mouse.up();
    await page.waitForTimeout(300);
    const after = await vpState(page);
    const wBefore = before.voiRange.upper - before.voiRange.lower;
    const wAfter = after.voiRange.upper - after.voiRange.lower;
    expect(wAfter).toBeGreaterThan(wBefore); // dragging right widens the window
    const cBefore = (before.voiRange.upper + before.voiRange.lower) / 2;
    const cAfter = (after.voiRange.upper + after.voiRange.lower) / 2;
    expect(cAfter).not.toBe(cBefore);
    const img = bySop.get(sopOf(after.imageId))!;
    const cmp = await compareWithFile(page, img, after.voiRange);
    await env.screenshot(page, 'viewer-ct-window-level-drag');
    expect(cmp.worst, cmp.rows.join('\n')).toBeLessThanOrEqual(3);

    // a preset sets the exact window: lung (W 1500, L -600)
    await page.keyboard.press('2');
    await page.waitForTimeout(200);
    const lung = await vpState(page);
    // DICOM linear VOI (PS3.3 C.11.2.1.2.1), as Cornerstone maps a file's window: -1350 to 149 HU
    expect(lung.voiRange).toEqual({ lower: -1350, upper: 149 });
    await page.waitForFunction(
      () => document.querySelector('[data-testid="overlay-wl"]')?.textContent === 'W: 1,500 L: -600',
      null,
      { timeout: 5_000 },
    );
    const cmp2 = await compareWithFile(page, img, lung.voiRange);
    expect(cmp2.worst, cmp2.rows.join('\n')).toBeLessThanOrEqual(3);
  });

  it('asks for every slice once: the first ones fetched while the viewer starts are not fetched again', async () => {
    await page.waitForFunction((n) => (window as any).__pacs.viewport('vp-0').loaded === n, bySop.size, {
      timeout: 30_000,
    });
    const perUrl = new Map<string, number>();
    for (const url of frameRequests) perUrl.set(url, (perUrl.get(url) ?? 0) + 1);
    expect([...perUrl].filter(([, n]) => n > 1)).toEqual([]);
    expect(new Set([...perUrl.keys()].map((u) => u.match(/instances\/([^/]+)\/frames/)?.[1])).size).toBe(
      bySop.size,
    );
  });

  it('on a fast link keeps no frame in the browser cache but the first (opened again, only it is revalidated)', async () => {
    // The same page opened again (same browser, same cache). Every frame response is noted as it comes;
    // its request headers (what the cache added) are read once the slices are all loaded.
    const responses: { url: string; status: number; headers: Promise<Record<string, string>> }[] = [];
    const onResponse = (r: Response) => {
      if (r.url().includes('/frames/'))
        responses.push({ url: r.url(), status: r.status(), headers: r.request().allHeaders() });
    };
    page.on('response', onResponse);
    await page.goto(`${env.baseUrl}/viewer/${studyUID}`);
    await page.waitForFunction((n) => (window as any).__pacs?.viewport('vp-0')?.loaded === n, bySop.size, {
      timeout: 30_000,
    });
    page.off('response', onResponse);
    const frames = await Promise.all(
      responses.map(async (f) => ({ ...f, revalidated: 'if-none-match' in (await f.headers) })),
    );
    const firstUrl = (await vpState(page)).imageId.replace(/^wadors:/, '');
    const first = frames.filter((f) => f.url === firstUrl);
    const rest = frames.filter((f) => f.url !== firstUrl);
    // The first slice, fetched before the link was measured: cached, and now revalidated (If-None-Match).
    expect(first.map((f) => f.revalidated)).toEqual([true]);
    // Every other slice came from the archive again, nothing asked of the cache, but the series'
    // thumbnail: the image library makes that request itself, with the browser's default caching.
    expect(new Set(rest.map((f) => f.url)).size).toBe(bySop.size - 1);
    expect(rest.filter((f) => f.status !== 200)).toEqual([]);
    expect(rest.filter((f) => f.revalidated).length).toBeLessThanOrEqual(1);
  });

  it('slices decoded in the frame-fetch worker are the images the image library makes of them', async () => {
    await page.waitForFunction((n) => (window as any).__pacs.viewport('vp-0').loaded === n, bySop.size, {
      timeout: 30_000,
    });
    const imageIds = [...new Set(frameRequests)].map((url) => `wadors:${url}`);
    let inWorker = 0;
    for (const imageId of imageIds) {
      const cmp = await page.evaluate((id) => (window as any).__pacs.compareWithLoader(id), imageId);
      expect(cmp, imageId).toBeDefined();
      expect(cmp.loader.decodedInWorker).toBe(false);
      if (cmp.cached.decodedInWorker) inWorker++;
      expect({ ...cmp.cached, decodedInWorker: false }, imageId).toEqual(cmp.loader);
    }
    // All but the first slices (fetched while the viewer starts, decoded by the library) came this way.
    expect(inWorker).toBeGreaterThanOrEqual(bySop.size / 2);
  });

  it('on a link slow from the start, asks for no slice but the first as stored', async () => {
    const slow = await env.newPage({ locale: 'en-US', width: 1280, height: 800 });
    const accepts: { url: string; accept: string }[] = [];
    slow.on('request', (r) => {
      if (r.url().includes('/frames/')) accepts.push({ url: r.url(), accept: r.headers().accept ?? '' });
    });
    await emulateSlowLink(slow);
    // The viewer's code also comes over the slow link: wait for the slices, not for the load event.
    await slow.goto(`${env.baseUrl}/viewer/${studyUID}`, { waitUntil: 'commit' });
    await slow.waitForFunction(() => (window as any).__pacs?.viewport('vp-0')?.loaded >= 10, null, {
      timeout: 120_000,
    });
    const [first, ...rest] = accepts;
    expect(first.accept).not.toContain(JPEG_LS_LOSSLESS);
    expect(rest.length).toBeGreaterThanOrEqual(9);
    expect(rest.filter((r) => !r.accept.includes(JPEG_LS_LOSSLESS))).toEqual([]);
    await slow.close();
  }, 150_000);

  it('scrolling (wheel and arrow keys) changes the slice shown', async () => {
    const before = await vpState(page);
    const [x, y] = await toPage(page, 256, 256);
    await page.mouse.move(x, y);
    for (let i = 0; i < 5; i++) {
      await page.mouse.wheel(0, 120);
      await page.waitForTimeout(60);
    }
    await page.waitForFunction(
      (i) => (window as any).__pacs.viewport('vp-0').imageIndex === i,
      before.imageIndex + 5,
    );
    await page.keyboard.press('ArrowDown');
    await page.waitForFunction(
      (i) => (window as any).__pacs.viewport('vp-0').imageIndex === i,
      before.imageIndex + 6,
    );
    await page.waitForTimeout(300);
    const after = await vpState(page);
    expect(sopOf(after.imageId)).not.toBe(sopOf(before.imageId));
    const img = bySop.get(sopOf(after.imageId))!;
    const cmp = await compareWithFile(page, img, after.voiRange);
    await env.screenshot(page, 'viewer-ct-scrolled');
    expect(cmp.worst, cmp.rows.join('\n')).toBeLessThanOrEqual(3);
    expect(await page.textContent('[data-testid="overlay-image"]')).toBe(
      `Im: ${after.imageIndex + 1}/${bySop.size}`,
    );
  });

  it('the scroll bar is a slider operated by the keyboard', async () => {
    const bar = page.locator('[data-testid="scrollbar-vp-0"]');
    expect(await bar.getAttribute('role')).toBe('slider');
    expect(await bar.getAttribute('aria-orientation')).toBe('vertical');
    expect(await bar.getAttribute('aria-label')).toBeTruthy();
    expect(Number(await bar.getAttribute('aria-valuemax'))).toBe(bySop.size);
    await bar.focus();
    const start = (await vpState(page)).imageIndex;
    const valueIs = (n: number) =>
      page.waitForFunction(
        (v) => document.querySelector('[data-testid="scrollbar-vp-0"]')?.getAttribute('aria-valuenow') === v,
        String(n),
      );
    // One step per key press: the viewer's own arrow-key shortcut must not scroll a second time.
    await page.keyboard.press('ArrowDown');
    await valueIs(start + 2);
    expect((await vpState(page)).imageIndex).toBe(start + 1);
    await page.keyboard.press('ArrowUp');
    await valueIs(start + 1);
    await page.keyboard.press('End');
    await valueIs(bySop.size);
    expect((await vpState(page)).imageIndex).toBe(bySop.size - 1);
    await page.keyboard.press('Home');
    await valueIs(1);
    expect(await bar.getAttribute('aria-valuetext')).toBe(`Image 1 of ${bySop.size}`);
    await page.keyboard.press('End');
    await valueIs(bySop.size);
    await page.keyboard.press('PageUp');
    await valueIs(Math.max(1, bySop.size - 10));
    // Back to where the test found it, for the tests that follow.
    await page.keyboard.press('Home');
    for (let i = 0; i < start; i++) await page.keyboard.press('ArrowDown');
    await valueIs(start + 1);
    await bar.blur();
  });

  it('a length measurement reports the millimetres the pixel spacing gives', async () => {
    await page.keyboard.press('Escape'); // reset the view
    await page.keyboard.press('l');
    const st = await vpState(page);
    const img = bySop.get(sopOf(st.imageId))!;
    const length = (await drawLength(page, [100, 300], [400, 300]))!;
    expect(length.unit).toBe('mm');
    // the drawn endpoints land on screen pixels: allow one image pixel of error
    expect(length.length!).toBeCloseTo(300 * img.pixelSpacing[1], -0.3);
    expect(Math.abs(length.length! - 300 * img.pixelSpacing[1])).toBeLessThan(img.pixelSpacing[1] * 1.5);
    const label = await page.$$eval('svg text', (ts) => ts.map((t) => t.textContent ?? '').join(' '));
    expect(label).toMatch(/[\d,]+\.\d mm/);
    await env.screenshot(page, 'viewer-ct-length');
  });

  it('a rectangle ROI on CT reports the mean HU of the pixels it covers', async () => {
    await page.keyboard.press('Delete');
    await page.keyboard.press('r');
    const st = await vpState(page);
    const img = bySop.get(sopOf(st.imageId))!;
    const c0 = 200;
    const r0 = 220;
    const c1 = 300;
    const r1 = 280;
    const roi = (await drawMeasurement<{
      mean?: number;
      stdDev?: number;
      area?: number;
      modalityUnit?: string;
    }>(page, 'RectangleROI', [c0, r0], [c1, r1], 400))!;
    expect(roi.modalityUnit).toBe('HU');
    // Handles on the centres of pixels (c0,r0) and (c1,r1): the ROI holds columns c0..c1-1 and rows r0..r1-1.
    let sum = 0;
    let n = 0;
    for (let r = r0; r < r1; r++)
      for (let c = c0; c < c1; c++) {
        sum += img.value(c, r);
        n++;
      }
    const mean = sum / n;
    expect(Math.abs(roi.mean! - mean)).toBeLessThan(1);
    const area = (c1 - c0) * (r1 - r0) * img.pixelSpacing[0] * img.pixelSpacing[1];
    expect(Math.abs(roi.area! - area) / area).toBeLessThan(0.03);
    const label = await page.$$eval('svg text', (ts) => ts.map((t) => t.textContent ?? '').join(' '));
    expect(label).toMatch(/Mean: -?[\d,]+\.\d HU/);
    await env.screenshot(page, 'viewer-ct-rectangle-roi');
  });

  it('MR with a fractional rescale: slices decoded in the worker are the images the image library makes', async () => {
    const urls: string[] = [];
    const onRequest = (r: { url(): string }) => {
      if (r.url().includes('/frames/')) urls.push(r.url());
    };
    page.on('request', onRequest);
    await page.goto(`${env.baseUrl}/viewer/${mrStudyUID}`);
    await page.waitForFunction(
      () => {
        const v = (window as any).__pacs?.viewport('vp-0');
        return v && v.count > 1 && v.loaded === v.count;
      },
      null,
      { timeout: 30_000 },
    );
    page.off('request', onRequest);
    let inWorker = 0;
    for (const imageId of [...new Set(urls)].map((url) => `wadors:${url}`)) {
      const cmp = await page.evaluate((id) => (window as any).__pacs.compareWithLoader(id), imageId);
      if (!cmp) continue; // a slice of a series not shown
      if (cmp.cached.decodedInWorker) inWorker++;
      expect(cmp.cached.dataType, imageId).toBe('Float32Array');
      expect({ ...cmp.cached, decodedInWorker: false }, imageId).toEqual(cmp.loader);
    }
    expect(inWorker).toBeGreaterThanOrEqual(10);
  });
});
