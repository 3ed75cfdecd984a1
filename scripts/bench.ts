/**
 * npm run bench [-- --compare orthanc] [--quick] [--targets ours,ours-s3pg,orthanc]
 *               [--skip stow,series,qido,rss] [--out bench-results/x.json] [--strict]
 *
 * Runs the workload of issue 2 ("Benchmark and targets") against our server (started as a child
 * process with a fresh data folder) on the embedded default and on S3 + PostgreSQL (a real s3rver
 * and a throwaway PostgreSQL cluster, started by the bench), and, with --compare orthanc, against a local Orthanc in the same
 * run, with byte-identical synthetic data (deterministic seeds). Prints a table and writes JSON to
 * bench-results/bench-<date>.json. See docs/benchmarks.md for what each figure means.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { syntheticSeries, type SyntheticSeriesOptions } from '../server/synthetic';
import { commandLine, isMain, parseOrExit } from './lib/cli';
import { getJson, httpGet } from './lib/http';
import { RawGetPool } from './lib/raw-get';
import { measureRss, type RssReport, rssSupported } from './lib/rss';
import { type QuietReport, quietSupported, waitForQuiet } from './lib/quiet';
import { mapPool, round, summarize } from './lib/stats';
import { bigMultiframeInstance } from './lib/big-instance';
import { benchCStore, type CStoreFigures } from './lib/bench-dimse';
import { benchTranscode, formatTranscode, type TranscodeFigures } from './lib/bench-transcode';
import { stow } from './lib/stow';
import {
  findOrthanc,
  startOrthanc,
  startOurServer,
  startOurServerOnS3Postgres,
  type Target,
} from './lib/targets';

// ---------------------------------------------------------------------------------------------
// Configuration

type TargetName = 'ours' | 'ours-s3pg' | 'orthanc';
/** Workloads run against each target; 'transcode' runs once, on servers of its own. */
const TARGET_WORKLOADS = ['stow', 'series', 'qido', 'rss', 'cstore'];
const WORKLOADS = [...TARGET_WORKLOADS, 'alternate', 'transcode'];
const TARGET_NAMES: TargetName[] = ['ours', 'ours-s3pg', 'orthanc'];

export interface BenchConfig {
  quick: boolean;
  targets: TargetName[];
  skip: Set<string>;
  stowInstances: number;
  stowBatch: number;
  stowConcurrency: number[];
  seriesInstances: number;
  seriesRepeats: number;
  singleFrameRequests: number;
  allFramesInFlight: number;
  allFramesRuns: number;
  /** Timed passes per server of the alternating frame workload (after the warm-up). */
  alternatingPasses: number;
  /** Untimed passes over the series' frames before the frame figures (a server's steady state). */
  frameWarmupPasses: number;
  /** Seconds to wait at most for a quiet machine before each target (0: do not wait). */
  quietWaitSeconds: number;
  /**
   * The client of the frame figures: `raw` reads each response into a reused buffer (scripts/lib/raw-get),
   * `node` is `node:http` (a new Buffer per socket read, more client CPU on the cores the server uses).
   */
  frameClient: 'raw' | 'node';
  qidoStudies: number;
  qidoRepeats: number;
  rssBytes: number;
  cstoreInstances: number;
  /** Real DICOM samples (the CT series of the transcoding workload). */
  samplesDir: string;
  out?: string;
  strict: boolean;
}

function defaultConfig(quick: boolean): BenchConfig {
  return {
    quick,
    targets: ['ours', 'ours-s3pg'],
    skip: new Set(),
    stowInstances: quick ? 300 : 2955,
    stowBatch: 10,
    stowConcurrency: [1, 8],
    seriesInstances: 300,
    seriesRepeats: quick ? 5 : 10,
    singleFrameRequests: quick ? 20 : 50,
    allFramesInFlight: 8,
    allFramesRuns: 3,
    alternatingPasses: quick ? 2 : 10,
    frameWarmupPasses: quick ? 1 : 6,
    quietWaitSeconds: quick ? 0 : 90,
    frameClient: 'raw',
    qidoStudies: quick ? 1000 : 10_000,
    qidoRepeats: quick ? 5 : 10,
    rssBytes: quick ? 128 * 1024 ** 2 : 1024 ** 3,
    cstoreInstances: quick ? 100 : 600,
    samplesDir: resolve(
      process.env.PACS_SAMPLES_DIR ?? resolve(import.meta.dirname, '..', '..', 'shared', 'dicom-samples'),
    ),
    strict: false,
  };
}

const USAGE = `usage: npm run bench [-- options]
  --compare orthanc   also run the workload against a local Orthanc (Debian orthanc + orthanc-dicomweb)
  --targets LIST      comma-separated: ours (embedded: folder + SQLite), ours-s3pg (S3 + PostgreSQL:
                      s3rver and a throwaway PostgreSQL cluster started by the bench), orthanc
                      (default: ours,ours-s3pg; --compare orthanc adds orthanc)
  --quick             smaller sizes (300 STOW instances, 1,000 QIDO studies, 128 MB RSS run)
  --skip LIST         comma-separated workloads to skip: stow, series, qido, rss, cstore, alternate,
                      transcode (alternate: frame passes alternating between ours and Orthanc, both up;
                      with ours and orthanc among the targets only)
  --only LIST         run only these workloads (e.g. --only transcode)
  --samples DIR       real DICOM samples for the transcoding workload (default ../shared/dicom-samples,
                      or PACS_SAMPLES_DIR); without them a synthetic CT series is used
  --stow-instances N, --qido-studies N, --rss-mb N   override sizes
  --stow-concurrency LIST   STOW requests in flight to measure (default 1,8)
  --frame-warmup N    untimed passes over the 300 frames before the frame figures (default 6, --quick 1)
  --frames-in-flight N   frame requests in flight for the all-frames figure (default 8)
  --quiet-wait S      before each target, wait up to S seconds for the machine to be idle (under 10 %
                      busy for 3 s; default 90, --quick 0); the wait is in the JSON
  --frame-client C    client of the frame figures: raw (default; reads into reused buffers) or node
                      (node:http)
  --out FILE          JSON output (default bench-results/bench-<date>.json)
  --strict            exit 1 when a target is missed`;

