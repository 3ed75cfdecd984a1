/**
 * A mixed DICOMweb workload for the reliability tools (soak, storage faults): concurrent STOW-RS clients
 * sending new synthetic instances, and readers doing QIDO-RS searches and WADO-RS retrievals (whole
 * instances checked against their SHA-256, metadata, frames) of what was acknowledged. Every answer is
 * recorded by kind and status, so the caller decides what is acceptable (the soak: only success; a
 * storage fault: per-instance 0xA700 and 503 while the store is down).
 */
import {
  type InstanceUIDs,
  parseStow,
  type Random,
  seededRandom,
  sha256,
  syntheticInstances,
} from './reliability';
import { multipart } from './reliability';

export interface AcknowledgedInstance extends InstanceUIDs {
  sha256: string;
}

export interface LoadOptions {
  dicomweb: string;
  /** Concurrent STOW clients (default 4). */
  stowClients?: number;
  /** Concurrent readers (QIDO and WADO, default 4). */
  readers?: number;
  /** Instances per STOW request (default 5). */
  batch?: number;
  /** Pixels per side of the synthetic instances (default 128: 33 kB each). */
  rows?: number;
  /** Pause between two requests of one client, ms (default 0: as fast as answered). */
  pauseMs?: number;
  /** Per-request timeout, ms (default 60 s): a request taking longer counts as hung. */
  timeoutMs?: number;
  seed?: number;
  /** Instances already in the archive that readers may retrieve too. */
  known?: AcknowledgedInstance[];
}

export type RequestKind = 'stow' | 'qido' | 'wado-instance' | 'wado-metadata' | 'wado-frame';

export interface LoadReport {
  ms: number;
  /** Requests by kind, then by HTTP status ('network' for no answer, 'timeout' for none in time). */
  statuses: Record<RequestKind, Record<string, number>>;
  /** FailureReason (hex) of every instance STOW refused, with one message for each. */
  failureReasons: Record<string, { count: number; message: string }>;
  /** Instances sent, and acknowledged in a 200/202 STOW answer. */
  sent: number;
  acknowledged: AcknowledgedInstance[];
  /** SOP Instance UIDs sent but not acknowledged (refused, or no answer). */
  unacknowledged: string[];
  /** Retrieved instances whose bytes differ from what was acknowledged. */
  mismatches: string[];
  /** 503 answers without a Retry-After header. */
  missingRetryAfter: number;
  /** Examples of unexpected answers, for messages. */
  samples: string[];
  /** Latencies (ms) by kind: p50, p95, max. */
  latency: Record<RequestKind, { p50: number; p95: number; max: number; n: number }>;
}

