/**
 * `npm run bench:viewer`: how fast the viewer shows a 300-slice 512×512 CT series (synthetic phantom
 * made with dcmjs, server/demo.ts), in headless Chromium with software WebGL, measured from
 * navigation start:
 *   - first image: the first moment the viewport canvas really shows the image (its pixels are read);
 *   - all slices: every slice of the series decoded in the viewer's cache;
 *   - bytes: all bytes the page received (encoded, as on the wire).
 * Once on loopback and once with Chrome DevTools network emulation at 10 Mbit/s and 50 ms latency.
 * Loopback runs Chromium as a user's browser runs it, driven over its DevTools pipe with nothing enabled
 * (scripts/lib/cdp-pipe.ts); the throttled run needs the Network domain for its emulation and uses
 * Playwright. BENCH_DRIVER=playwright runs loopback under Playwright too (its network instrumentation
 * of every request costs about a second of the two cores here: docs/viewer-benchmarks.md).
 *
 *   npm run bench:viewer                          # starts the archive in-process (needs viewer/dist)
 *   PACS_URL=http://127.0.0.1:8080 npm run bench:viewer   # an archive already running
 *   BENCH_RUNS=3 BENCH_SLICES=300 ...
 *   BENCH_ONLY=loopback|throttled  BENCH_DATA_DIR=/tmp/bench-archive (kept between runs)
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ctPhantomSeries, demoUid } from '../server/demo';
import { launchOverPipe } from './lib/cdp-pipe';
import { reasonText, type StowPart, stow } from './lib/stow';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SLICES = Number(process.env.BENCH_SLICES ?? 300);
const RUNS = Number(process.env.BENCH_RUNS ?? 1);
const ARGS = [
  '--no-sandbox',
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];

interface Conditions {
  name: string;
  latency: number;
  /** bytes per second, or -1 for none */
  throughput: number;
}
const ALL_CONDITIONS: Conditions[] = [
  { name: 'loopback', latency: 0, throughput: -1 },
  { name: '10 Mbit/s, 50 ms', latency: 50, throughput: (10 * 1000 * 1000) / 8 },
];
/** BENCH_ONLY=loopback or BENCH_ONLY=throttled runs one of the two. */
const CONDITIONS = ALL_CONDITIONS.filter(
  (c) => !process.env.BENCH_ONLY || (process.env.BENCH_ONLY === 'loopback') === c.throughput < 0,
);

async function startArchive(): Promise<{ baseUrl: string; close(): Promise<void> }> {
  if (process.env.PACS_URL)
    return { baseUrl: process.env.PACS_URL.replace(/\/+$/, ''), close: async () => undefined };
  const repo = path.resolve(import.meta.dirname, '..');
  if (!existsSync(path.join(repo, 'viewer/dist/index.html'))) {
    throw new Error('viewer/dist is missing: run "npm run build:viewer" first');
  }
  const { startServer } = await import('../tests/helpers/server');
  // BENCH_DATA_DIR keeps the archive (and the generated series) between runs of the benchmark.
  const s = await startServer({ dataDir: process.env.BENCH_DATA_DIR || undefined });
  return { baseUrl: s.baseUrl, close: () => s.close() };
}

async function loadSeries(baseUrl: string): Promise<string> {
  const study = demoUid(`bench-${SLICES}/study`);
  const res = await fetch(`${baseUrl}/dicomweb/studies?StudyInstanceUID=${study}&includefield=00201208`, {
    headers: { Accept: 'application/dicom+json' },
  });
  const found =
    res.ok && res.status !== 204 ? ((await res.json()) as Record<string, { Value?: number[] }>[]) : [];
  if (Number(found[0]?.['00201208']?.Value?.[0] ?? 0) >= SLICES) return study;
  process.stdout.write(`Generating and storing ${SLICES} CT slices (512×512) … `);
  const t0 = Date.now();
  let batch: StowPart[] = [];
  const send = async () => {
    if (!batch.length) return;
    const r = await stow(batch, { dicomwebRoot: `${baseUrl}/dicomweb` });
    if (r.failed.length || r.status >= 400) {
      throw new Error(
        `STOW-RS failed (HTTP ${r.status}): ${reasonText(r.failed[0]?.failureReason)} ${r.failed[0]?.comment ?? r.text ?? ''}`,
      );
    }
    batch = [];
  };
  for (const bytes of ctPhantomSeries({
    key: `bench-${SLICES}`,
    studyInstanceUID: study,
    seriesNumber: 1,
    seriesDescription: `Benchmark ${SLICES} × 512² CT`,
    slices: SLICES,
    sliceThickness: 1,
    size: 512,
    patient: { PatientName: 'Benchmark^Viewer', PatientID: 'BENCH-VIEWER', AccessionNumber: 'BENCH' },
  })) {
    batch.push({ kind: 'bytes', bytes });
    if (batch.length === 20) await send();
  }
  await send();
  console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return study;
}

