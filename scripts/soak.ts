/**
 * npm run soak — the archive under sustained mixed load on loopback: concurrent STOW-RS clients sending
 * new instances, QIDO-RS and WADO-RS readers of what was acknowledged, for a set time. It passes when
 * there was no error at all, every acknowledged instance is listed and retrievable byte for byte at the
 * end, and the server's memory stayed flat (mean RSS over the last third of the run vs just after warm-up).
 *
 *   npm run soak                         # 3 minutes, embedded storage, own archive in a temporary folder
 *   npm run soak -- --minutes 30 --stow-clients 8 --readers 8
 *   npm run soak -- --seconds 40 --json soak.json
 *
 * Exit code 1 when an error occurred, an instance was lost or memory grew more than --max-rss-growth MB.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveProcess, openFds, rssMB, startArchive } from './lib/archive-process';
import { commandLine, isMain, parseOrExit } from './lib/cli';
import { type LoadReport, requestCount, startLoad, unexpectedStatuses } from './lib/load';
import { listInstances, retrieveInstance, sha256, sleep } from './lib/reliability';

export interface SoakOptions {
  durationMs: number;
  stowClients: number;
  readers: number;
  batch: number;
  rows: number;
  /** Extra archive variables (storage). */
  env?: Record<string, string>;
  /** RSS growth (MB) after warm-up (mean of the last third of the samples minus the first) that fails the soak. */
  maxRssGrowthMB: number;
  seed: number;
  onProgress?: (line: string) => void;
}

export interface SoakReport {
  seconds: number;
  load: LoadReport;
  requests: number;
  instancesPerSecond: number;
  requestsPerSecond: number;
  /** Every answer that was not a success, every network error or hang: must be empty. */
  errors: string[];
  /** Acknowledged instances not listed, or not retrievable byte for byte, at the end: must be empty. */
  lost: string[];
  verified: number;
  /**
   * Server RSS (MB), sampled every second. Garbage collection makes it swing by tens of MB, so growth
   * compares means: of the first third of the samples after warm-up and of the last third.
   */
  rss: {
    startMB: number;
    afterWarmupMB: number;
    lastThirdMB: number;
    endMB: number;
    maxMB: number;
    growthMB: number;
  };
  /** Open descriptors; `folders` of them are the blob store's folders, kept open for their fsync. */
  fds: { start: number; end: number; folders: number };
  /** Error-level lines in the server's log. */
  serverErrors: number;
  passed: boolean;
}

export const SOAK_DEFAULTS: SoakOptions = {
  durationMs: 3 * 60_000,
  stowClients: 4,
  readers: 4,
  batch: 5,
  rows: 128,
  maxRssGrowthMB: 64,
  seed: 1,
};