export function parseBenchArgs(argv: string[]): BenchConfig | string {
  const quick = argv.includes('--quick');
  const cfg = defaultConfig(quick);
  let targetsGiven = false;
  for (const { arg: a, flag, value, int } of commandLine(argv)) {
    switch (flag) {
      case '--quick':
        break;
      case '--compare': {
        const v = value();
        if (v !== 'orthanc') throw new Error(`--compare supports only "orthanc"`);
        if (!cfg.targets.includes('orthanc')) cfg.targets.push('orthanc');
        break;
      }
      case '--targets': {
        const list = value().split(',').filter(Boolean);
        for (const t of list)
          if (!TARGET_NAMES.includes(t as TargetName)) throw new Error(`unknown target ${t}`);
        cfg.targets = targetsGiven ? ([...new Set([...cfg.targets, ...list])] as never) : (list as never);
        targetsGiven = true;
        break;
      }
      case '--skip':
        for (const s of value().split(',')) cfg.skip.add(s);
        break;
      case '--only': {
        const only = new Set(value().split(','));
        for (const w of WORKLOADS) if (!only.has(w)) cfg.skip.add(w);
        break;
      }
      case '--samples':
        cfg.samplesDir = resolve(value());
        break;
      case '--stow-instances':
        cfg.stowInstances = int();
        break;
      case '--qido-studies':
        cfg.qidoStudies = int();
        break;
      case '--stow-concurrency':
        cfg.stowConcurrency = value()
          .split(',')
          .map((x) => {
            const n = Number(x);
            if (!Number.isInteger(n) || n < 1) throw new Error(`--stow-concurrency: bad value ${x}`);
            return n;
          });
        break;
      case '--frame-warmup':
        cfg.frameWarmupPasses = int(0);
        break;
      case '--frames-in-flight':
        cfg.allFramesInFlight = int();
        break;
      case '--quiet-wait':
        cfg.quietWaitSeconds = int(0);
        break;
      case '--frame-client': {
        const v = value();
        if (v !== 'raw' && v !== 'node') throw new Error(`--frame-client: raw or node, not ${v}`);
        cfg.frameClient = v;
        break;
      }
      case '--rss-mb':
        cfg.rssBytes = int() * 1024 ** 2;
        break;
      case '--out':
        cfg.out = value();
        break;
      case '--strict':
        cfg.strict = true;
        break;
      case '-h':
      case '--help':
        return USAGE;
      default:
        throw new Error(`unknown option ${a}`);
    }
  }
  return cfg;
}

// ---------------------------------------------------------------------------------------------
// Data (deterministic: the same seed gives byte-identical files for every target)

const MB = 1e6;

function generate(series: SyntheticSeriesOptions[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const s of series) for (const f of syntheticSeries(s)) out.push(f);
  return out;
}

/** `total` 512x512 CT instances in series of up to 300, one study per series. */
function stowDataset(total: number, seedBase: number, label: string): Uint8Array[] {
  const series: SyntheticSeriesOptions[] = [];
  for (let s = 0; s * 300 < total; s++) {
    series.push({
      patientName: `Bench^${label}`,
      patientId: `${label}-${s}`,
      instances: Math.min(300, total - s * 300),
      seed: seedBase + s,
      studyDescription: `Bench ${label}`,
    });
  }
  return generate(series);
}

const FAMILY = [
  'Nguyễn',
  'Trần',
  'Lê',
  'Phạm',
  'Hoàng',
  'Huỳnh',
  'Phan',
  'Vũ',
  'Võ',
  'Đặng',
  'Bùi',
  'Đỗ',
  'Hồ',
  'Ngô',
  'Dương',
  'Lý',
];
const MIDDLE = ['Văn', 'Thị', 'Hữu', 'Đức', 'Minh', 'Thu', 'Ngọc', 'Quang'];
const GIVEN = [
  'An',
  'Bình',
  'Cường',
  'Dũng',
  'Hà',
  'Hải',
  'Hạnh',
  'Hùng',
  'Lan',
  'Linh',
  'Long',
  'Mai',
  'Nam',
  'Phương',
  'Quân',
  'Sơn',
  'Thảo',
  'Trang',
  'Tuấn',
  'Vy',
  'Yến',
];
const WESTERN = ['Smith^John', 'Müller^Anna', 'Martin^Louis', 'Garcia^Maria', 'Brown^James', 'Rossi^Marco'];

function studyDateOf(i: number): string {
  const d = new Date(Date.UTC(2015, 0, 1) + ((i * 7919) % 3650) * 86_400_000);
  return d.toISOString().slice(0, 10).replaceAll('-', '');
}

function qidoStudy(i: number): SyntheticSeriesOptions {
  const name =
    i % 5 === 4
      ? WESTERN[i % WESTERN.length]
      : `${FAMILY[i % FAMILY.length]}^${MIDDLE[(i >> 4) % MIDDLE.length]} ${GIVEN[(i * 7) % GIVEN.length]}`;
  return {
    patientName: name,
    patientId: `BENCH${String(i).padStart(6, '0')}`,
    studyDate: studyDateOf(i),
    modality: i % 3 === 0 ? 'MR' : 'CT',
    accessionNumber: `ACC${i}`,
    instances: 1,
    rows: 16,
    columns: 16,
    seed: 500_000 + i,
  };
}

// ---------------------------------------------------------------------------------------------
// Workloads

export interface StowFigures {
  concurrency: number;
  batch: number;
  instances: number;
  bytes: number;
  seconds: number;
  instancesPerSec: number;
  MBps: number;
  failed: number;
}