interface RunResult {
  firstImageMs: number;
  allSlicesMs: number;
  bytes: number;
  requests: number;
}

/**
 * In the page: performance.now() when the viewport shows non-background pixels, in the first view's
 * canvas or Cornerstone's; false before. An expression, evaluated at every animation frame.
 */
const FIRST_IMAGE_SHOWN = `(() => {
  // The moment these pixels were on the canvas: taken before reading them back, so the readback
  // itself (about 100 ms from Cornerstone's WebGL-fed canvas) is not counted as waiting time.
  const now = performance.now();
  // A readback of the canvas stalls the page's main thread for about 100 ms on software WebGL (it
  // waits for the GPU process): done at every frame from navigation on, it would slow down the very
  // thing measured. So the pixels are read only once the viewport has drawn something (an
  // IMAGE_RENDERED event), or while the first view (the first slice drawn before Cornerstone has
  // started) is shown; the pixels still decide.
  const hooks = window.__pacs;
  const firstView = hooks?.firstView?.('vp-0');
  const shown = hooks?.viewport('vp-0');
  let canvas;
  if (firstView?.shown) {
    canvas = document.querySelector('[data-testid="first-view-vp-0"]');
  } else {
    if (!shown || !(shown.renders ?? shown.rendered)) return false; // (rendered: older builds)
    canvas = document.querySelector('.viewport-element canvas');
  }
  if (!canvas || canvas.width < 16) return false;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) return false;
  // The middle half of the canvas, where the phantom's body lies once the image is fitted: a readback
  // of the whole canvas takes about 90 ms on software WebGL, and the page waits for it.
  const width = Math.floor(canvas.width / 2);
  const height = Math.floor(canvas.height / 2);
  const data = ctx.getImageData(width / 2, height / 2, width, height).data;
  let bright = 0;
  // sample a grid: the phantom's body makes many non-black pixels
  for (let y = 0; y < height; y += 8) {
    for (let x = 0; x < width; x += 8) {
      if (data[(y * width + x) * 4] > 40) bright++;
    }
  }
  return bright > 50 ? now : false;
})()`;

/** In the page: performance.now() once every slice is in the viewer's cache; false before. */
const ALL_SLICES_LOADED = `(() => {
  const v = window.__pacs?.viewport('vp-0');
  return v && v.count === ${SLICES} && v.loaded === ${SLICES} ? performance.now() : false;
})()`;

const screenshotPath = (cond: Conditions) =>
  path.resolve('test-artifacts/viewer', `bench-${cond.latency ? 'throttled' : 'loopback'}.png`);

/**
 * Loopback, as a user's browser runs the viewer: Chromium over its DevTools pipe with no domain enabled
 * (scripts/lib/cdp-pipe.ts). Bytes and requests from the page's Resource Timing and the frame-fetch
 * worker's (window.__pacs.transferred()).
 */
async function runPlain(baseUrl: string, study: string, cond: Conditions): Promise<RunResult> {
  const browser = await launchOverPipe(CHROMIUM, ARGS);
  try {
    const page = await browser.newPage(1280, 800);
    await browser.send('Page.navigate', { url: `${baseUrl}/viewer/${study}` }, page);
    // Until the viewer's document is the one evaluated in (about:blank before it commits).
    while (!(await browser.evaluate<string>(page, 'location.pathname')).startsWith('/viewer/')) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const firstImageMs = await browser.evaluate<number>(
      page,
      `new Promise((resolve) => { const tick = () => { const t = ${FIRST_IMAGE_SHOWN}; if (t) resolve(t); else requestAnimationFrame(tick); }; tick(); })`,
    );
    const allSlicesMs = await browser.evaluate<number>(
      page,
      `new Promise((resolve) => { const iv = setInterval(() => { const t = ${ALL_SLICES_LOADED}; if (t) { clearInterval(iv); resolve(t); } }, 100); })`,
    );
    await new Promise((r) => setTimeout(r, 200));
    const { data } = await browser.send<{ data: string }>('Page.captureScreenshot', { format: 'png' }, page);
    await writeFile(screenshotPath(cond), Buffer.from(data, 'base64'));
    const { bytes, requests } = await browser.evaluate<{ bytes: number; requests: number }>(
      page,
      'window.__pacs.transferred()',
    );
    return { firstImageMs, allSlicesMs, bytes, requests };
  } finally {
    await browser.close();
  }
}

