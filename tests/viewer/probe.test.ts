/**
 * The Probe in a real browser (headless Chromium, SwiftShader WebGL) against the real archive: it reads
 * the modality value of the slice shown, whichever slice of the stack that is, as the file holds it.
 */
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listFiles } from '../helpers/server';
import { type DicomImage, readDicom } from './dicom-file';
import {
  SAMPLES,
  skipReason,
  sopOf,
  startViewerEnv,
  toPage,
  type ViewerEnv,
  vpState,
  waitForImage,
} from './harness';

const CT_FOLDER = 'ct-series/philips-ingenuity-phantom-S2010';

describe.skipIf(Boolean(skipReason))('probe (real browser)', () => {
  let env: ViewerEnv;
  let page: Page;
  const bySop = new Map<string, DicomImage>();
  let ctStudy = '';

  beforeAll(async () => {
    const ctFiles = await listFiles(path.join(SAMPLES, CT_FOLDER));
    for (const f of ctFiles) {
      const img = await readDicom(f);
      bySop.set(img.sopInstanceUID, img);
      ctStudy = img.studyInstanceUID;
    }
    env = await startViewerEnv(ctFiles);
    page = await env.newPage({ locale: 'en-US', width: 1280, height: 800 });
  });
  afterAll(async () => {
    await env?.close();
  });

  it('the probe on image 10 of the CT shows the HU the file holds at that pixel of that slice', async () => {
    await page.goto(`${env.baseUrl}/viewer/${ctStudy}`);
    await waitForImage(page);
    const first = bySop.get(sopOf((await vpState(page)).imageId))!;
    for (let i = 0; i < 9; i++) await page.keyboard.press('ArrowDown');
    await page.waitForFunction(
      () => document.querySelector('[data-testid="overlay-image"]')?.textContent?.startsWith('Im: 10/'),
      null,
      { timeout: 30_000 },
    );
    await waitForImage(page);
    const st = await vpState(page);
    expect(st.imageIndex).toBe(9);
    const img = bySop.get(sopOf(st.imageId))!;
    expect(img).toBeDefined();
    expect(img.sopInstanceUID).not.toBe(first.sopInstanceUID);
    // A pixel inside the head, in a flat 3×3 neighbourhood (the click lands on whole CSS pixels, up to
    // one image pixel off), where this slice's values are not the first slice's: the reading must come
    // from the slice shown.
    let point: [number, number] | undefined;
    for (let r = 160; r < 360 && !point; r += 4)
      for (let c = 160; c < 360 && !point; c += 4) {
        const v = img.value(c, r);
        let ok = v > -500;
        for (let dr = -1; dr <= 1 && ok; dr++)
          for (let dc = -1; dc <= 1 && ok; dc++) {
            const n = img.value(c + dc, r + dr);
            ok = Math.abs(n - v) <= 3 && Math.abs(first.value(c + dc, r + dr) - n) > 20;
          }
        if (ok) point = [c, r];
      }
    expect(point, 'a flat pixel inside the head').toBeDefined();
    const [c, r] = point!;

    await page.keyboard.press('b');
    const [x, y] = await toPage(page, c, r);
    await page.mouse.click(Math.round(x), Math.round(y));
    type Measurement = {
      toolName: string;
      stats: { index?: number[]; value?: number; modalityUnit?: string };
    };
    const probeOf = async () =>
      ((await page.evaluate(() => (window as any).__pacs.measurements())) as Measurement[]).find(
        (p) => p.toolName === 'Probe',
      );
    // The statistics are computed when the annotation is next rendered: wait for them (a loaded machine
    // may take more than a frame).
    await expect.poll(async () => (await probeOf())?.stats.index, { timeout: 10_000 }).toBeDefined();
    const m = [await probeOf()];
    const probe = m.find((p) => p?.toolName === 'Probe');
    expect(probe, JSON.stringify(m)).toBeDefined();
    const [i, j, k] = probe!.stats.index ?? [];
    expect(Math.abs(i - c) <= 1 && Math.abs(j - r) <= 1, `probed (${i}, ${j}) near (${c}, ${r})`).toBe(true);
    expect(k).toBe(9); // Cornerstone names the slice by its stack index
    const want = img.value(i, j);
    expect(probe!.stats.modalityUnit).toBe('HU');
    expect(probe!.stats.value, `HU at (${i}, ${j}) of image 10`).toBeDefined();
    expect(Math.abs(probe!.stats.value! - want)).toBeLessThan(0.5);
    const label = await page.$$eval('svg text', (ts) => ts.map((t) => t.textContent ?? '').join(' '));
    expect(label).toContain(`${Math.round(want)} HU`);
    await env.screenshot(page, 'viewer-ct-probe-image-10');
    await page.keyboard.press('Delete');
  });
});
