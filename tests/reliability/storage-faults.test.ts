/**
 * Storage faults never cost an acknowledged instance and never turn into 500s or crashes:
 * - the object store (a real s3rver) killed during concurrent ingest and reads, then started again;
 * - PostgreSQL stopped and started again (S3 + PostgreSQL, when that index is in the checkout);
 * - the data disk full (a real 16 MB tmpfs; skipped with a message where mounting is not permitted).
 * While a backend is down: STOW refuses the instances it hits with FailureReason 0xA700 (Out of resources)
 * and a 409/202 (never success for an instance not stored); reads that need the backend answer 503 with
 * Retry-After; everything recovers by itself once the backend is back, without restarting the archive.
 * Afterwards every acknowledged instance is retrievable byte for byte and fsck finds no index row
 * pointing to a missing blob.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ArchiveProcess, startArchive } from '../../scripts/lib/archive-process';
import { type LoadReport, requestCount, startLoad, unexpectedStatuses } from '../../scripts/lib/load';
import {
  countInstances,
  listInstances,
  retrieveInstance,
  sha256,
  sleep,
  stowInstances,
  syntheticInstances,
  type TestInstance,
} from '../../scripts/lib/reliability';
import { fsckStorage, S3_POSTGRES, s3Storages, type StorageSetup } from '../helpers/reliability-storage';

const OUT_OF_RESOURCES = 0xa700;

/**
 * Polls until a STOW of fresh instances succeeds again (the archive recovers by itself). A test service
 * that failed by itself meanwhile (s3rver died, PostgreSQL not answering after its restart) is not the
 * archive's fault: it is reported and started once more, and the archive must then recover from that.
 */
async function untilStowRecovers(
  server: ArchiveProcess,
  services: StorageSetup['services'],
  timeoutMs = 30_000,
): Promise<number> {
  const t0 = Date.now();
  const restarted = new Set<string>();
  for (;;) {
    const r = await stowInstances(
      server.dicomweb,
      syntheticInstances(1).map((i) => i.bytes),
    );
    if (r.status === 200) return Date.now() - t0;
    const faults: string[] = [];
    for (const [name, service] of Object.entries(services)) {
      const fault = await service.fault();
      if (!fault) continue;
      faults.push(`${name}: ${fault}`);
      if (restarted.has(name)) continue;
      restarted.add(name);
      console.warn(`test service ${name} failed by itself (not the archive); starting it again: ${fault}`);
      await service.start().catch((err: Error) => faults.push(`${name} did not start: ${err.message}`));
    }
    if (Date.now() - t0 > timeoutMs)
      throw new Error(
        `STOW still ${r.status} ${JSON.stringify(r.failed)} after ${timeoutMs} ms\n${faults.join('\n') || 'every test service answers'}\narchive exit ${JSON.stringify(server.exit())}; its last lines:\n${server.tail()}`,
      );
    await sleep(250);
  }
}

/** Every acknowledged instance retrievable byte for byte (sha256 of the WADO-RS answer). */
async function retrieveAll(
  server: ArchiveProcess,
  instances: { study: string; series: string; sop: string; sha256: string }[],
) {
  const bad: string[] = [];
  for (let k = 0; k < instances.length; k += 16) {
    await Promise.all(
      instances.slice(k, k + 16).map(async (i) => {
        const r = await retrieveInstance(server.dicomweb, i);
        if (r.status !== 200 || sha256(r.bytes) !== i.sha256) bad.push(`${i.sop}: HTTP ${r.status}`);
      }),
    );
  }
  return bad;
}

/** Instances stored before the fault (200): part of what must survive it. */
async function storedBefore(server: ArchiveProcess, count = 6) {
  const base = syntheticInstances(count, { rows: 128 });
  expect(
    (
      await stowInstances(
        server.dicomweb,
        base.map((i) => i.bytes),
      )
    ).status,
  ).toBe(200);
  return base;
}

/** Every acknowledged instance is retrievable byte for byte; no refused one is listed. */
async function expectNothingLost(
  server: ArchiveProcess,
  acknowledged: Parameters<typeof retrieveAll>[1],
  refused: { sop: string }[],
) {
  expect(await retrieveAll(server, acknowledged)).toEqual([]);
  const listed = new Set((await listInstances(server.dicomweb)).map((i) => i.sop));
  expect(refused.filter((i) => listed.has(i.sop))).toEqual([]);
}

/** An archive process on the storage `start` gives, for the tests of one describe block. */
function archiveOn(start: () => Promise<StorageSetup>, prefix: string) {
  const a = {} as { setup: StorageSetup; dataDir: string; server: ArchiveProcess };
  beforeAll(async () => {
    a.setup = await start();
    a.dataDir = await mkdtemp(path.join(tmpdir(), prefix));
    a.server = await startArchive({ dataDir: a.dataDir, env: a.setup.env });
  });
  afterAll(async () => {
    await a.server?.stop();
    await a.setup?.close();
    if (a.dataDir) await rm(a.dataDir, { recursive: true, force: true });
  });
  return a;
}