/**
 * Throttled (and loopback with BENCH_DRIVER=playwright): Playwright, with Chrome DevTools network
 * emulation on the page; bytes and requests from Playwright's request events (the frame-fetch
 * worker's included).
 */
async function runPlaywright(baseUrl: string, study: string, cond: Conditions): Promise<RunResult> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  try {
    // bypassCSP: Playwright evaluates the expressions above with eval(), which the viewer's policy forbids.
    const context = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      locale: 'en-US',
      bypassCSP: true,
    });
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: cond.latency,
      downloadThroughput: cond.throughput,
      uploadThroughput: cond.throughput,
    });
    // Playwright sees the requests of the page's dedicated workers too (the viewer fetches frames in
    // one), which the page's own CDP session does not.
    const sizes: Promise<number>[] = [];
    page.on('requestfinished', (request) => {
      sizes.push(
        request.sizes().then(
          (s) => s.responseBodySize + s.responseHeadersSize,
          () => 0,
        ),
      );
    });
    const timeout = cond.throughput > 0 ? 600_000 : 120_000;
    await page.goto(`${baseUrl}/viewer/${study}`, { waitUntil: 'commit' });
    const firstImageMs = (await page
      .waitForFunction(FIRST_IMAGE_SHOWN, null, { polling: 'raf', timeout })
      .then((h) => h.jsonValue())) as number;
    const allSlicesMs = (await page
      .waitForFunction(ALL_SLICES_LOADED, null, { polling: 100, timeout })
      .then((h) => h.jsonValue())) as number;
    await page.waitForTimeout(200);
    await page.screenshot({ path: screenshotPath(cond) });
    const all = await Promise.all(sizes);
    return { firstImageMs, allSlicesMs, bytes: all.reduce((a, b) => a + b, 0), requests: all.length };
  } finally {
    await browser.close();
  }
}

const PLAYWRIGHT_ALWAYS = process.env.BENCH_DRIVER === 'playwright';

function runOnce(baseUrl: string, study: string, cond: Conditions): Promise<RunResult> {
  return cond.throughput < 0 && !PLAYWRIGHT_ALWAYS
    ? runPlain(baseUrl, study, cond)
    : runPlaywright(baseUrl, study, cond);
}

async function main(): Promise<void> {
  const archive = await startArchive();
  try {
    const study = await loadSeries(archive.baseUrl);
    await mkdir('test-artifacts/viewer', { recursive: true });
    const results: Record<string, RunResult[]> = {};
    for (const cond of CONDITIONS) {
      results[cond.name] = [];
      for (let i = 0; i < RUNS; i++) {
        const r = await runOnce(archive.baseUrl, study, cond);
        results[cond.name].push(r);
        console.log(
          `${cond.name.padEnd(18)} first image ${(r.firstImageMs / 1000).toFixed(2)} s   all ${SLICES} slices ${(r.allSlicesMs / 1000).toFixed(2)} s   ${(r.bytes / 1e6).toFixed(1)} MB in ${r.requests} requests`,
        );
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const summary = Object.fromEntries(
      Object.entries(results).map(([k, rs]) => [
        k,
        {
          firstImageS: +(median(rs.map((r) => r.firstImageMs)) / 1000).toFixed(2),
          allSlicesS: +(median(rs.map((r) => r.allSlicesMs)) / 1000).toFixed(2),
          megabytes: +(median(rs.map((r) => r.bytes)) / 1e6).toFixed(1),
          requests: median(rs.map((r) => r.requests)),
        },
      ]),
    );
    await mkdir('bench-results', { recursive: true });
    await writeFile(
      'bench-results/viewer.json',
      `${JSON.stringify({ date: new Date().toISOString(), slices: SLICES, runs: RUNS, baseUrl: archive.baseUrl, summary }, null, 2)}\n`,
    );
    console.log('Median figures written to bench-results/viewer.json');
  } finally {
    await archive.close();
  }
}

main().catch((e: unknown) => {
  console.error(`bench:viewer failed: ${(e as Error).message ?? e}`);
  process.exit(1);
});