async function stowAll(
  target: Target,
  files: Uint8Array[],
  batch: number,
  concurrency: number,
): Promise<StowFigures> {
  const batches: Uint8Array[][] = [];
  for (let i = 0; i < files.length; i += batch) batches.push(files.slice(i, i + batch));
  let failed = 0;
  let bytes = 0;
  let reported = false;
  const t0 = performance.now();
  await mapPool(batches, concurrency, async (b) => {
    const r = await stow(
      b.map((bytes) => ({ kind: 'bytes' as const, bytes })),
      { dicomwebRoot: target.dicomwebRoot },
    );
    bytes += r.bytesSent;
    const missing = b.length - Math.min(b.length, r.referenced.length);
    failed += missing;
    if ((r.status !== 200 || missing > 0) && !reported) {
      reported = true;
      console.error(
        `  ! STOW to ${target.name} answered ${r.status}: ${r.text ?? JSON.stringify(r.failed[0] ?? {})} (further errors not shown)`,
      );
    }
  });
  const seconds = (performance.now() - t0) / 1000;
  return {
    concurrency,
    batch,
    instances: files.length,
    bytes,
    seconds: round(seconds, 2),
    instancesPerSec: round(files.length / seconds, 1),
    MBps: round(bytes / MB / seconds, 1),
    failed,
  };
}

interface TimedFigures {
  firstMs: number;
  p50Ms: number;
  p95Ms: number;
  n: number;
  results?: number;
}

function timed(ms: number[], results?: number): TimedFigures {
  const s = summarize(ms.slice(1).length ? ms.slice(1) : ms);
  return { firstMs: round(ms[0]), p50Ms: round(s.p50), p95Ms: round(s.p95), n: ms.length, results };
}

function str(item: any, tag: string): string | undefined {
  const v = item?.[tag]?.Value?.[0];
  return typeof v === 'string' ? v : undefined;
}

export interface SeriesFigures {
  instances: number;
  ingest: StowFigures;
  instanceQido: TimedFigures;
  seriesMetadata: TimedFigures & { bytes: number };
  frame: TimedFigures;
  allFrames: {
    inFlight: number;
    frames: number;
    /** The untimed warm-up passes (--frame-warmup). */
    warmupMs: number[];
    runsMs: number[];
    /**
     * CPU time of this process (the client) per frame in each timed run: it shares the 2 cores with
     * the server, so a run where it is high says more about the client than about the server.
     */
    clientCpuMsPerFrame: number[];
    /** The frame client (`--frame-client`). */
    client: 'raw' | 'node';
    medianMs: number;
    bytes: number;
    errors: number;
  };
}

const FRAME_ACCEPT =
  'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1';
/** The least a frame of the 512×512 16-bit series can be. */
const FRAME_BYTES_MIN = 512 * 512 * 2;

/** Stores the 300-instance series (the same bytes for every target) and finds its URL by QIDO. */
async function storeSeries(
  target: Target,
  cfg: BenchConfig,
): Promise<{ ingest: StowFigures; seriesUrl: string }> {
  const files = generate([
    {
      patientName: 'Bench^Series300',
      patientId: 'SERIES300',
      instances: cfg.seriesInstances,
      seed: 777,
      studyDescription: 'Bench 300-instance series',
    },
  ]);
  const ingest = await stowAll(target, files, cfg.stowBatch, 4);
  files.length = 0;

  const studies = await getJson<any[]>(`${target.dicomwebRoot}/studies?PatientID=SERIES300`);
  const study = str(studies.json[0], '0020000D');
  if (!study) throw new Error(`${target.name}: the 300-instance study was not found by QIDO`);
  const seriesList = await getJson<any[]>(`${target.dicomwebRoot}/studies/${study}/series`);
  const series = str(seriesList.json[0], '0020000E');
  if (!series) throw new Error(`${target.name}: the 300-instance series was not found by QIDO`);
  return { ingest, seriesUrl: `${target.dicomwebRoot}/studies/${study}/series/${series}` };
}

/** The series' SOP Instance UIDs, by instance-level QIDO. */
async function seriesInstances(seriesUrl: string): Promise<string[]> {
  const r = await getJson<any[]>(`${seriesUrl}/instances`);
  return r.json.map((it) => str(it, '00080018')!).filter(Boolean);
}

interface FramePass {
  ms: number;
  bytes: number;
  errors: number;
  clientCpuMs: number;
}

/**
 * Frame 1 of every instance of a series, cfg.allFramesInFlight requests in flight (what a viewer does
 * when a series is opened): `pass()` times one pass, `one(sop)` one request; `close()` the connections.
 */
function frameClient(seriesUrl: string, sops: string[], cfg: BenchConfig) {
  const frameUrl = new URL(`${seriesUrl}/instances/`);
  const pool = cfg.frameClient === 'raw' ? new RawGetPool(frameUrl.origin, cfg.allFramesInFlight) : undefined;
  const one = (sop: string): Promise<{ status: number; bytes: number; ms: number }> =>
    pool
      ? pool.get(`${frameUrl.pathname}${sop}/frames/1`, { Accept: FRAME_ACCEPT })
      : httpGet(`${frameUrl.href}${sop}/frames/1`, { headers: { Accept: FRAME_ACCEPT } });
  const pass = async (): Promise<FramePass> => {
    let bytes = 0;
    let errors = 0;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await mapPool(sops, cfg.allFramesInFlight, async (sop) => {
      const r = await one(sop);
      bytes += r.bytes;
      if (r.status !== 200 || r.bytes < FRAME_BYTES_MIN) errors++;
    });
    const ms = round(performance.now() - t0);
    const c = process.cpuUsage(c0);
    return { ms, bytes, errors, clientCpuMs: round((c.user + c.system) / 1000 / sops.length, 2) };
  };
  return { one, pass, close: () => pool?.close() };
}