function describeLoad(r: LoadReport): string {
  return `${requestCount(r)} requests (${JSON.stringify(r.statuses)}), reasons ${JSON.stringify(r.failureReasons)}`;
}

for (const storage of s3Storages()) {
  describe.skipIf(storage.unavailable)(`object store stopped and restarted (${storage.name})`, () => {
    if (storage.unavailable) console.warn(`S3 fault test on ${storage.name} skipped: ${storage.unavailable}`);
    const archive = archiveOn(() => storage.start(), 'pacs-s3fault-');

    it('refuses with 0xA700 and 503 while it is down, recovers by itself, loses nothing', async () => {
      const { setup, dataDir, server } = archive;
      const s3 = setup.services.s3;
      const base = await storedBefore(server);

      // Concurrent STOW and reads; the store is killed in the middle, down for 2 s, then back.
      const load = startLoad({
        dicomweb: server.dicomweb,
        stowClients: 4,
        readers: 3,
        known: base,
        seed: 7,
      });
      await sleep(1000);
      await s3.stop();
      await sleep(1000);

      // While it is down, explicitly:
      const before = await countInstances(server.dicomweb);
      const refused = syntheticInstances(3, { rows: 128 });
      const r = await stowInstances(
        server.dicomweb,
        refused.map((i) => i.bytes),
      );
      expect(r.status).toBe(409);
      expect(r.acknowledged).toEqual([]);
      expect(r.failed.map((f) => f.reason)).toEqual([OUT_OF_RESOURCES, OUT_OF_RESOURCES, OUT_OF_RESOURCES]);
      expect(r.failed.map((f) => f.sop).sort()).toEqual(refused.map((i) => i.sop).sort());
      expect(r.failed[0].message).toMatch(/storage is unavailable/);
      const wado = await retrieveInstance(server.dicomweb, base[0]);
      expect(wado.status).toBe(503);
      expect(wado.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(JSON.parse(wado.bytes.toString()).message).toMatch(/storage is unavailable/);
      const study = await fetch(`${server.dicomweb}/studies/${base[0].study}`, {
        headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
      });
      expect(study.status).toBe(503);
      await study.arrayBuffer();
      // QIDO answers from the index, which is up, and lists none of the refused instances.
      expect(await countInstances(server.dicomweb)).toBe(before);
      expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);

      await s3.start();
      const recoveredMs = await untilStowRecovers(server, setup.services);
      await sleep(500);
      const report = await load.stop();
      console.log(
        `S3 stopped during load (${storage.name}): ${describeLoad(report)}; ` +
          `${report.acknowledged.length} acknowledged, recovered ${recoveredMs} ms after restart`,
      );
      expect(
        unexpectedStatuses(report, {
          stow: ['200', '202', '409'],
          'wado-instance': ['200', '503'],
          'wado-metadata': ['200'],
          'wado-frame': ['200', '503'],
        }),
      ).toEqual([]);
      expect(Object.keys(report.failureReasons).filter((k) => k !== '0xA700')).toEqual([]);
      expect(report.failureReasons['0xA700']?.count ?? 0).toBeGreaterThan(0);
      expect(report.missingRetryAfter).toBe(0);
      expect(report.mismatches).toEqual([]);
      expect(server.exit()).toBeUndefined();
      expect(server.errors.filter((e) => e.msg === 'unhandled error')).toEqual([]);

      await expectNothingLost(server, [...base, ...report.acknowledged], refused);
      await server.stop();
      const check = await fsckStorage(dataDir, setup.env);
      expect(check.missing).toEqual([]);
      const repaired = await fsckStorage(dataDir, setup.env, true);
      expect(repaired.missing).toEqual([]);
      expect((await fsckStorage(dataDir, setup.env)).orphans).toEqual([]);
    }, 120_000);
  });
}

