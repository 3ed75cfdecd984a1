/**
 * `npm run bench:viewer`: how fast the viewer shows a 300-slice 512×512 CT series (synthetic phantom
 * made with dcmjs, server/demo.ts), in headless Chromium with software WebGL, measured from
 * navigation start:
 *   - first image: the first moment the viewport canvas really shows the image (its pixels are read);
 *   - all slices: every slice of the series decoded in the viewer's cache;
 *   - bytes: all bytes the page received (encoded, as on the wire).
 * Once on loopback and once with Chrome DevTools network emulation at 10 Mbit/s and 50 ms latency.
 *
 *   npm run bench:viewer                          # starts the archive in-process (needs viewer/dist)
 *   PACS_URL=http://127.0.0.1:8080 npm run bench:viewer   # an archive already running
 *   BENCH_RUNS=3 BENCH_SLICES=300 ...
 *   BENCH_ONLY=loopback|throttled  BENCH_DATA_DIR=/tmp/bench-archive (kept between runs)
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { ctPhantomSeries, demoUid } from '../server/demo';
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
 * In the page: resolves with performance.now() when the viewport shows non-background pixels, in the
 * first view's canvas or Cornerstone's.
 */
function firstImageVisible(page: Page, timeout: number): Promise<number> {
  return page
    .waitForFunction(
      () => {
        // The moment these pixels were on the canvas: taken before reading them back, so the readback
        // itself (about 100 ms from Cornerstone's WebGL-fed canvas) is not counted as waiting time.
        const now = performance.now();
        // A readback of the canvas stalls the page's main thread for about 100 ms on software WebGL
        // (it waits for the GPU process): polled every frame from navigation on, it would slow down
        // the very thing measured. So the pixels are read only once the viewport has drawn something
        // (an IMAGE_RENDERED event); the pixels still decide.
        // The first view (the first slice drawn before Cornerstone has started), while it is shown;
        // else Cornerstone's canvas once it has drawn.
        const hooks = (window as any).__pacs;
        const firstView = hooks?.firstView?.('vp-0');
        const shown = hooks?.viewport('vp-0');
        let canvas: HTMLCanvasElement | null;
        if (firstView?.shown) {
          canvas = document.querySelector('[data-testid="first-view-vp-0"]');
        } else {
          if (!shown || !(shown.renders ?? shown.rendered)) return false; // (`rendered`: older builds)
          canvas = document.querySelector('.viewport-element canvas');
        }
        if (!canvas || canvas.width < 16) return false;
        const ctx = canvas.getContext('2d', { willReadFrequently: true });
        if (!ctx) return false;
        // The middle half of the canvas, where the phantom's body lies once the image is fitted: a
        // readback of the whole canvas takes about 90 ms on software WebGL, and the page waits for it.
        const width = Math.floor(canvas.width / 2);
        const height = Math.floor(canvas.height / 2);
        const data = ctx.getImageData(width / 2, height / 2, width, height).data;
        let bright = 0;
        // sample a grid: the phantom's body makes many non-black pixels
        for (let y = 0; y < height; y += 8) {
          for (let x = 0; x < width; x += 8) {
            const i = (y * width + x) * 4;
            if (data[i] > 40) bright++;
          }
        }
        return bright > 50 ? now : false;
      },
      null,
      { polling: 'raf', timeout },
    )
    .then((h) => h.jsonValue() as Promise<number>);
}

async function runOnce(baseUrl: string, study: string, cond: Conditions): Promise<RunResult> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
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
    const firstImageMs = await firstImageVisible(page, timeout);
    const allSlicesMs = (await page
      .waitForFunction(
        (n) => {
          const v = (window as any).__pacs?.viewport('vp-0');
          return v && v.count === n && v.loaded === n ? performance.now() : false;
        },
        SLICES,
        { polling: 100, timeout },
      )
      .then((h) => h.jsonValue())) as number;
    await page.waitForTimeout(200);
    await page.screenshot({
      path: path.resolve('test-artifacts/viewer', `bench-${cond.latency ? 'throttled' : 'loopback'}.png`),
    });
    const all = await Promise.all(sizes);
    return { firstImageMs, allSlicesMs, bytes: all.reduce((a, b) => a + b, 0), requests: all.length };
  } finally {
    await browser.close();
  }
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
