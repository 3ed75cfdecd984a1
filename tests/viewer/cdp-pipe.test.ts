/**
 * The benchmark's plain driver (scripts/lib/cdp-pipe.ts): Chromium over its DevTools pipe, a page of the
 * asked size, navigation, expressions awaited in the page across the document change, a screenshot,
 * errors of the page reported as such.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CdpBrowser, launchOverPipe } from '../../scripts/lib/cdp-pipe';
import { CHROMIUM, CHROMIUM_ARGS, skipReason } from './harness';

describe.skipIf(skipReason)('Chromium over the DevTools pipe', () => {
  let server: http.Server;
  let base: string;
  let browser: CdpBrowser;

  beforeAll(async () => {
    // A page that fetches 300 kB after load, as the viewer fetches frames.
    server = http.createServer((req, res) => {
      if (req.url === '/body') {
        res
          .writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': 300_000 })
          .end(Buffer.alloc(300_000, 7));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<!doctype html><body style="margin:0;background:rgb(0,128,0)"><script>
        window.done = fetch('/body').then((r) => r.arrayBuffer()).then((b) => b.byteLength);
      </script></body>`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchOverPipe(CHROMIUM, CHROMIUM_ARGS);
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('opens a page, awaits what it computes, reads its size and its pixels', async () => {
    const page = await browser.newPage(640, 400);
    await browser.send('Page.navigate', { url: `${base}/page` }, page);
    while ((await browser.evaluate<string>(page, 'location.pathname')) !== '/page') {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await browser.evaluate<number>(page, 'window.done')).toBe(300_000);
    expect(await browser.evaluate<number[]>(page, '[innerWidth, innerHeight]')).toEqual([640, 400]);
    const resources = await browser.evaluate<number>(
      page,
      "performance.getEntriesByType('resource').find((e) => e.name.endsWith('/body')).encodedBodySize",
    );
    expect(resources).toBe(300_000);
    const { data } = await browser.send<{ data: string }>('Page.captureScreenshot', { format: 'png' }, page);
    const png = Buffer.from(data, 'base64');
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.readUInt32BE(16)).toBe(640); // IHDR width
    await expect(browser.evaluate(page, 'Promise.reject(new Error("no such thing"))')).rejects.toThrow(
      /in the page: Error: no such thing/,
    );
  });
});
