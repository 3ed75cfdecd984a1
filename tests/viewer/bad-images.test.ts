/**
 * Images the viewer must cope with, in a real browser against the real archive: a series whose first
 * slice cannot be decoded (the others can), and a radiograph whose PixelSpacing is 0\0.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drawLength, skipReason, startViewerEnv, type ViewerEnv } from './harness';

/** NEMA WG04 NM1: image 1 (InstanceNumber 3) is a corrupt JPEG 2000, the other three decode. */
const NM1_STUDY = '1.3.6.1.4.1.5962.1.2.8.20040826185059.5457';
const NM1_FILES = [
  'malformed/JPEG2000-embedded-sequence-delimiter.dcm',
  'nm-pet/NM1_JPLL.dcm',
  'transfer-syntaxes/JPGExtended.dcm',
  'nm-pet/NM1_JLSL.dcm',
];
/** NEMA WG04 RG1: a chest CR in JPEG 2000 with PixelSpacing "0.000\0.000". */
const RG1_STUDY = '1.3.6.1.4.1.5962.1.2.9.20040826185059.5457';
const RG1_FILE = 'cr-dx/RG1_J2KI.dcm';

interface Seen {
  index: number;
  error: string;
  wl: string;
  zoom: string;
  /** share of the viewport's canvas pixels brighter than 16 */
  lit: number;
}

/** What the radiologist sees in viewport vp-0: the slice number, the message, the overlay, the pixels. */
function seen(page: Page): Promise<Seen> {
  return page.evaluate(() => {
    const v = (window as any).__pacs.viewport('vp-0');
    const canvas = document.querySelector<HTMLCanvasElement>('[data-testid="viewport-vp-0"] canvas');
    let lit = 0;
    const ctx = canvas?.getContext('2d', { willReadFrequently: true });
    // A hidden canvas shows nothing, whatever it holds.
    if (canvas && ctx && canvas.width > 0 && getComputedStyle(canvas).visibility === 'visible') {
      const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) if (Math.max(px[i], px[i + 1], px[i + 2]) > 16) n++;
      lit = n / (px.length / 4);
    }
    const text = (sel: string) => document.querySelector(sel)?.textContent?.trim() ?? '';
    const zoom = [...document.querySelectorAll('.overlay .br div')]
      .map((d) => d.textContent ?? '')
      .find((s) => s.startsWith('Zoom'));
    return {
      index: v?.imageIndex ?? -1,
      error: text('.viewport-message.error'),
      wl: text('[data-testid="overlay-wl"]'),
      zoom: zoom ?? '',
      lit,
    };
  });
}

const WL = /^W: \d[\d,.]* L: -?\d[\d,.]*$/;
const ZOOM = /^Zoom: \d+(\.\d+)?×$/;

