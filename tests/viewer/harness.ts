/**
 * Real-browser test harness for the viewer: the real archive (tests/helpers/server.ts, serving the
 * built viewer) loaded with sample files, and Debian's headless Chromium driven by playwright-core
 * with software WebGL (SwiftShader), as in ../shared/viewer-recipe.md.
 *
 * PACS_TEST_URL=http://host:port runs the tests against an already running archive that holds the
 * samples (nothing is loaded then).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  chromium,
  type Page,
} from 'playwright-core';
import {
  loadSamples,
  REPO,
  SAMPLES,
  SAMPLES_MISSING,
  samplesPresent,
  startServer,
  type TestServer,
} from '../helpers/server';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS = path.join(REPO, 'test-artifacts', 'viewer');
const viewerBuilt = existsSync(path.join(REPO, 'viewer/dist/index.html'));

/**
 * Why the viewer tests cannot run here, or '' when they can. Only missing sample data skips them:
 * Chromium and the viewer build are provided by `npm test` (scripts/test.sh), so their absence fails.
 */
export const skipReason = samplesPresent ? '' : SAMPLES_MISSING;
if (samplesPresent && !existsSync(CHROMIUM)) {
  throw new Error(
    `Chromium not found at ${CHROMIUM}: run scripts/install-test-deps.sh (npm test does) or set CHROMIUM_PATH`,
  );
}
if (samplesPresent && !viewerBuilt)
  throw new Error('viewer/dist is missing: run npm run build:viewer (npm test does)');
if (skipReason) console.warn(`[viewer tests] ${skipReason}`);

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-default-apps',
  '--disable-extensions',
  '--disable-sync',
  '--no-first-run',
  '--mute-audio',
];

/**
 * Records the uncaught errors and rejections of a page in `into` (and prints them); a suite checks the
 * list is empty at its end with expectNoPageErrors.
 */
export function watchPageErrors(page: Page, into: string[]): void {
  page.on('pageerror', (e) => {
    console.error(`[page error] ${e.message}`);
    into.push(e.message);
  });
}

export function expectNoPageErrors(errors: string[]): void {
  if (errors.length > 0)
    throw new Error(`the viewer left uncaught errors in its pages:\n${errors.join('\n')}`);
}

export interface ViewerEnv {
  baseUrl: string;
  browser: Browser;
  newPage(opts?: { locale?: string; width?: number; height?: number }): Promise<Page>;
  screenshot(page: Page, name: string): Promise<void>;
  close(): Promise<void>;
}

export async function startViewerEnv(samples: string[]): Promise<ViewerEnv> {
  let baseUrl = process.env.PACS_TEST_URL ?? '';
  let closeServer: () => Promise<void> = async () => {};
  if (!baseUrl) {
    const server = await startServer();
    baseUrl = server.baseUrl;
    closeServer = () => server.close();
    await loadSamples(
      baseUrl,
      samples.map((s) => (path.isAbsolute(s) ? s : path.join(SAMPLES, s))),
    );
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  await mkdir(ARTIFACTS, { recursive: true });
  const pages: Page[] = [];
  /** Uncaught errors and rejections of the viewer's pages: a suite that leaves one fails at close(). */
  const pageErrors: string[] = [];
  return {
    baseUrl,
    browser,
    async newPage(opts = {}) {
      const page = await browser.newPage({
        viewport: { width: opts.width ?? 1280, height: opts.height ?? 800 },
        locale: opts.locale ?? 'en-US',
      });
      watchPageErrors(page, pageErrors);
      pages.push(page);
      return page;
    },
    async screenshot(page, name) {
      await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
    },
    async close() {
      await browser.close().catch(() => undefined);
      await closeServer();
      expectNoPageErrors(pageErrors);
    },
  };
}

export interface SignedInEnv {
  server: TestServer;
  /** A page in a browser context of its own (its own cookies: another user), 1280 x 800, en-US. */
  newPage(opts?: BrowserContextOptions): Promise<Page>;
  /** Closes the pages, the browser and the archive; fails when a page had an uncaught error. */
  close(): Promise<void>;
}

/**
 * The archive with sign-in on (the administrator's password and API token given), the files loaded
 * with that token, and Chromium: for the suites that sign users in and compare what each may see.
 */
export async function startSignedInEnv(opts: {
  adminPassword: string;
  adminToken: string;
  files: string[];
}): Promise<SignedInEnv> {
  const server = await startServer({
    env: { PACS_AUTH: 'on', PACS_ADMIN_PASSWORD: opts.adminPassword, PACS_ADMIN_TOKEN: opts.adminToken },
  });
  let browser: Browser;
  try {
    await loadSamples(server.baseUrl, opts.files, { token: opts.adminToken });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  } catch (err) {
    await server.close();
    throw err;
  }
  const contexts: BrowserContext[] = [];
  /** Uncaught errors of the pages (watchPageErrors): none may be left at the end. */
  const pageErrors: string[] = [];
  return {
    server,
    async newPage(contextOptions = {}) {
      const context = await browser.newContext({
        viewport: { width: 1280, height: 800 },
        locale: 'en-US',
        ...contextOptions,
      });
      contexts.push(context);
      const page = await context.newPage();
      watchPageErrors(page, pageErrors);
      return page;
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => undefined);
      await browser.close().catch(() => undefined);
      await server.close();
      expectNoPageErrors(pageErrors);
    },
  };
}

