/**
 * The viewer on a phone (headless Chromium with touch, a coarse pointer), against the real archive: a
 * patient or a referring doctor who opens a study drags one finger to go through the images and
 * pinches with two to zoom; window/level is one tap away in the toolbar. At a PC nothing changes.
 */
import path from 'node:path';
import type { BrowserContext, CDPSession, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listFiles } from '../helpers/server';
import { readDicom } from './dicom-file';
import {
  drawLength,
  expectNoPageErrors,
  SAMPLES,
  skipReason,
  startViewerEnv,
  toPage,
  type ViewerEnv,
  vpState,
  waitForImage,
  watchPageErrors,
} from './harness';

const CT_FOLDER = 'ct-series/philips-ingenuity-phantom-S2010';
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 1 };

type Point = [number, number];

/** One touch gesture: every finger moves from its start to its end in `steps` moves (CDP touch events). */
async function gesture(cdp: CDPSession, fingers: { from: Point; to: Point }[], steps = 12): Promise<void> {
  const at = (t: number) =>
    fingers.map(({ from, to }, id) => ({
      x: from[0] + (to[0] - from[0]) * t,
      y: from[1] + (to[1] - from[1]) * t,
      id,
    }));
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: at(0) });
  for (let i = 1; i <= steps; i++) {
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: at(i / steps) });
    await new Promise((r) => setTimeout(r, 16));
  }
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await new Promise((r) => setTimeout(r, 300));
}

/** CSS pixels between image columns 100 and 300 of row 256: grows when the image is zoomed in. */
async function spread(page: Page): Promise<number> {
  const [a, b] = [await toPage(page, 100, 256), await toPage(page, 300, 256)];
  return Math.hypot(b[0] - a[0], b[1] - a[1]);
}

describe.skipIf(Boolean(skipReason))('touch gestures (real browser)', () => {
  let env: ViewerEnv;
  let context: BrowserContext;
  let study = '';

  /** Uncaught errors of the phone page (watchPageErrors): none may be left at the end. */
  const pageErrors: string[] = [];
  beforeAll(async () => {
    const files = await listFiles(path.join(SAMPLES, CT_FOLDER));
    study = (await readDicom(files[0])).studyInstanceUID;
    env = await startViewerEnv(files);
    context = await env.browser.newContext({ ...PHONE, locale: 'en-US' });
  });
  afterAll(async () => {
    await context?.close();
    await env?.close();
    expectNoPageErrors(pageErrors);
  });

  it('on a phone one finger scrolls through the images, two fingers zoom, and window/level is a tap away', async () => {
    const page = await context.newPage();
    watchPageErrors(page, pageErrors);
    await page.goto(`${env.baseUrl}/viewer/${study}`);
    await waitForImage(page);
    const cdp = await context.newCDPSession(page);
    expect(await page.getAttribute('[data-tool="scroll"]', 'aria-pressed')).toBe('true');
    expect(await page.getAttribute('[data-tool="windowLevel"]', 'aria-pressed')).toBe('false');

    const box = (await page.locator('.viewport').first().boundingBox())!;
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    const before = await vpState(page);
    expect(before.imageIndex).toBe(0);
    expect(before.count).toBeGreaterThan(20);

    // One finger down the image: later images, the window unchanged.
    await gesture(cdp, [{ from: [cx, cy - 150], to: [cx, cy + 150] }]);
    await waitForImage(page);
    const scrolled = await vpState(page);
    expect(scrolled.imageIndex).toBeGreaterThan(0);
    expect(scrolled.voiRange).toEqual(before.voiRange);

    // Two fingers apart: the image grows, on the same slice, with the same window.
    const small = await spread(page);
    await gesture(cdp, [
      { from: [cx - 30, cy], to: [cx - 140, cy] },
      { from: [cx + 30, cy], to: [cx + 140, cy] },
    ]);
    const zoomed = await vpState(page);
    expect(await spread(page)).toBeGreaterThan(small * 1.2);
    expect(zoomed.imageIndex).toBe(scrolled.imageIndex);
    expect(zoomed.voiRange).toEqual(before.voiRange);

    // Window/level from the toolbar: the same finger now changes the window, not the slice.
    await page.tap('[data-tool="windowLevel"]');
    expect(await page.getAttribute('[data-tool="windowLevel"]', 'aria-pressed')).toBe('true');
    await gesture(cdp, [{ from: [cx - 100, cy], to: [cx + 100, cy + 60] }]);
    const leveled = await vpState(page);
    expect(leveled.imageIndex).toBe(scrolled.imageIndex);
    expect(leveled.voiRange).not.toEqual(before.voiRange);
    await page.close();
  });

  it('at a PC the left button still sets window/level, and Scroll (S) gives it the images', async () => {
    const page = await env.newPage({ locale: 'en-US' });
    await page.goto(`${env.baseUrl}/viewer/${study}`);
    await waitForImage(page);
    expect(await page.getAttribute('[data-tool="windowLevel"]', 'aria-pressed')).toBe('true');
    const box = (await page.locator('.viewport').first().boundingBox())!;
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    const drag = async (dx: number, dy: number) => {
      await page.mouse.move(cx, cy);
      await page.mouse.down();
      for (let i = 1; i <= 10; i++) await page.mouse.move(cx + (dx * i) / 10, cy + (dy * i) / 10);
      await page.mouse.up();
      await page.waitForTimeout(300);
    };
    const before = await vpState(page);
    await page.keyboard.press('s');
    expect(await page.getAttribute('[data-tool="scroll"]', 'aria-pressed')).toBe('true');
    await drag(0, 200);
    await waitForImage(page);
    const scrolled = await vpState(page);
    expect(scrolled.imageIndex).toBeGreaterThan(0);
    expect(scrolled.voiRange).toEqual(before.voiRange);
    // The wheel still scrolls, whichever tool has the button.
    await page.keyboard.press('w');
    await page.mouse.move(cx, cy);
    await page.mouse.wheel(0, 100);
    await page.waitForTimeout(300);
    expect((await vpState(page)).imageIndex).toBe(scrolled.imageIndex + 1);

    // Each tool chosen after another has the left button alone: Scroll, then Pan pans (the image moves,
    // the slice stays), then Length measures (the image stays).
    await page.keyboard.press('s');
    await page.keyboard.press('p');
    const at = await vpState(page);
    const [x0] = await toPage(page, 256, 256);
    await drag(80, 0);
    const [x1] = await toPage(page, 256, 256);
    expect(x1 - x0).toBeGreaterThan(40);
    expect((await vpState(page)).imageIndex).toBe(at.imageIndex);
    await page.keyboard.press('l');
    const length = await drawLength(page, [200, 200], [300, 200]);
    expect(length?.length).toBeGreaterThan(0);
    expect((await toPage(page, 256, 256))[0]).toBeCloseTo(x1, 0);
    await page.close();
  });
});
