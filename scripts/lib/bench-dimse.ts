/**
 * C-STORE throughput, beside STOW-RS in `npm run bench`: synthetic 512×512 CT instances (the same kind
 * as the STOW workload, other seeds) sent to a DICOM listener by our C-STORE SCU, each data set as
 * generated, over 1 and over 4 associations at once. Each association sends its instances one after the
 * other (a C-STORE waits for its response), as modalities do.
 */
import { isStored, type OutgoingInstance, storeInstances } from '../../server/dimse/scu';
import { readFileMeta } from '../../server/dimse/part10';
import { type SyntheticSeriesOptions, syntheticSeries } from '../../server/synthetic';
import { round } from './stats';

const MB = 1024 * 1024;

/** Our calling AE title: the benchmark targets list it (from 127.0.0.1) in PACS_DIMSE_ALLOWED_AES. */
export const BENCH_AE_TITLE = 'BENCH';

export interface CStoreFigures {
  associations: number;
  instances: number;
  /** Data set bytes sent. */
  bytes: number;
  seconds: number;
  instancesPerSec: number;
  MBps: number;
  failed: number;
}

export interface CStoreBenchOptions {
  host: string;
  /** The DICOM listener's port (the server started with PACS_DIMSE_PORT, BENCH_AE_TITLE allowed). */
  port: number;
  /** Its AE title (default PACS). */
  calledAETitle?: string;
  /** Instances per run (default 300). */
  instances?: number;
  /** Associations at once, one run each (default [1, 4]). */
  associations?: number[];
  /** Seeds of the synthetic data (distinct per run so every instance is new to the archive). */
  seedBase?: number;
  log?: (line: string) => void;
}

/**
 * `total` CT instances in series of up to 300, as C-STORE data sets (File Meta Information removed),
 * of `size`×`size` pixels (default 512).
 */
export function cstoreDataset(
  total: number,
  seedBase: number,
  label: string,
  size = 512,
): OutgoingInstance[] {
  const out: OutgoingInstance[] = [];
  for (let s = 0; s * 300 < total; s++) {
    const series: SyntheticSeriesOptions = {
      patientName: `Bench^${label}`,
      patientId: `${label}-${s}`,
      instances: Math.min(300, total - s * 300),
      seed: seedBase + s,
      studyDescription: `Bench ${label}`,
      rows: size,
      columns: size,
    };
    for (const file of syntheticSeries(series)) {
      const meta = readFileMeta(file);
      if (!meta?.MediaStorageSOPClassUID || !meta.MediaStorageSOPInstanceUID || !meta.TransferSyntaxUID)
        throw new Error('synthetic file without File Meta Information');
      const dataset = file.subarray(meta.datasetOffset);
      out.push({
        SOPClassUID: meta.MediaStorageSOPClassUID,
        SOPInstanceUID: meta.MediaStorageSOPInstanceUID,
        TransferSyntaxUID: meta.TransferSyntaxUID,
        size: dataset.length,
        dataset: async () => dataset,
      });
    }
  }
  return out;
}

/** Sends `instances` over `associations` associations at once and measures the wall time. */
export async function storeAll(
  opts: CStoreBenchOptions,
  instances: OutgoingInstance[],
  associations: number,
): Promise<CStoreFigures> {
  const lanes: OutgoingInstance[][] = Array.from({ length: associations }, () => []);
  for (const [i, inst] of instances.entries()) lanes[i % associations].push(inst);
  let bytes = 0;
  for (const inst of instances) bytes += (await inst.dataset()).length;
  const remote = { aet: opts.calledAETitle ?? 'PACS', host: opts.host, port: opts.port, tls: false };
  let failed = 0;
  let reported = false;
  const t0 = performance.now();
  await Promise.all(
    lanes.map(async (lane) => {
      const results = await storeInstances(remote, lane, { callingAETitle: BENCH_AE_TITLE });
      for (const r of results) {
        if (isStored(r)) continue;
        failed++;
        if (!reported) {
          reported = true;
          opts.log?.(
            `  ! C-STORE failed: ${r.status?.toString(16) ?? ''} ${r.error ?? ''} (further errors not shown)`,
          );
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return {
    associations,
    instances: instances.length,
    bytes,
    seconds: round(seconds, 2),
    instancesPerSec: round(instances.length / seconds, 1),
    MBps: round(bytes / MB / seconds, 1),
    failed,
  };
}

/** The C-STORE workload: one run per association count, each with its own new instances. */
export async function benchCStore(opts: CStoreBenchOptions): Promise<CStoreFigures[]> {
  const figures: CStoreFigures[] = [];
  for (const n of opts.associations ?? [1, 4]) {
    const data = cstoreDataset(opts.instances ?? 300, (opts.seedBase ?? 70_000) + 1000 * n, `CSTORE-A${n}`);
    const fig = await storeAll(opts, data, n);
    figures.push(fig);
    opts.log?.(
      `  C-STORE ${n} association${n > 1 ? 's' : ''}: ${fig.instancesPerSec} inst/s, ${fig.MBps} MB/s (${fig.failed} failed)`,
    );
  }
  return figures;
}