/** Files of a sample folder (relative to the samples root). */
export function sampleFolder(rel: string, names: string[]): string[] {
  return names.map((n) => path.join(rel, n));
}

/** Waits until viewport `id` shows an image that has really loaded and rendered. */
/**
 * Chrome's network emulation on page: 20 Mbit/s, 20 ms (it applies to the viewer's frame-fetch worker
 * too). 512 kB arrive in about 0.2 s: the viewer's transfer policy measures the link as slow.
 */
export async function emulateSlowLink(page: Page): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 20,
    downloadThroughput: 2_500_000,
    uploadThroughput: 2_500_000,
  });
}

export async function waitForImage(page: Page, id = 'vp-0', timeout = 60_000): Promise<void> {
  await page.waitForFunction(
    (vid) => {
      const w = window as unknown as { __pacs?: { viewport(id: string): { rendered: boolean } | undefined } };
      return Boolean(w.__pacs?.viewport(vid)?.rendered);
    },
    id,
    { timeout },
  );
  await page.waitForTimeout(250);
}

export { SAMPLES };

/** What the viewer shows in a viewport (window.__pacs, viewer/src/features/viewer/test-hooks.ts). */
export interface VpState {
  imageIndex: number;
  count: number;
  imageId: string;
  voiRange: { lower: number; upper: number };
  loaded: number;
}

export const vpState = (page: Page, id = 'vp-0') =>
  page.evaluate((vid) => (window as any).__pacs.viewport(vid), id) as Promise<VpState>;

/** Where an image pixel of a viewport is on the page. */
export const toPage = (page: Page, col: number, row: number, id = 'vp-0') =>
  page.evaluate(([vid, c, r]) => (window as any).__pacs.imageToPage(vid, c, r), [
    id,
    col,
    row,
  ] as const) as Promise<[number, number]>;

/** The SOP Instance UID of a wadors: image id. */
export function sopOf(imageId: string): string {
  return /\/instances\/([^/]+)\/frames\//.exec(imageId)?.[1] ?? '';
}

/**
 * Drags the mouse from one image pixel to another in viewport vp-0 with the active tool (a measuring
 * tool draws its annotation) and returns the statistics the viewer has for that tool's annotation.
 */
export async function drawMeasurement<S = Record<string, number | string | undefined>>(
  page: Page,
  toolName: string,
  from: [number, number],
  to: [number, number],
  settleMs = 300,
): Promise<S | undefined> {
  const [x1, y1] = await toPage(page, ...from);
  const [x2, y2] = await toPage(page, ...to);
  await page.mouse.move(x1, y1);
  await page.mouse.down();
  await page.mouse.move(x2, y2, { steps: 10 });
  await page.mouse.up();
  await page.waitForTimeout(settleMs);
  const m = (await page.evaluate(() => (window as any).__pacs.measurements())) as {
    toolName: string;
    stats: S;
  }[];
  return m.find((x) => x.toolName === toolName)?.stats;
}

/** A Length measurement from one image pixel to another (the Length tool active). */
export const drawLength = (page: Page, from: [number, number], to: [number, number]) =>
  drawMeasurement<{ length?: number; unit?: string }>(page, 'Length', from, to);