async function verify(
  server: ArchiveProcess,
  load: LoadReport,
): Promise<{ lost: string[]; verified: number }> {
  const listed = new Set((await listInstances(server.dicomweb)).map((i) => i.sop));
  const lost = load.acknowledged.filter((i) => !listed.has(i.sop)).map((i) => `${i.sop}: not listed`);
  let verified = 0;
  for (let k = 0; k < load.acknowledged.length; k += 16) {
    await Promise.all(
      load.acknowledged.slice(k, k + 16).map(async (i) => {
        const r = await retrieveInstance(server.dicomweb, i);
        if (r.status !== 200 || sha256(r.bytes) !== i.sha256)
          lost.push(`${i.sop}: HTTP ${r.status}, bytes differ`);
        else verified++;
      }),
    );
  }
  return { lost, verified };
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-soak-'));
  const server = await startArchive({ dataDir, env: opts.env });
  try {
    const startMB = rssMB(server.pid);
    const fdsStart = openFds(server.pid).total;
    const load = startLoad({
      dicomweb: server.dicomweb,
      stowClients: opts.stowClients,
      readers: opts.readers,
      batch: opts.batch,
      rows: opts.rows,
      seed: opts.seed,
    });
    // Memory: sampled every second; the reference is taken after a warm-up (caches, JIT, SQLite pages).
    const warmupMs = Math.min(20_000, opts.durationMs / 2);
    const t0 = Date.now();
    const samples: number[] = [];
    let maxMB = startMB;
    let last = 0;
    while (Date.now() - t0 < opts.durationMs) {
      await sleep(1000);
      if (server.exit()) break;
      const mb = rssMB(server.pid);
      maxMB = Math.max(maxMB, mb);
      if (Date.now() - t0 >= warmupMs) samples.push(mb);
      const elapsed = Math.floor((Date.now() - t0) / 1000);
      if (opts.onProgress && elapsed - last >= 10) {
        last = elapsed;
        const r = load.report();
        opts.onProgress(
          `${elapsed} s: ${r.acknowledged.length} instances stored, ${requestCount(r)} requests, RSS ${mb} MB`,
        );
      }
    }
    const report = await load.stop();
    const endMB = rssMB(server.pid);
    const { total: fdsEnd, folders } = openFds(server.pid);
    const errors = [
      ...unexpectedStatuses(report, {}),
      ...report.samples,
      ...report.mismatches.map((sop) => `WADO-RS bytes differ for ${sop}`),
    ];
    if (server.exit()) errors.push(`the archive exited: ${JSON.stringify(server.exit())}\n${server.tail()}`);
    const { lost, verified } = server.exit()
      ? { lost: ['(archive gone)'], verified: 0 }
      : await verify(server, report);
    const seconds = report.ms / 1000;
    const third = Math.max(1, Math.floor(samples.length / 3));
    const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : endMB);
    const r1 = (x: number) => Math.round(x * 10) / 10;
    const afterWarmupMB = r1(mean(samples.slice(0, third)));
    const lastThirdMB = r1(mean(samples.slice(-third)));
    const growthMB = r1(lastThirdMB - afterWarmupMB);
    const serverErrors = server.errors.length;
    return {
      seconds,
      load: report,
      requests: requestCount(report),
      instancesPerSecond: Math.round((report.acknowledged.length / seconds) * 10) / 10,
      requestsPerSecond: Math.round((requestCount(report) / seconds) * 10) / 10,
      errors,
      lost,
      verified,
      rss: { startMB, afterWarmupMB, lastThirdMB, endMB, maxMB: Math.max(maxMB, endMB), growthMB },
      fds: { start: fdsStart, end: fdsEnd, folders: folders.length },
      serverErrors,
      passed:
        errors.length === 0 && lost.length === 0 && serverErrors === 0 && growthMB <= opts.maxRssGrowthMB,
    };
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

export function summarizeSoak(r: SoakReport): string {
  const l = r.load.latency;
  const lat = (k: keyof typeof l) => `${k} ${l[k].n} (p50 ${l[k].p50} ms, p95 ${l[k].p95} ms)`;
  return [
    `${r.seconds.toFixed(0)} s: ${r.load.acknowledged.length} instances stored (${r.instancesPerSecond}/s), ` +
      `${r.requests} requests (${r.requestsPerSecond}/s)`,
    `  ${lat('stow')}; ${lat('qido')}; ${lat('wado-instance')}; ${lat('wado-metadata')}; ${lat('wado-frame')}`,
    `errors: ${r.errors.length}${r.errors.length ? `\n  ${r.errors.slice(0, 20).join('\n  ')}` : ''}`,
    `lost instances: ${r.lost.length} (${r.verified} acknowledged instances retrieved and compared byte for byte)`,
    `server RSS: ${r.rss.startMB} MB at start, ${r.rss.afterWarmupMB} MB just after warm-up, ${r.rss.lastThirdMB} MB ` +
      `over the last third, ${r.rss.endMB} MB at the end (growth ${r.rss.growthMB} MB, max ${r.rss.maxMB} MB); ` +
      `open fds ${r.fds.start} at start, ${r.fds.end} at the end (${r.fds.folders} of them blob folders)`,
    `server error log lines: ${r.serverErrors}`,
    r.passed ? 'PASSED' : 'FAILED',
  ].join('\n');
}

const USAGE = `usage: npm run soak -- [--minutes N | --seconds N] [--stow-clients N] [--readers N] [--batch N]
                      [--rows N] [--max-rss-growth MB] [--seed N] [--json FILE]
  --minutes N          duration (default 3)
  --stow-clients N     concurrent STOW-RS clients (default ${SOAK_DEFAULTS.stowClients})
  --readers N          concurrent QIDO-RS / WADO-RS readers (default ${SOAK_DEFAULTS.readers})
  --batch N            instances per STOW request (default ${SOAK_DEFAULTS.batch})
  --rows N             synthetic CT of N x N pixels (default ${SOAK_DEFAULTS.rows}: 33 kB per instance)
  --max-rss-growth MB  allowed RSS growth after warm-up (default ${SOAK_DEFAULTS.maxRssGrowthMB})
  --json FILE          also write the full report as JSON
The archive runs with the storage configured in the environment (PACS_BLOB_STORE, ...), in a temporary
data folder.`;

function parse(argv: string[]): (SoakOptions & { json?: string }) | string {
  const o: SoakOptions & { json?: string } = { ...SOAK_DEFAULTS };
  for (const a of commandLine(argv)) {
    if (a.flag === '--minutes') o.durationMs = a.int() * 60_000;
    else if (a.flag === '--seconds') o.durationMs = a.int() * 1000;
    else if (a.flag === '--stow-clients') o.stowClients = a.int();
    else if (a.flag === '--readers') o.readers = a.int();
    else if (a.flag === '--batch') o.batch = a.int();
    else if (a.flag === '--rows') o.rows = a.int();
    else if (a.flag === '--max-rss-growth') o.maxRssGrowthMB = a.int();
    else if (a.flag === '--seed') o.seed = a.int();
    else if (a.flag === '--json') o.json = a.value();
    else if (a.flag === '-h' || a.flag === '--help') return USAGE;
    else throw new Error(`unknown option ${a.arg}`);
  }
  return o;
}

async function main(): Promise<number> {
  const o = parseOrExit(parse, USAGE);
  if (typeof o === 'number') return o;
  console.log(
    `soak for ${o.durationMs / 1000} s: ${o.stowClients} STOW clients (${o.batch} × ${o.rows}² CT per request), ${o.readers} readers`,
  );
  const report = await runSoak({ ...o, onProgress: (line) => console.log(line) });
  console.log(summarizeSoak(report));
  if (o.json) {
    const { acknowledged, unacknowledged, ...load } = report.load;
    const slim = {
      ...report,
      load: { ...load, acknowledged: acknowledged.length, unacknowledged: unacknowledged.length },
    };
    await writeFile(o.json, `${JSON.stringify(slim, null, 2)}\n`);
  }
  return report.passed ? 0 : 1;
}

if (isMain(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err?.stack ?? err);
      process.exit(1);
    },
  );
}