async function seriesWorkload(target: Target, cfg: BenchConfig): Promise<SeriesFigures> {
  const { ingest, seriesUrl } = await storeSeries(target, cfg);

  // Instance-level QIDO.
  const qidoMs: number[] = [];
  let sops: string[] = [];
  for (let i = 0; i < cfg.seriesRepeats; i++) {
    const r = await getJson<any[]>(`${seriesUrl}/instances`);
    qidoMs.push(r.ms);
    sops = r.json.map((it) => str(it, '00080018')!).filter(Boolean);
  }
  if (sops.length !== cfg.seriesInstances) {
    console.error(
      `  ! ${target.name}: instance QIDO listed ${sops.length} of ${cfg.seriesInstances} instances`,
    );
  }

  // Series metadata.
  const metaMs: number[] = [];
  let metaItems = 0;
  let metaBytes = 0;
  for (let i = 0; i < cfg.seriesRepeats; i++) {
    const r = await httpGet(`${seriesUrl}/metadata`, {
      headers: { Accept: 'application/dicom+json' },
      collect: true,
    });
    metaMs.push(r.ms);
    metaBytes = r.bytes;
    if (i === 0) metaItems = (JSON.parse(r.body!.toString('utf8')) as unknown[]).length;
  }

  // Every frame of the series, N in flight (what a viewer does when a series is opened).
  const frames = frameClient(seriesUrl, sops, cfg);

  // Warm-up, as for the QIDO mix: a server process that has just started serves its first thousand
  // or so frame requests at up to twice the CPU of its steady state (code not yet optimised by the
  // JIT, memory not yet grown), and a hospital's server has served millions. Untimed; the passes'
  // times are kept in the JSON.
  const warmupMs: number[] = [];
  for (let i = 0; i < cfg.frameWarmupPasses; i++) warmupMs.push((await frames.pass()).ms);

  // One frame at a time (latency), spread over the series.
  const frameMs: number[] = [];
  for (let i = 0; i < cfg.singleFrameRequests; i++) {
    const sop = sops[(i * 37) % sops.length];
    const r = await frames.one(sop);
    if (r.status !== 200 || r.bytes < FRAME_BYTES_MIN)
      console.error(`  ! ${target.name}: frame ${sop} → ${r.status}, ${r.bytes} B`);
    frameMs.push(r.ms);
  }

  const runsMs: number[] = [];
  const clientCpuMsPerFrame: number[] = [];
  let bytes = 0;
  let errors = 0;
  for (let run = 0; run < cfg.allFramesRuns; run++) {
    const pass = await frames.pass();
    runsMs.push(pass.ms);
    clientCpuMsPerFrame.push(pass.clientCpuMs);
    bytes = pass.bytes;
    errors += pass.errors;
  }
  frames.close();
  return {
    instances: sops.length,
    ingest,
    instanceQido: timed(qidoMs, sops.length),
    seriesMetadata: { ...timed(metaMs, metaItems), bytes: metaBytes },
    frame: timed(frameMs),
    allFrames: {
      inFlight: cfg.allFramesInFlight,
      client: cfg.frameClient,
      frames: sops.length,
      warmupMs,
      runsMs,
      clientCpuMsPerFrame,
      medianMs: round(summarize(runsMs).p50),
      bytes,
      errors,
    },
  };
}

/** Frame passes of ours and Orthanc alternating, both servers up, one series each (`alternate`). */
export interface AlternatingFrames {
  frames: number;
  inFlight: number;
  /** Per server: the untimed warm-up passes, then the timed ones (ms), in the order they ran. */
  ours: { warmupMs: number[]; runsMs: number[]; medianMs: number; errors: number };
  orthanc: { warmupMs: number[]; runsMs: number[]; medianMs: number; errors: number };
  quiet?: QuietReport;
}

/**
 * The all-frames figure with the machine's slow moments shared: both servers started, the same series
 * stored in each, then passes alternating A B B A A B … (warm-up passes too), so that a slow minute of
 * this virtual machine falls on both. Unlike the per-target figure, each server's index holds this one
 * series only.
 */
async function alternatingFrames(cfg: BenchConfig, log: (s: string) => void): Promise<AlternatingFrames> {
  const quiet = await quietBefore('alternating frames', cfg, log);
  const servers: Target[] = [];
  const clients: ReturnType<typeof frameClient>[] = [];
  try {
    servers.push(await startOurServer());
    servers.push(await startOrthanc());
    for (const t of servers) {
      const { seriesUrl } = await storeSeries(t, cfg);
      const sops = await seriesInstances(seriesUrl);
      if (sops.length !== cfg.seriesInstances)
        throw new Error(`${t.name}: instance QIDO listed ${sops.length} of ${cfg.seriesInstances} instances`);
      clients.push(frameClient(seriesUrl, sops, cfg));
    }
    const passes = (n: number) => {
      const ms: number[][] = [[], []];
      const errors = [0, 0];
      return (async () => {
        for (let i = 0; i < n; i++) {
          for (const k of i % 2 === 0 ? [0, 1] : [1, 0]) {
            const p = await clients[k].pass();
            ms[k].push(p.ms);
            errors[k] += p.errors;
          }
        }
        return { ms, errors };
      })();
    };
    const warm = await passes(cfg.frameWarmupPasses);
    const timed = await passes(cfg.alternatingPasses);
    const side = (k: number) => ({
      warmupMs: warm.ms[k],
      runsMs: timed.ms[k],
      medianMs: round(summarize(timed.ms[k]).p50),
      errors: warm.errors[k] + timed.errors[k],
    });
    return {
      frames: cfg.seriesInstances,
      inFlight: cfg.allFramesInFlight,
      ours: side(0),
      orthanc: side(1),
      quiet,
    };
  } finally {
    for (const c of clients) c.close();
    for (const t of servers) await t.close().catch(() => undefined);
  }
}

