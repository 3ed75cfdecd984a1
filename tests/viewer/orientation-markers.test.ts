/**
 * Orientation markers in a real browser (headless Chromium, SwiftShader WebGL) against the real archive:
 * from ImageOrientationPatient when the file has it, else from PatientOrientation (PS3.3 C.7.6.1.1.1),
 * else none, and no slice location either.
 */
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listFiles } from '../helpers/server';
import { sampleObject } from '../samples';
import { readDicom } from './dicom-file';
import { SAMPLES, skipReason, startViewerEnv, type ViewerEnv, waitForImage } from './harness';

const CT_FOLDER = 'ct-series/philips-ingenuity-phantom-S2010';
/**
 * Chest radiograph (DX), PatientOrientation L\F, no ImageOrientationPatient. The CR chest RG1 has the
 * same orientation but PixelSpacing 0\0, with which the viewer draws nothing at all.
 */
const CHEST = 'cr-dx/dx_image.dcm';
/** CR tibia, PatientOrientation R\F, no ImageOrientationPatient. */
const CR_TIBIA = 'cr-dx/RG3_J2KR.dcm';
/** Ultrasound: neither ImageOrientationPatient nor PatientOrientation. */
const US = 'us-multiframe/philips-us-jpeg-ybr.dcm';

/** The orientation markers shown on viewport vp-0 (null when there are none) and its lower-left lines. */
async function overlayOf(page: Page) {
  await page.waitForFunction(() => document.querySelector('[data-testid="overlay-image"]'), null, {
    timeout: 10_000,
  });
  await page.waitForTimeout(200);
  return page.evaluate(() => {
    const vp = document.querySelector('[data-viewport-id="vp-0"]')!;
    const text = (edge: string) => vp.querySelector(`.overlay .marker.${edge}`)?.textContent ?? null;
    const markers = vp.querySelector('.overlay .marker')
      ? { left: text('left'), right: text('right'), top: text('top'), bottom: text('bottom') }
      : null;
    const lowerLeft = Array.from(vp.querySelectorAll('.overlay .bl > div'), (d) => d.textContent ?? '');
    return { markers, lowerLeft };
  });
}

describe.skipIf(Boolean(skipReason))('orientation markers (real browser)', () => {
  let env: ViewerEnv;
  let page: Page;
  let ctStudy = '';

  beforeAll(async () => {
    const ctFiles = await listFiles(path.join(SAMPLES, CT_FOLDER));
    ctStudy = (await readDicom(ctFiles[0])).studyInstanceUID;
    env = await startViewerEnv([...ctFiles, CHEST, CR_TIBIA, US]);
    page = await env.newPage({ locale: 'en-US', width: 1280, height: 800 });
  });
  afterAll(async () => {
    await env?.close();
  });

  it('CT markers come from ImageOrientationPatient, with the slice location', async () => {
    await page.goto(`${env.baseUrl}/viewer/${ctStudy}`);
    await waitForImage(page);
    const o = await overlayOf(page);
    // Rows run to patient left (1,0,0); columns posterior and to the feet (0, 0.948, −0.317).
    expect(o.markers).toEqual({ left: 'R', right: 'L', top: 'AH', bottom: 'PF' });
    expect(o.lowerLeft.some((l) => /^Loc: -?[\d,]+\.\d mm$/.test(l))).toBe(true);
  });

  it('a chest radiograph gets its markers from PatientOrientation (L\\F), following a flip, and no slice location', async () => {
    await page.goto(`${env.baseUrl}/viewer/${sampleObject(CHEST).study}`);
    await waitForImage(page);
    let o = await overlayOf(page);
    // Rows run toward the patient's left, columns toward the feet.
    expect(o.markers).toEqual({ left: 'R', right: 'L', top: 'H', bottom: 'F' });
    expect(o.lowerLeft.filter((l) => l.startsWith('Loc:'))).toEqual([]);
    await env.screenshot(page, 'viewer-dx-chest-markers');
    await page.keyboard.press('h');
    await page.waitForTimeout(300);
    o = await overlayOf(page);
    expect(o.markers).toEqual({ left: 'L', right: 'R', top: 'H', bottom: 'F' });
  });

  it('a CR tibia with PatientOrientation R\\F has R on the right and L on the left', async () => {
    await page.goto(`${env.baseUrl}/viewer/${sampleObject(CR_TIBIA).study}`);
    await waitForImage(page);
    const o = await overlayOf(page);
    expect(o.markers).toEqual({ left: 'L', right: 'R', top: 'H', bottom: 'F' });
    expect(o.lowerLeft.filter((l) => l.startsWith('Loc:'))).toEqual([]);
  });

  it('ultrasound, with no orientation in the file, gets no markers and no slice location', async () => {
    await page.goto(`${env.baseUrl}/viewer/${sampleObject(US).study}`);
    await waitForImage(page);
    const o = await overlayOf(page);
    expect(o.markers).toBeNull();
    expect(o.lowerLeft.filter((l) => l.startsWith('Loc:'))).toEqual([]);
    await env.screenshot(page, 'viewer-us-no-markers');
  });
});
