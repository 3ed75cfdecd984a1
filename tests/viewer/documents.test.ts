/**
 * A study holding a PDF report (Encapsulated PDF, a series without images): the viewer offers the
 * document, and its link opens the PDF itself.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dicomParser from 'dicom-parser';
import { readSample } from '../samples';
import { skipReason, startViewerEnv, type ViewerEnv } from './harness';

const PDF = 'sr-pdf-seg/encapsulated_pdf_HelloWorld.dcm';
/** An MR whose PatientName is empty. */
const NO_NAME = 'mr/emri_small.dcm';

describe.skipIf(Boolean(skipReason))('documents in a study (real browser)', () => {
  let env: ViewerEnv;
  let page: Page;
  let studyUID = '';

  beforeAll(async () => {
    env = await startViewerEnv([PDF, NO_NAME]);
    studyUID = dicomParser.parseDicom(readSample(PDF)).string('x0020000d') ?? '';
    page = await env.newPage({ locale: 'en-US', width: 1280, height: 800 });
  });
  afterAll(async () => {
    await env?.close();
  });

  it('offers the PDF of an Encapsulated PDF series, and its link opens the document', async () => {
    await page.goto(`${env.baseUrl}/viewer/${studyUID}`);
    const link = page.locator('a.series-document');
    await link.waitFor({ timeout: 30_000 });
    expect(await link.textContent()).toMatch(/^Open .+ \(PDF\)$/);
    expect(await link.getAttribute('target')).toBe('_blank');
    const href = (await link.getAttribute('href')) ?? '';
    const r = await page.request.get(new URL(href, env.baseUrl).toString());
    expect(r.status()).toBe(200);
    expect(r.headers()['content-type']).toBe('application/pdf');
    expect((await r.body()).subarray(0, 5).toString('latin1')).toBe('%PDF-');
    // The study has no images: the viewport says where its document is.
    expect(await page.locator('.viewport-message').first().textContent()).toBe(
      'This study has no images: open its documents from the series panel.',
    );
    await env.screenshot(page, 'documents');
  });

  it('lists a study without a patient name with a link that says so, reachable from the keyboard', async () => {
    const study = dicomParser.parseDicom(readSample(NO_NAME)).string('x0020000d') ?? '';
    await page.goto(`${env.baseUrl}/`);
    const link = page.locator(`a[href^="/viewer/${study}"]`);
    await link.waitFor({ timeout: 30_000 });
    expect((await link.textContent())?.trim()).toBe('(no name)');
    await link.focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(`**/viewer/${study}`);
  });
});