export interface QidoFigures {
  studies: number;
  ingest: StowFigures;
  queries: { name: string; query: string; p50Ms: number; p95Ms: number; results: number; status: number }[];
  overall: { p50Ms: number; p95Ms: number; n: number };
}

/** The QIDO mix; values are chosen so that each query matches something in `studies` studies. */
export function qidoQueries(studies: number): { name: string; query: string }[] {
  const id = `BENCH${String(Math.floor(studies * 0.4321)).padStart(6, '0')}`;
  return [
    { name: 'PatientName wildcard', query: 'studies?PatientName=Nguy*' },
    { name: 'PatientName fuzzy', query: 'studies?PatientName=nguyen%20van&fuzzymatching=true' },
    { name: 'PatientID', query: `studies?PatientID=${id}` },
    { name: 'StudyDate range', query: 'studies?StudyDate=20200101-20200331' },
    { name: 'ModalitiesInStudy, limit 100', query: 'studies?ModalitiesInStudy=MR&limit=100' },
    {
      name: 'name + date + modality',
      query: 'studies?PatientName=Tr*&StudyDate=20180101-20191231&ModalitiesInStudy=CT',
    },
    { name: 'limit 50', query: 'studies?limit=50' },
    {
      name: `limit 50 offset ${Math.floor(studies / 2)}`,
      query: `studies?limit=50&offset=${Math.floor(studies / 2)}`,
    },
  ];
}

async function qidoWorkload(target: Target, cfg: BenchConfig): Promise<QidoFigures> {
  const files = generate(Array.from({ length: cfg.qidoStudies }, (_, i) => qidoStudy(i)));
  const ingest = await stowAll(target, files, 50, 4);
  files.length = 0;
  const QIDO_QUERIES = qidoQueries(cfg.qidoStudies);
  const per = new Map<string, { ms: number[]; results: number; status: number }>();
  for (const q of QIDO_QUERIES) per.set(q.name, { ms: [], results: 0, status: 0 });
  // Warm-up round, then rounds that interleave the queries.
  for (let round = -1; round < cfg.qidoRepeats; round++) {
    for (const q of QIDO_QUERIES) {
      const r = await httpGet(`${target.dicomwebRoot}/${q.query}`, {
        headers: { Accept: 'application/dicom+json' },
        collect: round === -1,
      });
      const entry = per.get(q.name)!;
      if (round === -1) {
        entry.status = r.status;
        try {
          const text = r.body!.toString('utf8');
          entry.results = text.trim() ? (JSON.parse(text) as unknown[]).length : 0;
        } catch {
          entry.results = -1;
        }
      } else entry.ms.push(r.ms);
    }
  }
  const all: number[] = [];
  const queries = QIDO_QUERIES.map((q) => {
    const e = per.get(q.name)!;
    all.push(...e.ms);
    const s = summarize(e.ms);
    return {
      name: q.name,
      query: q.query,
      p50Ms: round(s.p50),
      p95Ms: round(s.p95),
      results: e.results,
      status: e.status,
    };
  });
  const s = summarize(all);
  return {
    studies: cfg.qidoStudies,
    ingest,
    queries,
    overall: { p50Ms: round(s.p50), p95Ms: round(s.p95), n: all.length },
  };
}

type RssStow = RssReport & {
  bytes: number;
  instances: number;
  seconds: number;
  status: number;
  stored: number;
};
type RssGet = RssReport & { bytes: number; seconds: number; status: number };

export interface RssFigures {
  /** One STOW request of many 512x512 instances (request streaming). */
  stow: RssStow | null;
  /** WADO-RS retrieve of that study. */
  retrieve: RssGet | null;
  /** One STOW request holding a single instance of the same size (part streaming). */
  stowInstance?: RssStow | null;
  /** WADO-RS retrieve of that one instance. */
  retrieveInstance?: RssGet | null;
}

async function measureRetrieve(target: Target, url: string): Promise<RssGet> {
  await new Promise((r) => setTimeout(r, 2000));
  const t1 = performance.now();
  const got = await measureRss(target.pid, () =>
    httpGet(url, {
      headers: { Accept: 'multipart/related; type="application/dicom"' },
      timeoutMs: 30 * 60_000,
    }),
  );
  return {
    ...got.rss,
    bytes: got.result.bytes,
    seconds: round((performance.now() - t1) / 1000, 2),
    status: got.result.status,
  };
}

async function bigInstanceRss(
  target: Target,
  cfg: BenchConfig,
): Promise<Pick<RssFigures, 'stowInstance' | 'retrieveInstance'>> {
  const big = bigMultiframeInstance(cfg.rssBytes, 'RSSINSTANCE');
  await new Promise((r) => setTimeout(r, 2000));
  const t0 = performance.now();
  const stowed = await measureRss(target.pid, () =>
    stow([{ kind: 'chunks', size: big.size, chunks: () => big.chunks(), name: 'big instance' }], {
      dicomwebRoot: target.dicomwebRoot,
      timeoutMs: 30 * 60_000,
    }),
  );
  const stowInstance: RssStow = {
    ...stowed.rss,
    bytes: stowed.result.bytesSent,
    instances: 1,
    seconds: round((performance.now() - t0) / 1000, 2),
    status: stowed.result.status,
    stored: stowed.result.referenced.length,
  };
  if (stowed.result.referenced.length !== 1) {
    const f = stowed.result.failed[0];
    console.error(
      `  ! ${target.name}: the ${Math.round(big.size / MB)} MB instance was not stored (HTTP ${stowed.result.status}${
        f ? `, reason ${f.failureReason}` : ''
      }${stowed.result.text ? `: ${stowed.result.text.slice(0, 200)}` : ''})`,
    );
    return { stowInstance, retrieveInstance: null };
  }
  const retrieveInstance = await measureRetrieve(
    target,
    `${target.dicomwebRoot}/studies/${big.studyInstanceUID}/series/${big.seriesInstanceUID}/instances/${big.sopInstanceUID}`,
  );
  return { stowInstance, retrieveInstance };
}

