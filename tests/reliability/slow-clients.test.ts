/**
 * Slow and vanishing WADO-RS clients cost the archive neither memory nor file handles: clients that read
 * a large instance or a whole study very slowly, that stop reading, or that disconnect in the middle of
 * the answer (inside an object or between two parts). The archive streams with back-pressure, so what
 * it holds per client is a few buffers, not the objects; when the clients are gone, its open files and
 * sockets are back to what they were and its memory has not grown.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ArchiveProcess, openFds, rssMB, startArchive } from '../../scripts/lib/archive-process';
import { sha256, sleep, stowInstances, syntheticInstances, uidsOf } from '../../scripts/lib/reliability';
import { syntheticSeries } from '../../server/synthetic';

const FRAMES = 40; // 512 x 512 x 16 bits x 40 frames: a 21 MB instance

/** GET url reading chunkBytes every intervalMs; stops (destroys the socket) after stopAfter bytes. */
function slowGet(
  url: string,
  accept: string,
  opts: { intervalMs: number; stopAfter?: number; stallMs?: number },
): Promise<{ status: number; bytes: number; complete: boolean; sha256?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: accept }, agent: false }, async (res) => {
      let bytes = 0;
      const hash = opts.stopAfter === undefined ? createHash('sha256') : undefined;
      try {
        if (opts.stallMs) await sleep(opts.stallMs); // reads nothing at all meanwhile
        for await (const chunk of res) {
          bytes += (chunk as Buffer).length;
          hash?.update(chunk as Buffer);
          if (opts.stopAfter !== undefined && bytes >= opts.stopAfter) {
            req.destroy(); // the client goes away mid-answer
            resolve({ status: res.statusCode ?? 0, bytes, complete: false });
            return;
          }
          await sleep(opts.intervalMs);
        }
        resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete, sha256: hash?.digest('hex') });
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', (err) => {
      if (!req.destroyed || opts.stopAfter === undefined) reject(err);
    });
  });
}

describe('slow and disconnecting WADO-RS clients', () => {
  let server: ArchiveProcess;
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-slow-'));
    server = await startArchive({ dataDir });
  });
  afterAll(async () => {
    await server?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('hold no memory and no file handles once they are gone', async () => {
    const [big] = syntheticSeries({
      patientName: 'Slow^Client',
      patientId: 'SLOW-1',
      instances: 1,
      frames: FRAMES,
    });
    const bigUids = uidsOf(big)!;
    const series = syntheticInstances(20, { rows: 256 });
    expect((await stowInstances(server.dicomweb, [big])).status).toBe(200);
    expect(
      (
        await stowInstances(
          server.dicomweb,
          series.map((i) => i.bytes),
        )
      ).status,
    ).toBe(200);
    const bigUrl = `${server.dicomweb}/studies/${bigUids.study}/series/${bigUids.series}/instances/${bigUids.sop}`;
    const studyUrl = `${server.dicomweb}/studies/${series[0].study}`;
    const single = 'application/dicom; transfer-syntax=*';
    const multi = 'multipart/related; type="application/dicom"; transfer-syntax=*';

    // Warm up the paths once (first-use allocations are not a leak), then take the baseline.
    await slowGet(bigUrl, single, { intervalMs: 0 });
    await slowGet(studyUrl, multi, { intervalMs: 0 });
    await sleep(500);
    const baseline = { fds: openFds(server.pid), rss: rssMB(server.pid) };

    let peakRss = baseline.rss;
    let peakFiles = 0;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, rssMB(server.pid));
      peakFiles = Math.max(peakFiles, openFds(server.pid).files.filter((f) => f.includes('/blobs/')).length);
    }, 100);
    const clients = [
      // Very slow readers of the whole study (2.6 MB multipart): 16 kB every 20 ms or so; they finish.
      ...Array.from({ length: 6 }, () => slowGet(studyUrl, multi, { intervalMs: 20 })),
      // Readers of the 21 MB instance that go away after 0.1 to 3 MB, reading slowly.
      ...Array.from({ length: 8 }, (_, k) =>
        slowGet(bigUrl, single, { intervalMs: 10, stopAfter: 100_000 + k * 400_000 }),
      ),
      // Readers of the study that go away inside it (inside an object or between two parts).
      ...Array.from({ length: 6 }, (_, k) =>
        slowGet(studyUrl, multi, { intervalMs: 5, stopAfter: 50_000 + k * 270_000 }),
      ),
      // Clients that read nothing for 3 s (the archive must wait, not buffer 21 MB each), then leave.
      ...Array.from({ length: 6 }, () =>
        slowGet(bigUrl, single, { intervalMs: 0, stallMs: 3000, stopAfter: 1 }),
      ),
    ];
    const results = await Promise.all(clients);
    clearInterval(sampler);

    // The slow readers got every byte.
    const whole = results.slice(0, 6);
    expect(whole.every((r) => r.status === 200 && r.complete)).toBe(true);
    expect(new Set(whole.map((r) => r.bytes)).size).toBe(1); // same length (each has its own boundary)
    expect(whole[0].bytes).toBeGreaterThan(20 * series[0].bytes.length);
    expect(results.slice(6).every((r) => r.status === 200)).toBe(true);

    // Once they are gone: no blob file left open (the store's folders stay open for their fsync), sockets
    // and memory back to the baseline.
    let after = openFds(server.pid);
    for (let t = 0; t < 50 && after.total > baseline.fds.total; t++) {
      await sleep(100);
      after = openFds(server.pid);
    }
    const rssAfter = rssMB(server.pid);
    console.log(
      `slow clients: 26 clients (6 slow complete reads, 14 disconnects mid-answer, 6 stalled); ` +
        `server RSS ${baseline.rss} MB before, peak ${peakRss} MB, ${rssAfter} MB after; ` +
        `fds ${baseline.fds.total} before (${baseline.fds.sockets} sockets), ${after.total} after (${after.sockets} sockets); ` +
        `blob files open at most ${peakFiles} at once, ${after.files.filter((f) => f.includes('/blobs/')).length} after`,
    );
    expect(after.files.filter((f) => f.includes('/blobs/'))).toEqual([]);
    expect(after.total).toBeLessThanOrEqual(baseline.fds.total);
    // 14 clients each abandoning a 21 MB or 2.6 MB answer would be 150+ MB if answers were buffered.
    expect(peakRss - baseline.rss).toBeLessThan(80);
    expect(rssAfter - baseline.rss).toBeLessThan(40);
    expect(server.errors).toEqual([]);
    // And the archive still answers, and still serves the same bytes.
    const again = await slowGet(bigUrl, single, { intervalMs: 0 });
    expect(again.sha256).toBe(sha256(big));
  }, 90_000);
});