describe.skipIf(S3_POSTGRES.unavailable)('PostgreSQL stopped and restarted (S3 + PostgreSQL)', () => {
  if (S3_POSTGRES.unavailable) console.warn(`PostgreSQL fault test skipped: ${S3_POSTGRES.unavailable}`);
  const archive = archiveOn(() => S3_POSTGRES.start(), 'pacs-pgfault-');

  it('answers 503 and 0xA700 while it is down, recovers by itself, loses nothing', async () => {
    const { setup, dataDir, server } = archive;
    const pg = setup.services.postgres;
    const base = await storedBefore(server);
    const load = startLoad({ dicomweb: server.dicomweb, stowClients: 4, readers: 3, known: base, seed: 8 });
    await sleep(1000);
    await pg.stop();
    await sleep(1000);

    const refused = syntheticInstances(3, { rows: 128 });
    const r = await stowInstances(
      server.dicomweb,
      refused.map((i) => i.bytes),
    ).catch((err) => {
      throw new Error(
        `STOW while PostgreSQL is down failed (${err.cause?.code ?? err.message}); archive exit ${JSON.stringify(server.exit())}; its last lines:\n${server.tail()}`,
      );
    });
    expect(r.status).toBe(409);
    expect(r.failed.map((f) => f.reason)).toEqual([OUT_OF_RESOURCES, OUT_OF_RESOURCES, OUT_OF_RESOURCES]);
    const qido = await fetch(`${server.dicomweb}/studies`);
    expect(qido.status).toBe(503);
    expect(qido.headers.get('retry-after')).toMatch(/^\d+$/);
    await qido.arrayBuffer();
    expect((await retrieveInstance(server.dicomweb, base[0])).status).toBe(503);

    await pg.start();
    const recoveredMs = await untilStowRecovers(server, setup.services);
    await sleep(500);
    const report = await load.stop();
    console.log(
      `PostgreSQL stopped during load: ${describeLoad(report)}; recovered ${recoveredMs} ms after restart`,
    );
    expect(
      unexpectedStatuses(report, {
        stow: ['200', '202', '409'],
        qido: ['200', '503'],
        'wado-instance': ['200', '503'],
        'wado-metadata': ['200', '503'],
        'wado-frame': ['200', '503'],
      }),
    ).toEqual([]);
    expect(Object.keys(report.failureReasons).filter((k) => k !== '0xA700')).toEqual([]);
    expect(report.missingRetryAfter).toBe(0);
    expect(report.mismatches).toEqual([]);
    expect(server.exit()).toBeUndefined();
    await expectNothingLost(server, [...base, ...report.acknowledged], refused);
    await server.stop();
    expect((await fsckStorage(dataDir, setup.env)).missing).toEqual([]);
  }, 120_000);
});

/** Mounts a tmpfs of `mb` megabytes at dir; the reason when that is not permitted here. */
function mountTmpfs(dir: string, mb: number): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mb}m`, 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return String((err as { stderr?: Buffer }).stderr ?? err).trim() || String(err);
  }
}

describe('data disk full (filesystem + SQLite on a 16 MB tmpfs)', () => {
  let mountPoint: string;
  let cannotMount: string | undefined;
  let server: ArchiveProcess | undefined;
  beforeAll(async () => {
    mountPoint = await mkdtemp(path.join(tmpdir(), 'pacs-full-'));
    cannotMount = mountTmpfs(mountPoint, 16);
    if (cannotMount) console.warn(`disk-full test skipped: cannot mount a tmpfs (${cannotMount})`);
  });
  afterAll(async () => {
    await server?.stop();
    if (!cannotMount) execFileSync('umount', [mountPoint]);
    await rm(mountPoint, { recursive: true, force: true });
  });

  it('refuses with 0xA700 when full, keeps serving reads, recovers once space is freed', async (ctx) => {
    if (cannotMount) ctx.skip();
    const dataDir = path.join(mountPoint, 'data');
    await mkdir(dataDir);
    server = await startArchive({ dataDir });
    const base = await storedBefore(server, 5);

    // Fill the disk, leaving about 300 kB: room for two or three more instances of 130 kB.
    const ballast = path.join(mountPoint, 'ballast');
    const fh = await open(ballast, 'w');
    const chunk = Buffer.alloc(64 * 1024, 1);
    const fs = await statfs(mountPoint);
    const fill = fs.bavail * fs.bsize - 300 * 1024;
    for (let n = 0; n + chunk.length <= fill; n += chunk.length) await fh.write(chunk);
    await fh.close();

    const batch = syntheticInstances(10, { rows: 256 });
    const r = await stowInstances(
      server.dicomweb,
      batch.map((i) => i.bytes),
    );
    const stored: TestInstance[] = batch.filter((i) => r.acknowledged.includes(i.sop));
    console.log(
      `disk full: STOW of 10 × 130 kB with ~300 kB free answered ${r.status}: ${r.acknowledged.length} stored, ` +
        `${r.failed.length} refused (${r.failed[0]?.message})`,
    );
    expect([202, 409]).toContain(r.status);
    expect(r.acknowledged.length + r.failed.length).toBe(10);
    expect(r.failed.length).toBeGreaterThan(0);
    expect(new Set(r.failed.map((f) => f.reason))).toEqual(new Set([OUT_OF_RESOURCES]));
    expect(r.failed[0].message).toMatch(/storage is full/);

    // Reads go on while the disk is full.
    expect(await countInstances(server.dicomweb)).toBe(5 + stored.length);
    expect(await retrieveAll(server, [...base, ...stored])).toEqual([]);
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);

    // Space comes back: the refused instances are accepted, without restarting the archive.
    await rm(ballast);
    const refused = batch.filter((i) => !r.acknowledged.includes(i.sop));
    const again = await stowInstances(
      server.dicomweb,
      refused.map((i) => i.bytes),
    );
    expect(again.status).toBe(200);
    expect(await countInstances(server.dicomweb)).toBe(15);
    expect(await retrieveAll(server, [...base, ...batch])).toEqual([]);
    expect(server.errors.filter((e) => e.msg === 'unhandled error')).toEqual([]);
    await server.stop();
    server = undefined;
    const check = await fsckStorage(dataDir, {});
    expect(check.missing).toEqual([]);
    expect(check.orphans).toEqual([]);
  }, 120_000);
});