async function rssWorkload(target: Target, cfg: BenchConfig): Promise<RssFigures> {
  if (!rssSupported(target.pid)) return { stow: null, retrieve: null };
  const perInstance = 512 * 512 * 2 + 1500;
  const instances = Math.max(1, Math.ceil(cfg.rssBytes / perInstance));
  let files: Uint8Array[] = generate([
    {
      patientName: 'Bench^Rss',
      patientId: 'RSS1GB',
      instances,
      seed: 4242,
      studyDescription: 'Bench 1 GB STOW',
    },
  ]);
  // Let the server settle (GC, SQLite checkpoints) before the baseline.
  await new Promise((r) => setTimeout(r, 2000));
  const t0 = performance.now();
  const stowed = await measureRss(target.pid, () =>
    stow(
      files.map((bytes) => ({ kind: 'bytes' as const, bytes })),
      { dicomwebRoot: target.dicomwebRoot, timeoutMs: 30 * 60_000 },
    ),
  );
  const stowSeconds = (performance.now() - t0) / 1000;
  files = [];
  const studies = await getJson<any[]>(`${target.dicomwebRoot}/studies?PatientID=RSS1GB`);
  const study = str(studies.json[0], '0020000D');
  const retrieve = study ? await measureRetrieve(target, `${target.dicomwebRoot}/studies/${study}`) : null;
  const single = await bigInstanceRss(target, cfg);
  return {
    stow: {
      ...stowed.rss,
      bytes: stowed.result.bytesSent,
      instances,
      seconds: round(stowSeconds, 2),
      status: stowed.result.status,
      stored: stowed.result.referenced.length,
    },
    retrieve,
    ...single,
  };
}

// ---------------------------------------------------------------------------------------------
// Run, compare, report

export interface TargetResults {
  name: string;
  version?: string;
  /** The wait for a quiet machine before this target started (--quiet-wait). */
  quiet?: QuietReport;
  stow: StowFigures[];
  series?: SeriesFigures;
  qido?: QidoFigures;
  rss?: RssFigures;
  cstore?: CStoreFigures[];
  errors: string[];
}