const KINDS: RequestKind[] = ['stow', 'qido', 'wado-instance', 'wado-metadata', 'wado-frame'];

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Runs the workload until stop() is called; stop() resolves with the report once every client is done. */
export function startLoad(opts: LoadOptions): { stop(): Promise<LoadReport>; report(): LoadReport } {
  const random: Random = seededRandom(opts.seed ?? 1);
  const batch = opts.batch ?? 5;
  const rows = opts.rows ?? 128;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const statuses = Object.fromEntries(KINDS.map((k) => [k, {}])) as LoadReport['statuses'];
  const times = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<RequestKind, number[]>;
  const failureReasons: LoadReport['failureReasons'] = {};
  const acknowledged: AcknowledgedInstance[] = [...(opts.known ?? [])];
  const known = opts.known?.length ?? 0;
  const pending = new Map<string, AcknowledgedInstance>();
  const mismatches: string[] = [];
  const samples: string[] = [];
  let sent = 0;
  let missingRetryAfter = 0;
  let stopping = false;
  const started = Date.now();

  const count = (kind: RequestKind, status: string, ms: number, detail?: string) => {
    statuses[kind][status] = (statuses[kind][status] ?? 0) + 1;
    times[kind].push(ms);
    if (detail && samples.length < 20) samples.push(`${kind} ${status}: ${detail}`);
  };

  /** fetch with a timeout; the body read fully. */
  async function request(kind: RequestKind, url: string, init: RequestInit = {}) {
    const t0 = performance.now();
    try {
      const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
      const body = Buffer.from(await res.arrayBuffer());
      const ms = performance.now() - t0;
      if (res.status === 503 && !res.headers.get('retry-after')) missingRetryAfter++;
      return { status: res.status, body, headers: res.headers, ms };
    } catch (err) {
      const ms = performance.now() - t0;
      const timedOut = (err as Error).name === 'TimeoutError';
      count(kind, timedOut ? 'timeout' : 'network', ms, String((err as Error).cause ?? err));
      return undefined;
    }
  }
  /** A GET of one kind, its answer counted (with the start of the body when it is not 200). */
  async function read(kind: RequestKind, url: string, accept: string) {
    const r = await request(kind, url, { headers: { Accept: accept } });
    if (r)
      count(kind, String(r.status), r.ms, r.status !== 200 ? r.body.toString().slice(0, 200) : undefined);
    return r;
  }

  async function stowClient() {
    while (!stopping) {
      const instances = syntheticInstances(batch, { rows });
      sent += instances.length;
      for (const i of instances)
        pending.set(i.sop, { study: i.study, series: i.series, sop: i.sop, sha256: i.sha256 });
      const { body, contentType } = multipart(instances.map((i) => i.bytes));
      const r = await request('stow', `${opts.dicomweb}/studies`, {
        method: 'POST',
        headers: { 'Content-Type': contentType, Accept: 'application/dicom+json' },
        body: new Uint8Array(body.buffer, body.byteOffset, body.length),
      });
      if (!r) continue;
      const outcome = parseStow(r.status, r.body.toString('utf8'), r.headers);
      count(
        'stow',
        String(r.status),
        r.ms,
        r.status >= 400 && r.status !== 409 ? outcome.message : undefined,
      );
      if (r.status === 200 || r.status === 202) {
        for (const sop of outcome.acknowledged) {
          const inst = pending.get(sop);
          if (inst) acknowledged.push(inst);
          pending.delete(sop);
        }
      }
      for (const f of outcome.failed) {
        const key = `0x${f.reason.toString(16).toUpperCase().padStart(4, '0')}`;
        failureReasons[key] ??= { count: 0, message: f.message };
        failureReasons[key].count++;
      }
      if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
  }

  async function reader() {
    while (!stopping) {
      const inst = acknowledged.length > 0 ? acknowledged[random.int(acknowledged.length)] : undefined;
      const choice = random.int(10);
      if (!inst || choice < 3) {
        const q = [
          '/studies?limit=20',
          '/studies?PatientName=Reliability*&limit=5',
          inst ? `/studies/${inst.study}/series` : '/series?limit=5',
          inst ? `/studies/${inst.study}/instances?limit=50` : '/instances?limit=5',
        ][random.int(4)];
        await read('qido', `${opts.dicomweb}${q}`, 'application/dicom+json');
      } else {
        const base = `${opts.dicomweb}/studies/${inst.study}/series/${inst.series}/instances/${inst.sop}`;
        if (choice < 7) {
          const r = await read('wado-instance', base, 'application/dicom; transfer-syntax=*');
          if (r?.status === 200 && sha256(r.body) !== inst.sha256) mismatches.push(inst.sop);
        } else if (choice < 9) {
          await read('wado-metadata', `${base}/metadata`, 'application/dicom+json');
        } else {
          await read('wado-frame', `${base}/frames/1`, 'multipart/related; type="application/octet-stream"');
        }
      }
      if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
  }

  const clients = [
    ...Array.from({ length: opts.stowClients ?? 4 }, stowClient),
    ...Array.from({ length: opts.readers ?? 4 }, reader),
  ];
  const report = (): LoadReport => ({
    ms: Date.now() - started,
    statuses,
    failureReasons,
    sent,
    acknowledged: acknowledged.slice(known),
    unacknowledged: [...pending.keys()],
    mismatches,
    missingRetryAfter,
    samples,
    latency: Object.fromEntries(
      KINDS.map((k) => {
        const s = [...times[k]].sort((a, b) => a - b);
        const r1 = (x: number) => Math.round(x * 10) / 10;
        return [
          k,
          { p50: r1(percentile(s, 50)), p95: r1(percentile(s, 95)), max: r1(s.at(-1) ?? 0), n: s.length },
        ];
      }),
    ) as LoadReport['latency'],
  });
  return {
    report,
    stop: async () => {
      stopping = true;
      await Promise.all(clients);
      return report();
    },
  };
}

/** Total requests of a kind, or of every kind. */
export function requestCount(r: LoadReport, kind?: RequestKind): number {
  const kinds = kind ? [kind] : KINDS;
  return kinds.reduce((n, k) => n + Object.values(r.statuses[k]).reduce((a, b) => a + b, 0), 0);
}

/** Requests whose status is not in allowed (by kind), as "kind status × n" strings. */
export function unexpectedStatuses(r: LoadReport, allowed: Partial<Record<RequestKind, string[]>>): string[] {
  const out: string[] = [];
  for (const k of KINDS)
    for (const [status, n] of Object.entries(r.statuses[k]))
      if (!(allowed[k] ?? ['200']).includes(status)) out.push(`${k} ${status} × ${n}`);
  return out;
}