describe.skipIf(Boolean(skipReason))(
  'images that cannot be decoded or have a zero pixel spacing (real browser)',
  () => {
    let env: ViewerEnv;
    beforeAll(async () => {
      env = await startViewerEnv([...NM1_FILES, RG1_FILE]);
    });
    afterAll(async () => {
      await env?.close();
    });

    /** Goes to slice `index` (0-based) with the viewer's keys and waits until it is settled. */
    async function goTo(page: Page, index: number, bad: boolean): Promise<Seen> {
      const now = await page.evaluate(() => (window as any).__pacs.viewport('vp-0').imageIndex);
      const key = index > now ? 'ArrowDown' : 'ArrowUp';
      for (let i = 0; i < Math.abs(index - now); i++) await page.keyboard.press(key);
      await page.waitForFunction(
        ([want, bad]) => {
          const v = (window as any).__pacs.viewport('vp-0');
          if (v?.imageIndex !== want) return false;
          const error = document.querySelector('.viewport-message.error');
          if (bad) return Boolean(error);
          return !error && v.rendered && Boolean(document.querySelector('[data-testid="overlay-wl"]'));
        },
        [index, bad] as const,
        { timeout: 30_000 },
      );
      await page.waitForTimeout(400); // the canvas is drawn after the image is set
      return seen(page);
    }

    it('a slice that cannot be decoded says so, and the other slices of the series are shown', async () => {
      const page = await env.newPage({ locale: 'en-US' });
      // The failure is the viewport's message, not an error the page leaves unhandled.
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(`${env.baseUrl}/viewer/${NM1_STUDY}`);
      await page.waitForFunction(() => document.querySelector('.viewport-message.error'), null, {
        timeout: 30_000,
      });
      await page.waitForTimeout(400);
      const first = await seen(page);
      await env.screenshot(page, 'bad-images-nm1-slice-1');
      expect(first.index).toBe(0);
      expect(first.error).toBe('This image could not be displayed: its pixel data could not be decoded');
      expect(first.wl).toBe('');

      const shown: Seen[] = [];
      for (const i of [1, 2, 3]) {
        const s = await goTo(page, i, false);
        await env.screenshot(page, `bad-images-nm1-slice-${i + 1}`);
        shown.push(s);
      }
      for (const s of shown) {
        expect(s.error, JSON.stringify(s)).toBe('');
        expect(s.wl, JSON.stringify(s)).toMatch(WL);
        expect(s.zoom, JSON.stringify(s)).toMatch(ZOOM);
        expect(s.lit, JSON.stringify(s)).toBeGreaterThan(0.02);
      }

      // Back to the bad slice and forward again: scrolling keeps working.
      const again = await goTo(page, 0, true);
      await env.screenshot(page, 'bad-images-nm1-slice-1-again');
      expect(again.error).toBe('This image could not be displayed: its pixel data could not be decoded');
      // Not the slice shown before it, nor that slice's window and zoom, under the slice's number.
      expect(again.lit, JSON.stringify(again)).toBeLessThan(0.001);
      expect(again.wl).toBe('');
      expect(again.zoom).toBe('');
      expect(await page.textContent('[data-testid="overlay-image"]')).toBe('Im: 1/4');
      const next = await goTo(page, 1, false);
      expect(next.wl).toMatch(WL);
      expect(next.lit).toBeGreaterThan(0.02);
      expect(pageErrors).toEqual([]);
      await page.close();
    }, 120_000);

    it('a radiograph with PixelSpacing 0\\0 is shown, and a length on it is in pixels', async () => {
      const page = await env.newPage({ locale: 'en-US' });
      await page.goto(`${env.baseUrl}/viewer/${RG1_STUDY}`);
      await page.waitForFunction(
        () =>
          document.querySelector('.viewport-message.error') ||
          ((window as any).__pacs?.viewport('vp-0')?.rendered &&
            document.querySelector('[data-testid="overlay-wl"]')),
        null,
        { timeout: 60_000 },
      );
      await page.waitForTimeout(600);
      const s = await seen(page);
      await env.screenshot(page, 'bad-images-rg1');
      expect(s.error, JSON.stringify(s)).toBe('');
      expect(s.wl, JSON.stringify(s)).toMatch(WL);
      expect(s.zoom, JSON.stringify(s)).toMatch(ZOOM);
      expect(s.lit, JSON.stringify(s)).toBeGreaterThan(0.2);

      // The spacing is unknown: a length across 1000 image pixels is 1000 px, not millimetres.
      await page.keyboard.press('l');
      const length = await drawLength(page, [400, 900], [1400, 900]);
      expect(length?.unit).toBe('px');
      expect(Math.abs((length?.length ?? 0) - 1000)).toBeLessThan(8);
      const label = await page.$$eval('svg text', (ts) => ts.map((t) => t.textContent ?? '').join(' '));
      expect(label).toMatch(/\d px/);
      expect(label).not.toMatch(/mm/);
      await env.screenshot(page, 'bad-images-rg1-length');
      await page.close();
    });
  },
);