export async function benchTarget(
  target: Target,
  cfg: BenchConfig,
  log: (s: string) => void,
): Promise<TargetResults> {
  const res: TargetResults = { name: target.name, stow: [], errors: [] };
  const step = async (name: string, fn: () => Promise<void>) => {
    if (cfg.skip.has(name)) return;
    const t0 = performance.now();
    try {
      await fn();
      log(`  ${target.name}: ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } catch (err) {
      const msg = `${name}: ${(err as Error).stack ?? err}`;
      res.errors.push(msg);
      log(`  ${target.name}: ${name} FAILED: ${(err as Error).message}`);
    }
  };
  await step('stow', async () => {
    for (const c of cfg.stowConcurrency) {
      const files = stowDataset(cfg.stowInstances, 10_000 * c, `STOW-C${c}`);
      const fig = await stowAll(target, files, cfg.stowBatch, c);
      res.stow.push(fig);
      log(
        `  ${target.name}: STOW c=${c}: ${fig.instancesPerSec} inst/s, ${fig.MBps} MB/s (${fig.failed} failed)`,
      );
    }
  });
  await step('series', async () => {
    res.series = await seriesWorkload(target, cfg);
  });
  await step('qido', async () => {
    res.qido = await qidoWorkload(target, cfg);
  });
  await step('rss', async () => {
    res.rss = await rssWorkload(target, cfg);
  });
  await step('cstore', async () => {
    if (target.dimsePort === undefined) return;
    res.cstore = await benchCStore({
      host: '127.0.0.1',
      port: target.dimsePort,
      instances: cfg.cstoreInstances,
      associations: [1, 4],
      seedBase: 900_000,
    });
    for (const f of res.cstore)
      log(
        `  ${target.name}: C-STORE ${f.associations} association(s): ${f.instancesPerSec} inst/s (${f.failed} failed)`,
      );
  });
  return res;
}

export interface Verdict {
  metric: string;
  ours?: number;
  /** The same figure for our server on S3 + PostgreSQL. */
  s3pg?: number;
  orthanc?: number;
  unit: string;
  /** How many times better ours is (higher is better). */
  ratio?: number;
  target: string;
  pass?: boolean;
}

export function compare(
  ours: TargetResults | undefined,
  orthanc: TargetResults | undefined,
  /** Another target whose rows must appear too (its figures are filled in by the caller). */
  also?: TargetResults,
  alternating?: AlternatingFrames,
): Verdict[] {
  const out: Verdict[] = [];
  /** A row for ours (o) against Orthanc (t); its ratio is how many times better ours is. */
  const row = (
    lowerIsBetter: boolean,
    metric: string,
    unit: string,
    o?: number,
    t?: number,
    need?: number,
  ) => {
    const [num, den] = lowerIsBetter ? [t, o] : [o, t];
    const ratio = num !== undefined && den !== undefined && den > 0 ? num / den : undefined;
    out.push({
      metric,
      ours: o,
      orthanc: t,
      unit,
      ratio: ratio === undefined ? undefined : round(ratio, 2),
      target: need ? `≥ ${need}×${lowerIsBetter ? ' faster' : ''}` : '',
      pass: need && ratio !== undefined ? ratio >= need : undefined,
    });
  };
  const faster = (metric: string, unit: string, o?: number, t?: number, need?: number) =>
    row(true, metric, unit, o, t, need);
  const higher = (metric: string, unit: string, o?: number, t?: number, need?: number) =>
    row(false, metric, unit, o, t, need);
  const concurrencies = [
    ...new Set(
      [...(ours?.stow ?? []), ...(orthanc?.stow ?? []), ...(also?.stow ?? [])].map((s) => s.concurrency),
    ),
  ];
  for (const c of concurrencies) {
    const o = ours?.stow.find((s) => s.concurrency === c);
    const t = orthanc?.stow.find((s) => s.concurrency === c);
    higher(`STOW c=${c} instances/s`, 'inst/s', o?.instancesPerSec, t?.instancesPerSec, 2);
    higher(`STOW c=${c} MB/s`, 'MB/s', o?.MBps, t?.MBps);
  }
  for (const a of [
    ...new Set([...(ours?.cstore ?? []), ...(also?.cstore ?? [])].map((f) => f.associations)),
  ]) {
    const o = ours?.cstore?.find((f) => f.associations === a);
    higher(`C-STORE ${a} association${a > 1 ? 's' : ''} instances/s`, 'inst/s', o?.instancesPerSec);
  }
  faster('QIDO studies p50 (mix)', 'ms', ours?.qido?.overall.p50Ms, orthanc?.qido?.overall.p50Ms);
  faster('QIDO studies p95 (mix)', 'ms', ours?.qido?.overall.p95Ms, orthanc?.qido?.overall.p95Ms);
  faster(
    'Instance QIDO, 300-inst series p50',
    'ms',
    ours?.series?.instanceQido.p50Ms,
    orthanc?.series?.instanceQido.p50Ms,
    5,
  );
  faster(
    'Series metadata, 300 inst p50',
    'ms',
    ours?.series?.seriesMetadata.p50Ms,
    orthanc?.series?.seriesMetadata.p50Ms,
    5,
  );
  faster('Single frame p50', 'ms', ours?.series?.frame.p50Ms, orthanc?.series?.frame.p50Ms);
  faster(
    `All 300 frames, ${ours?.series?.allFrames.inFlight ?? orthanc?.series?.allFrames.inFlight ?? 8} in flight`,
    'ms',
    ours?.series?.allFrames.medianMs,
    orthanc?.series?.allFrames.medianMs,
    2,
  );
  // The first warm-up pass: the server process's first frame requests (no target; shown so that the
  // steady-state figure above does not hide it).
  faster(
    'All 300 frames, first pass of the process',
    'ms',
    ours?.series?.allFrames.warmupMs[0],
    orthanc?.series?.allFrames.warmupMs[0],
  );
  if (alternating)
    faster(
      `All 300 frames, alternating with Orthanc (median of ${alternating.ours.runsMs.length})`,
      'ms',
      alternating.ours.medianMs,
      alternating.orthanc.medianMs,
    );
  const rssRow = (metric: string, o?: RssReport | null, t?: RssReport | null) => {
    out.push({
      metric,
      ours: o?.increaseMB,
      orthanc: t?.increaseMB,
      unit: 'MB',
      ratio: undefined,
      target: '≤ 100 MB (ours)',
      pass: o ? o.increaseMB <= 100 : undefined,
    });
  };
  const size = (ours?.rss?.stow ?? orthanc?.rss?.stow)?.bytes;
  const label =
    size === undefined
      ? ''
      : size >= 0.9e9
        ? `${(size / 1e9).toFixed(2)} GB `
        : `${Math.round(size / MB)} MB `;
  rssRow(`RSS increase, ${label}STOW (one request)`, ours?.rss?.stow, orthanc?.rss?.stow);
  rssRow(`RSS increase, ${label}study retrieve`, ours?.rss?.retrieve, orthanc?.rss?.retrieve);
  rssRow(`RSS increase, ${label}single-instance STOW`, ours?.rss?.stowInstance, orthanc?.rss?.stowInstance);
  rssRow(
    `RSS increase, ${label}single-instance retrieve`,
    ours?.rss?.retrieveInstance,
    orthanc?.rss?.retrieveInstance,
  );
  return out;
}

function fmt(n: number | undefined): string {
  if (n === undefined || Number.isNaN(n)) return '—';
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

export function formatTable(verdicts: Verdict[], results: TargetResults[]): string {
  const header = ['metric', 'ours', 's3+pg', 'orthanc', 'ratio', 'target', 'verdict'];
  const rows = verdicts.map((v) => [
    `${v.metric} (${v.unit})`,
    fmt(v.ours),
    fmt(v.s3pg),
    fmt(v.orthanc),
    v.ratio === undefined ? '—' : `${v.ratio}×`,
    v.target,
    v.pass === undefined ? '' : v.pass ? 'PASS' : 'FAIL',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const lines = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  for (const r of results) {
    if (r.qido) {
      lines.push('', `QIDO queries on ${r.qido.studies} studies, ${r.name} (p50 / p95 ms, results):`);
      for (const q of r.qido.queries)
        lines.push(
          `  ${q.name.padEnd(30)} ${fmt(q.p50Ms).padStart(7)} / ${fmt(q.p95Ms).padStart(7)}   ${q.results} (HTTP ${q.status})`,
        );
    }
    if (r.rss?.stow) {
      const s = r.rss.stow;
      lines.push(
        `RSS ${r.name}: STOW ${fmt(s.bytes / MB)} MB in one request (${s.stored}/${s.instances} stored, HTTP ${s.status}): ${s.baselineMB} → ${s.peakMB} MB`,
      );
    }
    if (r.rss?.retrieve) {
      const g = r.rss.retrieve;
      lines.push(
        `RSS ${r.name}: retrieve ${fmt(g.bytes / MB)} MB (HTTP ${g.status}): ${g.baselineMB} → ${g.peakMB} MB`,
      );
    }
    if (r.rss?.stowInstance) {
      const x = r.rss.stowInstance;
      lines.push(
        `RSS ${r.name}: STOW of one ${fmt(x.bytes / MB)} MB instance (HTTP ${x.status}, ${x.stored} stored): ${x.baselineMB} → ${x.peakMB} MB`,
      );
    }
    if (r.rss?.retrieveInstance) {
      const g = r.rss.retrieveInstance;
      lines.push(
        `RSS ${r.name}: retrieve of that instance, ${fmt(g.bytes / MB)} MB (HTTP ${g.status}): ${g.baselineMB} → ${g.peakMB} MB`,
      );
    }
    for (const e of r.errors) lines.push(`ERROR ${r.name}: ${e.split('\n')[0]}`);
  }
  return lines.join('\n');
}

function machineInfo() {
  const cpus = os.cpus();
  let orthancVersion: string | undefined;
  const found = findOrthanc();
  if (found) {
    try {
      orthancVersion = execFileSync(found.bin, ['--version'], { encoding: 'utf8' }).split('\n')[0];
    } catch {
      orthancVersion = undefined;
    }
  }
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    memGB: round(os.totalmem() / 1024 ** 3, 1),
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
    orthancVersion,
  };
}

/** Waits (--quiet-wait) until what ran before this target has finished; undefined when not waiting. */
async function quietBefore(
  name: string,
  cfg: BenchConfig,
  log: (s: string) => void,
): Promise<QuietReport | undefined> {
  if (cfg.quietWaitSeconds === 0 || !quietSupported()) return undefined;
  const q = await waitForQuiet({ timeoutMs: cfg.quietWaitSeconds * 1000 });
  const last = q.busyPercent.slice(-3).join(', ');
  log(
    q.quiet
      ? `machine quiet before ${name} after ${q.waitedMs / 1000} s (busy ${last} %)`
      : `machine still busy before ${name} after ${q.waitedMs / 1000} s (busy ${last} %); going on`,
  );
  return q;
}

async function main(): Promise<number> {
  const cfg = parseOrExit(parseBenchArgs, USAGE);
  if (typeof cfg === 'number') return cfg;
  const log = (s: string) => console.error(s);
  const started = new Date();
  const results: TargetResults[] = [];
  let current: Target | undefined;
  const cleanup = async () => {
    const t = current;
    current = undefined;
    if (t) await t.close().catch(() => undefined);
  };
  const onSignal = () => {
    cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const targets = TARGET_WORKLOADS.some((w) => !cfg.skip.has(w)) ? cfg.targets : [];
  if (targets.length) log(`bench: targets ${targets.join(', ')}${cfg.quick ? ' (quick)' : ''}`);
  for (const name of targets) {
    const quiet = await quietBefore(name, cfg, log);
    log(`starting ${name}…`);
    try {
      current =
        name === 'ours'
          ? await startOurServer()
          : name === 'ours-s3pg'
            ? await startOurServerOnS3Postgres()
            : await startOrthanc();
    } catch (err) {
      log(`cannot start ${name}: ${(err as Error).message}`);
      results.push({ name, quiet, stow: [], errors: [`start: ${(err as Error).message}`] });
      continue;
    }
    try {
      results.push({ ...(await benchTarget(current, cfg, log)), quiet });
    } finally {
      await cleanup();
    }
  }
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  let alternating: AlternatingFrames | undefined;
  // Not when Orthanc could not be started as a target (not installed): that is already reported.
  const orthancDown = results.some(
    (r) => r.name === 'orthanc' && r.errors.some((e) => e.startsWith('start:')),
  );
  if (
    !cfg.skip.has('alternate') &&
    cfg.targets.includes('ours') &&
    cfg.targets.includes('orthanc') &&
    !orthancDown
  ) {
    log('frames, ours and Orthanc alternating (servers of their own)…');
    try {
      alternating = await alternatingFrames(cfg, log);
      log(
        `  alternating: ours ${alternating.ours.medianMs} ms, Orthanc ${alternating.orthanc.medianMs} ms (median of ${cfg.alternatingPasses} passes each)`,
      );
    } catch (err) {
      log(`  alternating frames FAILED: ${(err as Error).message}`);
      results.push({ name: 'alternate', stow: [], errors: [(err as Error).message] });
    }
  }
  let transcode: TranscodeFigures | undefined;
  if (!cfg.skip.has('transcode')) {
    log('transcoding (servers of its own)…');
    try {
      transcode = await benchTranscode({ samplesDir: cfg.samplesDir, log });
    } catch (err) {
      log(`  transcode FAILED: ${(err as Error).message}`);
      results.push({ name: 'transcode', stow: [], errors: [`transcode: ${(err as Error).stack ?? err}`] });
    }
  }

  const ours = results.find((r) => r.name === 'ours');
  const orthanc = results.find((r) => r.name === 'orthanc');
  const s3pg = results.find((r) => r.name === 'ours-s3pg');
  const verdicts = compare(ours, orthanc, s3pg, alternating);
  if (s3pg) {
    // The S3 + PostgreSQL figures beside the embedded ones (ratios and targets stay embedded vs Orthanc).
    const other = compare(s3pg, orthanc);
    for (const v of verdicts) v.s3pg = other.find((o) => o.metric === v.metric)?.ours;
  }
  if (results.length > 0 || alternating) console.log(formatTable(verdicts, results));
  if (transcode) console.log(`\n${formatTranscode(transcode)}`);

  const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\..*/, '');
  const out = resolve(cfg.out ?? `bench-results/bench-${stamp}.json`);
  await mkdir(dirname(out), { recursive: true });
  const json = {
    date: started.toISOString(),
    machine: machineInfo(),
    config: { ...cfg, skip: [...cfg.skip], out: undefined },
    results,
    verdicts,
    alternating,
    transcode,
  };
  await writeFile(out, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwritten ${out}`);
  const failed = verdicts.some((v) => v.pass === false) || results.some((r) => r.errors.length > 0);
  return cfg.strict && failed ? 1 : 0;
}

if (isMain(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err);
      process.exit(2);
    },
  );
}
